"""Job handlers used only by the tests, registered under test-only kinds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlsvc.errors import ErrorCode, MlsvcError

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext


def succeed(ctx: JobContext) -> Mapping[str, Any]:
    ctx.progress(0.5)
    return {"row_count": 42}


def raise_domain_error(ctx: JobContext) -> Mapping[str, Any]:
    raise MlsvcError(ErrorCode.INVALID_DATA, "column 'churned' not found; columns are ['a', 'b']")


def raise_bug(ctx: JobContext) -> Mapping[str, Any]:
    raise ZeroDivisionError("division by zero")
