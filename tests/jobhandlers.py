"""Job handlers used only by the tests, registered under test-only kinds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlsvc.errors import ErrorCode, MlsvcError


def succeed(ctx: Any) -> Mapping[str, Any]:
    ctx.progress(0.5)
    return {"row_count": 42}


def raise_domain_error(ctx: Any) -> Mapping[str, Any]:
    raise MlsvcError(ErrorCode.INVALID_DATA, "column 'churned' not found; columns are ['a', 'b']")


def raise_bug(ctx: Any) -> Mapping[str, Any]:
    raise ZeroDivisionError("division by zero")
