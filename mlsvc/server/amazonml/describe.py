"""Describe*'s search: one FilterVariable compared with EQ, GT, LT, GE, LE, NE and Prefix, sorted by that
variable (asc or dsc), in pages of Limit with an opaque NextToken that resumes after the last item shown."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from mlsvc.server.amazonml.common import Params
from mlsvc.server.amazonml.protocol import invalid

T = TypeVar("T")
Getter = Callable[[Any], Any]
COMPARATORS = ("EQ", "GT", "LT", "GE", "LE", "NE", "Prefix")
TIMES = ("CreatedAt", "LastUpdatedAt")


def wants_deleted(params: Params) -> bool:
    """Deleted resources are listed only when the search asks for them by status."""
    return params.get("FilterVariable") == "Status" and params.get("EQ") == "DELETED"


def describe(
    items: Iterable[T], params: Params, variables: Mapping[str, Getter], key: Getter
) -> tuple[list[T], str | None]:
    """The page of ``items`` the Describe call asks for, and the token of the next page (None on the last)."""
    given = [op for op in COMPARATORS if params.get(op) is not None]
    if given and params.get("FilterVariable") is None:
        raise invalid(f"give FilterVariable with {', '.join(given)}: the value it compares")
    variable = params.get("FilterVariable") or "CreatedAt"
    getter = variables[variable]
    tests = [(op, _operand(variable, params[op])) for op in given]
    descending = params.get("SortOrder") == "dsc"
    chosen = [item for item in items if all(_holds(op, getter(item), operand) for op, operand in tests)]
    chosen.sort(key=lambda item: (_sortable(getter(item)), key(item)), reverse=descending)
    fingerprint = _fingerprint(params)
    if params.get("NextToken"):
        after = _resume(params["NextToken"], fingerprint)
        chosen = [
            i
            for i in chosen
            if ((_sortable(getter(i)), key(i)) < after if descending else (_sortable(getter(i)), key(i)) > after)
        ]
    limit = int(params.get("Limit") or 100)
    page = chosen[:limit]
    if len(chosen) <= limit:
        return page, None
    last = page[-1]
    return page, _token((_sortable(getter(last)), key(last)), fingerprint)


def _operand(variable: str, value: str) -> Any:
    """A ComparatorValue as the variable's kind: a time (epoch seconds or ISO 8601) or a string."""
    if variable not in TIMES:
        return value
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(f"{variable} is compared with a time: give epoch seconds or ISO 8601, not {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _holds(op: str, value: Any, operand: Any) -> bool:
    if value is None:
        return op == "NE"
    if isinstance(value, datetime):
        # Compared at the millisecond the answers show it to, so a time read from one can be given back.
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).replace(
            microsecond=value.microsecond // 1000 * 1000
        )
    if op == "Prefix":
        return str(value).startswith(str(operand))
    if isinstance(operand, datetime) != isinstance(value, datetime):
        value, operand = str(value), str(operand)
    return {
        "EQ": value == operand,
        "NE": value != operand,
        "GT": value > operand,
        "LT": value < operand,
        "GE": value >= operand,
        "LE": value <= operand,
    }[op]


def _sortable(value: Any) -> str:
    """A value as text that sorts as the value does (times as zero-padded ISO 8601 in UTC)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return str(value)


def _fingerprint(params: Params) -> str:
    asked = {k: v for k, v in params.items() if k not in ("NextToken", "Limit")}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:16]


def _token(after: tuple[str, str], fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": list(after), "query": fingerprint}).encode()).decode()


def _resume(token: str, fingerprint: str) -> tuple[str, str]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = (str(decoded["after"][0]), str(decoded["after"][1]))
        query = decoded["query"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise invalid("NextToken is not one this service gave: pass the NextToken of the previous page") from exc
    if query != fingerprint:
        raise invalid("NextToken belongs to a search with other filters: repeat that search's members with it")
    return after
