"""JSON records to typed feature columns, the way `coerce_frame` types CSV tokens, without pandas (the hot path)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from mlsvc.datasources.values import BINARY_FALSE, BINARY_TRUE, MISSING_TOKENS, MissingSet, attribute_missing
from mlsvc.resources import Attribute, AttributeType

# The same grammar as mlsvc.datasources.values: a test holds the two paths to the same answers.
_PLAIN = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$", re.ASCII)
_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$", re.ASCII)
# A list or object where a single value belongs: reported, then read as missing.
NESTED = object()


def token(value: Any) -> str | object | None:
    """A JSON value as the CSV token it stands for: null is missing, booleans are words."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):  # inf and 1e400 become "inf": not a number, so reported
        return str(value)
    return NESTED


def _present(raw: str | None, missing: MissingSet = MISSING_TOKENS) -> str | None:
    if raw is None:
        return None
    stripped = raw.strip()
    return None if stripped.lower() in missing else stripped


def parse_number(raw: str | None, missing: MissingSet = MISSING_TOKENS) -> tuple[float, bool]:
    """(value, invalid): NaN when missing or not a finite number."""
    text = _present(raw, missing)
    if text is None:
        return math.nan, False
    if _PLAIN.match(text):
        number = float(text)
    elif _GROUPED.match(text):
        number = float(text.replace(",", ""))
    else:
        return math.nan, True
    return (number, False) if math.isfinite(number) else (math.nan, True)


def parse_flag(raw: str | None, missing: MissingSet = MISSING_TOKENS) -> tuple[float, bool]:
    text = _present(raw, missing)
    if text is None:
        return math.nan, False
    lowered = text.lower()
    if lowered in BINARY_TRUE:
        return 1.0, False
    if lowered in BINARY_FALSE:
        return 0.0, False
    return math.nan, True


# Each reader takes a record's JSON value for one attribute and gives the column's value and what is wrong with the
# value, if anything. They read the common values (finite floats, numbers and booleans as flags, strings as text)
# without the detour through a token, to the same results: a finite float's str() is a token that parse_number
# reads back as that float, and a number's or a boolean's token is a flag's token as it stands (no blanks, lower
# case). Everything else goes the token's way.
Reading = tuple[float | str | None, str | None]
# parse_flag's answer for each token it reads as a flag.
_FLAGS = dict.fromkeys(BINARY_TRUE, 1.0) | dict.fromkeys(BINARY_FALSE, 0.0)


def _nested(value: Any) -> str:
    return f"a {type(value).__name__} is not a valid value; treated as missing"


def _read_number(value: Any) -> Reading:
    if type(value) is float and math.isfinite(value):
        return value, None
    raw = token(value)
    if not isinstance(raw, str | None):
        return math.nan, _nested(value)
    number, invalid = parse_number(raw)
    return number, f"{value!r} is not a valid NUMERIC value; treated as missing" if invalid else None


def _read_flag(value: Any) -> Reading:
    raw = token(value)
    if not isinstance(raw, str | None):
        return math.nan, _nested(value)
    if raw is not None and type(value) in (float, int, bool):
        flag = _FLAGS.get(raw)
        if flag is not None:
            return flag, None
    number, invalid = parse_flag(raw)
    return number, f"{value!r} is not a valid BINARY value; treated as missing" if invalid else None


def _read_text(value: Any) -> Reading:
    raw = token(value)
    if not isinstance(raw, str | None):
        return None, _nested(value)
    return _present(raw), None


# A column whose missing tokens are not the defaults (the datasource's missing_values, or a default kept as a level):
# every value goes the token's way, with the column's tokens, since a number or a flag may be one of them.
def _read_parsed_in(parse: Callable[..., tuple[float, bool]], kind: str, missing: MissingSet, value: Any) -> Reading:
    raw = token(value)
    if not isinstance(raw, str | None):
        return math.nan, _nested(value)
    number, invalid = parse(raw, missing)
    return number, f"{value!r} is not a valid {kind} value; treated as missing" if invalid else None


def _read_text_in(missing: MissingSet, value: Any) -> Reading:
    raw = token(value)
    if not isinstance(raw, str | None):
        return None, _nested(value)
    return _present(raw, missing), None


_READERS = {
    AttributeType.NUMERIC: _read_number,
    AttributeType.BINARY: _read_flag,
    AttributeType.CATEGORICAL: _read_text,
    AttributeType.TEXT: _read_text,
}
_READERS_IN: dict[AttributeType, Callable[[MissingSet, Any], Reading]] = {
    AttributeType.NUMERIC: partial(_read_parsed_in, parse_number, "NUMERIC"),
    AttributeType.BINARY: partial(_read_parsed_in, parse_flag, "BINARY"),
    AttributeType.CATEGORICAL: _read_text_in,
    AttributeType.TEXT: _read_text_in,
}
MAX_UNKNOWN_LISTED = 20


def reader(attribute: Attribute) -> Callable[[Any], Reading]:
    """How a record's value for the attribute is read, with the attribute's missing tokens."""
    missing = attribute_missing(attribute)
    if missing is MISSING_TOKENS:
        return _READERS[attribute.attributeType]
    return partial(_READERS_IN[attribute.attributeType], missing)


def _unknown_attributes(record: Mapping[str, Any], known: set[str]) -> list[str]:
    if record.keys() <= known:  # the usual record: one set comparison, in C
        return []
    unknown = sorted(k for k in record if k not in known)
    notes = [f"attribute '{k}' is not used by this model; ignored" for k in unknown[:MAX_UNKNOWN_LISTED]]
    if len(unknown) > MAX_UNKNOWN_LISTED:
        notes.append(f"{len(unknown) - MAX_UNKNOWN_LISTED} more attributes not used by this model; ignored")
    return notes


class RecordParser:
    """Turns records into the typed columns a model was trained on, with a warning per unusable value."""

    def __init__(self, features: Sequence[Attribute], levels: Mapping[str, Sequence[str]] | None = None) -> None:
        """``levels``: the values training saw of CATEGORICAL attributes; any other value is warned of."""
        self.features = list(features)
        self.names = [a.attributeName for a in self.features]
        self._known = set(self.names)
        numeric = (AttributeType.NUMERIC, AttributeType.BINARY)
        self._columns = [
            (a.attributeName, reader(a), np.float64 if a.attributeType in numeric else object) for a in self.features
        ]
        seen = levels or {}
        self._levels = [
            (a.attributeName, frozenset(seen[a.attributeName]))
            for a in self.features
            if a.attributeType == AttributeType.CATEGORICAL and a.attributeName in seen
        ]

    def parse(self, records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, np.ndarray], list[list[str]]]:
        n = len(records)
        warnings = [_unknown_attributes(r, self._known) for r in records]
        columns: dict[str, np.ndarray] = {}
        for name, read, dtype in self._columns:
            column = np.empty(n, dtype=dtype)
            for i, record in enumerate(records):
                column[i], problem = read(record.get(name))
                if problem is not None:
                    warnings[i].append(f"attribute '{name}': {problem}")
            columns[name] = column
        for name, seen in self._levels:
            for i, value in enumerate(columns[name]):
                if value is not None and value not in seen:
                    warnings[i].append(
                        f"attribute '{name}': {value!r} was never seen in training; scored as an unknown level"
                    )
        return columns, warnings
