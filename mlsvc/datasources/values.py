"""Raw CSV tokens to typed values: missing tokens, numbers, binary flags and text, vectorised with pyarrow."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import AttributeType, Schema

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

# Compared after stripping surrounding whitespace and lower-casing. This is a case-insensitive superset of
# pandas' default NA strings, so our statistics agree with pandas reading the same file, plus three
# conventions pandas lacks: "?" (the UCI repository's marker), and "-" / "--" (what spreadsheets and
# reports print for "no value"). "none" is included although it is sometimes a real level (e.g. "no
# masonry veneer"): a categorical model sees a missing value as a level of its own, so little is lost,
# whereas a numeric column holding "None" would otherwise count as invalid. Words such as "unknown" or
# "missing" stay data: they are often deliberate levels a model can learn from.
MISSING_TOKENS: frozenset[str] = frozenset(
    {
        "",
        "na",
        "n/a",
        "#n/a",
        "#n/a n/a",
        "#na",
        "<na>",
        "nan",
        "-nan",
        "null",
        "none",
        "1.#ind",
        "-1.#ind",
        "1.#qnan",
        "-1.#qnan",
        "?",
        "-",
        "--",
    }
)

# Amazon ML's BINARY tokens, compared lower-cased; "1.0"/"0.0" because numeric exports often write floats.
BINARY_TRUE: frozenset[str] = frozenset({"1", "1.0", "true", "t", "yes", "y"})
BINARY_FALSE: frozenset[str] = frozenset({"0", "0.0", "false", "f", "no", "n"})

# What pyarrow's string → double cast accepts, minus its inf/nan words: the slow path must never accept a
# token the fast path would reject, or a column's result would depend on an unrelated bad cell.
_PLAIN_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
# Thousands separators only in the one unambiguous shape: 1–3 leading digits, then groups of exactly three
# after each comma, then an optional "." decimal part ("1,234.5", "-12,000"). "1,5" or "1,23" (decimal
# commas, or typos) stay invalid rather than being silently read as 15 or 123.
_GROUPED_NUMBER = r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$"

_MISSING_SET = pa.array(sorted(MISSING_TOKENS), type=pa.large_string())
_TRUE_SET = pa.array(sorted(BINARY_TRUE), type=pa.large_string())
_FALSE_SET = pa.array(sorted(BINARY_FALSE), type=pa.large_string())


def _stringify(value: object) -> str | None:
    """One cell of a non-string column (e.g. a JSON record at prediction time) as the CSV token it stands for."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _as_arrow_text(s: pd.Series) -> pa.Array:
    """The column as one large_string arrow array, nulls where pandas holds None/NaN."""
    try:
        arr = pa.array(s, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed Python objects (ints, floats, bools from JSON) cannot be cast wholesale; this per-cell path
        # only serves small prediction-time frames, never CSV data, which always arrives as strings.
        arr = pa.array([_stringify(v) for v in s], type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr


def normalize_tokens(s: pd.Series) -> pa.Array:
    """The column's tokens with surrounding whitespace stripped and every missing token turned into null."""
    text = pc.utf8_trim_whitespace(_as_arrow_text(s))
    missing = pc.is_in(pc.utf8_lower(text), value_set=_MISSING_SET)
    return pc.if_else(missing, pa.scalar(None, pa.large_string()), text)


def _to_bool(mask: pa.Array) -> BoolArray:
    """An arrow boolean array as numpy, nulls read as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def missing_mask(s: pd.Series) -> BoolArray:
    """True where the token is None, blank or one of ``MISSING_TOKENS`` (any case)."""
    return _to_bool(pc.is_null(normalize_tokens(s)))


def numeric_from_tokens(tokens: pa.Array) -> tuple[FloatArray, BoolArray]:
    """``parse_numeric`` over tokens already passed through ``normalize_tokens``."""
    present = _to_bool(pc.is_valid(tokens))
    try:
        # Fast path: a clean column casts in one C++ call.
        values = pc.cast(tokens, pa.float64())
    except pa.ArrowInvalid:
        plain = pc.match_substring_regex(tokens, _PLAIN_NUMBER)
        grouped = pc.match_substring_regex(tokens, _GROUPED_NUMBER)
        cleaned = pc.if_else(grouped, pc.replace_substring(tokens, ",", ""), tokens)
        parsable = pc.or_(plain, grouped)
        values = pc.cast(pc.if_else(parsable, cleaned, pa.scalar(None, pa.large_string())), pa.float64())
    # A copy, because arrow may hand out a read-only view of its buffer and we blank invalid cells below.
    out = np.array(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    # inf, nan words and overflow ("1e400") are not usable numbers: invalid, like any other bad token.
    invalid = present & ~np.isfinite(out)
    out[invalid] = np.nan
    return out, invalid


def parse_numeric(s: pd.Series) -> tuple[FloatArray, BoolArray]:
    """Numbers as float64 (NaN where missing or invalid) and the mask of present tokens that are not numbers.

    Accepted: integers, decimals, exponents, a leading + or -, surrounding whitespace, and comma thousands
    separators in the unambiguous "1,234,567.89" shape. Not accepted: inf/infinity, values that overflow a
    double, hex, underscores, currency symbols, percent signs, decimal commas.
    """
    return numeric_from_tokens(normalize_tokens(s))


def binary_from_tokens(tokens: pa.Array) -> tuple[FloatArray, BoolArray]:
    """``parse_binary`` over tokens already passed through ``normalize_tokens``."""
    lowered = pc.utf8_lower(tokens)
    true = _to_bool(pc.is_in(lowered, value_set=_TRUE_SET))
    false = _to_bool(pc.is_in(lowered, value_set=_FALSE_SET))
    present = _to_bool(pc.is_valid(tokens))
    values = np.full(len(tokens), np.nan, dtype=np.float64)
    values[true] = 1.0
    values[false] = 0.0
    return values, present & ~(true | false)


def parse_binary(s: pd.Series) -> tuple[FloatArray, BoolArray]:
    """Binary flags as float64 1.0/0.0 (NaN where missing or invalid) and the mask of present non-flag tokens."""
    return binary_from_tokens(normalize_tokens(s))


def text_from_tokens(tokens: pa.Array, index: pd.Index | None = None, name: object = None) -> pd.Series:
    """``parse_text`` over tokens already passed through ``normalize_tokens``."""
    return pd.Series(tokens.to_numpy(zero_copy_only=False), index=index, name=name, dtype=object)


def parse_text(s: pd.Series) -> pd.Series:
    """Stripped strings in an object Series, None where missing; case is kept (categories are case-sensitive)."""
    return text_from_tokens(normalize_tokens(s), index=s.index, name=s.name)


def _coerce_column(s: pd.Series, attribute_type: AttributeType) -> tuple[pd.Series, BoolArray]:
    tokens = normalize_tokens(s)
    if attribute_type is AttributeType.NUMERIC:
        values, invalid = numeric_from_tokens(tokens)
    elif attribute_type is AttributeType.BINARY:
        values, invalid = binary_from_tokens(tokens)
    else:
        return text_from_tokens(tokens, index=s.index, name=s.name), np.zeros(len(s), dtype=bool)
    return pd.Series(values, index=s.index, name=s.name, dtype=np.float64), invalid


def coerce_frame(raw: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type every column of ``raw`` by its attribute in ``schema``: the one conversion training, statistics
    and prediction share.

    ``raw`` holds string tokens (None allowed) in any subset of the schema's attributes. Returns
    ``(typed, invalid)`` with raw's index and columns: NUMERIC and BINARY columns are float64 (BINARY 0.0/1.0)
    with NaN where missing or invalid; CATEGORICAL and TEXT are object columns of stripped ``str`` with None
    where missing. ``invalid`` is a bool frame, True where a present token could not be read as its type;
    missing is never invalid.
    """
    types = {a.attributeName: a.attributeType for a in schema.attributes}
    unknown = [str(c) for c in raw.columns if c not in types]
    if unknown:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"columns {unknown} are not in the schema; its attributes are {list(types)}",
            {"unknown_columns": unknown},
        )
    if raw.columns.has_duplicates:
        dupes = sorted({str(c) for c in raw.columns[raw.columns.duplicated()]})
        raise MlsvcError(ErrorCode.INVALID_DATA, f"columns {dupes} appear more than once", {"duplicate_columns": dupes})
    typed: dict[object, pd.Series] = {}
    invalid: dict[object, BoolArray] = {}
    for column in raw.columns:
        typed[column], invalid[column] = _coerce_column(raw[column], types[column])
    typed_frame = pd.DataFrame(typed, index=raw.index, columns=raw.columns)
    invalid_frame = pd.DataFrame(invalid, index=raw.index, columns=raw.columns, dtype=bool)
    return typed_frame, invalid_frame
