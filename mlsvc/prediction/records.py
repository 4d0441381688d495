"""JSON records to typed feature columns, the way `coerce_frame` types CSV tokens, without pandas (the hot path)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlsvc.datasources.values import BINARY_FALSE, BINARY_TRUE, MISSING_TOKENS
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


def _present(raw: str | None) -> str | None:
    if raw is None:
        return None
    stripped = raw.strip()
    return None if stripped.lower() in MISSING_TOKENS else stripped


def parse_number(raw: str | None) -> tuple[float, bool]:
    """(value, invalid): NaN when missing or not a finite number."""
    text = _present(raw)
    if text is None:
        return math.nan, False
    if _PLAIN.match(text):
        number = float(text)
    elif _GROUPED.match(text):
        number = float(text.replace(",", ""))
    else:
        return math.nan, True
    return (number, False) if math.isfinite(number) else (math.nan, True)


def parse_flag(raw: str | None) -> tuple[float, bool]:
    text = _present(raw)
    if text is None:
        return math.nan, False
    lowered = text.lower()
    if lowered in BINARY_TRUE:
        return 1.0, False
    if lowered in BINARY_FALSE:
        return 0.0, False
    return math.nan, True


MAX_UNKNOWN_LISTED = 20


def _unknown_attributes(record: Mapping[str, Any], known: set[str]) -> list[str]:
    unknown = sorted(k for k in record if k not in known)
    notes = [f"attribute '{k}' is not used by this model; ignored" for k in unknown[:MAX_UNKNOWN_LISTED]]
    if len(unknown) > MAX_UNKNOWN_LISTED:
        notes.append(f"{len(unknown) - MAX_UNKNOWN_LISTED} more attributes not used by this model; ignored")
    return notes


class RecordParser:
    """Turns records into the typed columns a model was trained on, with a warning per unusable value."""

    def __init__(self, features: Sequence[Attribute]) -> None:
        self.features = list(features)
        self.names = [a.attributeName for a in self.features]
        self._known = set(self.names)

    def parse(self, records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, np.ndarray], list[list[str]]]:
        n = len(records)
        warnings = [_unknown_attributes(r, self._known) for r in records]
        columns: dict[str, np.ndarray] = {}
        for attribute in self.features:
            name, kind = attribute.attributeName, attribute.attributeType
            numeric = kind in (AttributeType.NUMERIC, AttributeType.BINARY)
            column = np.empty(n, dtype=np.float64 if numeric else object)
            for i, record in enumerate(records):
                raw = token(record.get(name))
                if raw is NESTED:
                    warnings[i].append(
                        f"attribute '{name}': a {type(record[name]).__name__} is not a valid value; treated as missing"
                    )
                    raw = None
                assert raw is None or isinstance(raw, str)
                if numeric:
                    value, invalid = parse_number(raw) if kind == AttributeType.NUMERIC else parse_flag(raw)
                    if invalid:
                        warnings[i].append(
                            f"attribute '{name}': {record[name]!r} is not a valid {kind.value} "
                            "value; treated as missing"
                        )
                    column[i] = value
                else:
                    column[i] = _present(raw)
            columns[name] = column
        return columns, warnings
