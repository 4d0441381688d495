"""Raw CSV tokens to typed values: missing tokens, numbers, binary flags and text, vectorised with pyarrow."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import DEFAULT_MISSING_VALUES, Attribute, AttributeType, Schema

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

# Compared after stripping surrounding whitespace and lower-casing. This is a case-insensitive superset of
# pandas' default NA strings, so our statistics agree with pandas reading the same file, plus three
# conventions pandas lacks: "?" (the UCI repository's marker), and "-" / "--" (what spreadsheets and
# reports print for "no value"). "none" is included although it is sometimes a real level (e.g. "no
# masonry veneer"): a categorical model sees a missing value as a level of its own, so little is lost,
# whereas a numeric column holding "None" would otherwise count as invalid. Words such as "unknown" or
# "missing" stay data: they are often deliberate levels a model can learn from. These are the defaults: a
# datasource's missing_values replaces them, and a CATEGORICAL column where one of them is a frequent value keeps
# it as a level (``schema.settle_missing_values``); each column's own set is its attribute's ``missingValues``.
MISSING_TOKENS: frozenset[str] = frozenset({"", *DEFAULT_MISSING_VALUES})

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


def _any_case(tokens: frozenset[str]) -> list[str]:
    """Every ASCII upper/lower-case spelling of the tokens (they are ASCII, and only ASCII letters and the
    Kelvin sign, which none holds, lower-case to ASCII): matching these is matching the lower-cased token."""
    out: set[str] = set()
    for token in tokens:
        spellings = {""}
        for char in token:
            spellings = {s + c for s in spellings for c in {char.lower(), char.upper()}}
        out |= spellings
    return sorted(out)


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


# --- which tokens are missing ---

MissingSet: TypeAlias = frozenset[str]  # tokens as compared: stripped and lower-cased, the blank one always in


def missing_set(values: Sequence[str] | None) -> MissingSet:
    """The tokens an attribute's ``missingValues`` (or a datasource's ``missing_values``) make missing, as compared;
    None: the defaults, ``MISSING_TOKENS``."""
    return MISSING_TOKENS if values is None else _missing_set(tuple(values))


@lru_cache(maxsize=1024)
def _missing_set(values: tuple[str, ...]) -> MissingSet:
    return frozenset({"", *(v.strip().lower() for v in values)})


def attribute_missing(attribute: Attribute) -> MissingSet:
    """The tokens read as missing in the attribute's column."""
    return missing_set(attribute.missingValues)


@dataclass(frozen=True)
class _Lookup:
    """How a missing set is matched against a column: ``values`` holds every spelling of each token to compare
    the tokens with as they are, or (``lower``) the tokens, to compare with the lower-cased column. ``numbers`` and
    ``flags`` say whether a token reads as a number or a binary flag, which the fast paths would take it for."""

    values: pa.Array
    lower: bool
    numbers: bool
    flags: bool


# Every spelling in any case is matched without lower-casing the column (a copy of it); past this many spellings
# (long words, or letters outside ASCII) the column is lower-cased instead.
_MAX_SPELLINGS = 4096


@lru_cache(maxsize=256)
def _lookup(missing: MissingSet) -> _Lookup:
    spellings = sum(2 ** sum(c.isalpha() for c in token) for token in missing)
    spelled = all(token.isascii() for token in missing) and spellings <= _MAX_SPELLINGS
    values = _any_case(missing) if spelled else sorted(missing)
    return _Lookup(
        pa.array(values, type=pa.large_string()),
        not spelled,
        any(re.match(_PLAIN_NUMBER, token) for token in missing),
        bool(missing & (BINARY_TRUE | BINARY_FALSE)),
    )


def normalize_tokens(s: pd.Series, missing: MissingSet = MISSING_TOKENS) -> pa.Array:
    """The column's tokens with surrounding whitespace stripped and every missing token turned into null."""
    return normalize_arrow(_as_arrow_text(s), missing)


def normalize_arrow(tokens: pa.Array, missing: MissingSet = MISSING_TOKENS) -> pa.Array:
    """``normalize_tokens`` over tokens that are already an arrow (large_)string array."""
    text = pc.utf8_trim_whitespace(tokens) if _may_need_trimming(tokens) else tokens
    lookup = _lookup(missing)
    probe = pc.utf8_lower(text) if lookup.lower else text
    return _null_where(text, pc.is_in(probe, value_set=lookup.values))


# Bytes that may begin or end whitespace: ASCII's (the separators U+001C..U+001F count, as in arrow's trim) and
# every byte of a multi-byte character, which is then looked at properly.
_EDGE_SPACE = np.zeros(256, dtype=bool)
_EDGE_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True
_EDGE_SPACE[0x80:] = True


def _may_need_trimming(tokens: pa.Array) -> bool:
    """False when no token begins or ends with whitespace: told from each token's first and last byte, so the
    usual column is not copied by a trim that changes nothing."""
    if len(tokens) == 0 or isinstance(tokens, pa.DictionaryArray):
        return len(tokens) > 0
    offsets = _offsets(tokens)
    data = tokens.buffers()[2]
    if data is None:
        return False
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    if not filled.any():
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool(_EDGE_SPACE[raw[starts[filled]]].any() or _EDGE_SPACE[raw[ends[filled] - 1]].any())


def _null_where(values: pa.Array, mask: pa.Array) -> pa.Array:
    """``values`` with nulls where ``mask`` (no nulls itself) is true, sharing the values' buffers where it can."""
    if not pc.any(mask).as_py():
        return values
    keep = pc.invert(mask)
    if values.null_count:
        keep = pc.and_(keep, pc.is_valid(values))
    if values.offset == 0 and keep.offset == 0 and keep.null_count == 0 and not isinstance(values, pa.DictionaryArray):
        return pa.Array.from_buffers(values.type, len(values), [keep.buffers()[1], *values.buffers()[1:]])
    return pc.if_else(keep, values, pa.scalar(None, values.type))


def _to_bool(mask: pa.Array) -> BoolArray:
    """An arrow boolean array as numpy, nulls read as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def missing_mask(s: pd.Series, missing: MissingSet = MISSING_TOKENS) -> BoolArray:
    """True where the token is None, blank or one of ``missing`` (any case)."""
    return _to_bool(pc.is_null(normalize_tokens(s, missing)))


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
        values = pc.cast(pc.if_else(parsable, cleaned, pa.scalar(None, tokens.type)), pa.float64())
    # A copy, because arrow may hand out a read-only view of its buffer and we blank invalid cells below.
    out = np.array(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    # inf, nan words and overflow ("1e400") are not usable numbers: invalid, like any other bad token.
    invalid = present & ~np.isfinite(out)
    out[invalid] = np.nan
    return out, invalid


def parse_numeric(s: pd.Series, missing: MissingSet = MISSING_TOKENS) -> tuple[FloatArray, BoolArray]:
    """Numbers as float64 (NaN where missing or invalid) and the mask of present tokens that are not numbers.

    Accepted: integers, decimals, exponents, a leading + or -, surrounding whitespace, and comma thousands
    separators in the unambiguous "1,234,567.89" shape. Not accepted: inf/infinity, values that overflow a
    double, hex, underscores, currency symbols, percent signs, decimal commas.
    """
    return numeric_from_tokens(normalize_tokens(s, missing))


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


def parse_binary(s: pd.Series, missing: MissingSet = MISSING_TOKENS) -> tuple[FloatArray, BoolArray]:
    """Binary flags as float64 1.0/0.0 (NaN where missing or invalid) and the mask of present non-flag tokens."""
    return binary_from_tokens(normalize_tokens(s, missing))


def text_from_tokens(tokens: pa.Array, index: pd.Index | None = None, name: object = None) -> pd.Series:
    """``parse_text`` over tokens already passed through ``normalize_tokens``."""
    return pd.Series(tokens.to_numpy(zero_copy_only=False), index=index, name=name, dtype=object)


def parse_text(s: pd.Series, missing: MissingSet = MISSING_TOKENS) -> pd.Series:
    """Stripped strings in an object Series, None where missing; case is kept (categories are case-sensitive)."""
    return text_from_tokens(normalize_tokens(s, missing), index=s.index, name=s.name)


Column: TypeAlias = np.ndarray | pa.Array


def coerce_array(
    tokens: pa.Array, attribute_type: AttributeType, missing: MissingSet = MISSING_TOKENS
) -> tuple[Column, BoolArray | None]:
    """One column of raw tokens (an arrow string array, null allowed) typed by its attribute, with ``missing`` its
    missing tokens, without Python objects: the core of ``coerce_frame``, and what the datasource job keeps its
    chunks as.

    NUMERIC and BINARY give float64 numpy (NaN where missing or invalid) and the invalid mask. CATEGORICAL gives
    a dictionary array of stripped strings, TEXT a string array, both null where missing; they are never invalid,
    so their mask is None. ``objects`` turns either into the object contract (str or None).
    """
    if isinstance(tokens, pa.DictionaryArray) and attribute_type in (AttributeType.NUMERIC, AttributeType.TEXT):
        tokens = tokens.dictionary_decode()
    lookup = _lookup(missing)
    if attribute_type is AttributeType.NUMERIC:
        # A missing token that reads as a number ("-999") would pass the fast path as that number.
        fast = None if lookup.numbers else _plain_numbers(tokens)
        return fast if fast is not None else numeric_from_tokens(normalize_arrow(tokens, missing))
    if attribute_type is AttributeType.BINARY:
        return _binary_by_dictionary(tokens, missing, plain=not lookup.flags)
    if attribute_type is AttributeType.CATEGORICAL:
        return _categories(tokens, missing), None
    return normalize_arrow(tokens, missing), None


def _plain_numbers(tokens: pa.Array) -> tuple[FloatArray, BoolArray] | None:
    """The common case in one cast: every token is blank or a finite number as it stands (no surrounding
    whitespace, no missing word, no thousands separator). None when any token needs ``numeric_from_tokens``,
    which gives the same answer for such columns, only slower."""
    blank = pc.fill_null(pc.equal(pc.binary_length(tokens), 0), False)
    tokens = _null_where(tokens, blank)
    try:
        values = pc.cast(tokens, pa.float64())
    except pa.ArrowInvalid:
        return None
    out = values.to_numpy(zero_copy_only=False)
    if int(np.count_nonzero(np.isfinite(out))) != len(tokens) - tokens.null_count:
        return None  # "nan", "inf" or an overflow: missing words and invalid values are told apart the slow way
    if not out.flags.writeable:
        out = out.copy()
    return out, np.zeros(len(out), dtype=bool)


def _encoded(tokens: pa.Array) -> pa.DictionaryArray:
    return tokens if isinstance(tokens, pa.DictionaryArray) else pc.dictionary_encode(tokens)


def _codes(encoded: pa.DictionaryArray, null_code: int) -> NDArray[np.int64]:
    """A dictionary array's indices as numpy, ``null_code`` where null."""
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, null_code)
    return np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _binary_by_dictionary(tokens: pa.Array, missing: MissingSet, plain: bool) -> tuple[FloatArray, BoolArray]:
    """``binary_from_tokens`` worked out once per distinct token and spread to the rows by code; ``plain``: no
    missing token is a flag word, so the plain flags' shortcut holds."""
    flags = _plain_flags(tokens) if plain else None
    if flags is not None:
        return flags
    encoded = _encoded(tokens)
    levels, bad = binary_from_tokens(normalize_arrow(encoded.dictionary, missing))
    codes = _codes(encoded, len(levels))
    return np.append(levels, np.nan)[codes], np.append(bad, False)[codes]


_FLAG_SAMPLE = 64


def _plain_flags(tokens: pa.Array) -> tuple[FloatArray, BoolArray] | None:
    """The common case at a quarter of a hash's cost: every token is one of the same two flags as written (say
    "yes" and "no", or "1" and "0"; no whitespace, none missing), told by two comparisons over the column. None
    when any token is something else, for ``binary_from_tokens`` to tell what."""
    if isinstance(tokens, pa.DictionaryArray) or tokens.null_count or len(tokens) == 0:
        return None
    seen = pc.unique(tokens.slice(0, _FLAG_SAMPLE)).to_pylist()
    flags = {text: _flag_of(text) for text in seen}
    if None in flags.values() or len(flags) > 2:
        return None
    true = next((t for t, flag in flags.items() if flag == 1.0), None)
    false = next((t for t, flag in flags.items() if flag == 0.0), None)
    is_true = pc.equal(tokens, true) if true is not None else None
    count = 0 if is_true is None else pc.sum(is_true).as_py() or 0
    if false is not None:
        count += pc.sum(pc.equal(tokens, false)).as_py() or 0
    if count != len(tokens):
        return None
    values = np.zeros(len(tokens)) if is_true is None else _to_bool(is_true).astype(np.float64)
    return values, np.zeros(len(tokens), dtype=bool)


def _flag_of(text: str | None) -> float | None:
    """1.0 or 0.0 for a flag written plainly (as it stands, not a missing word), None for anything else."""
    if text is None or text != text.strip():
        return None
    lowered = text.lower()
    return 1.0 if lowered in BINARY_TRUE else 0.0 if lowered in BINARY_FALSE else None


def _categories(tokens: pa.Array, missing: MissingSet) -> pa.DictionaryArray:
    """Stripped tokens, null where missing, as a dictionary array: each distinct token normalised once."""
    encoded = _encoded(tokens)
    levels = normalize_arrow(encoded.dictionary, missing)
    if levels.null_count == 0 and _text_bytes(levels) == _text_bytes(encoded.dictionary):
        return pa.DictionaryArray.from_arrays(encoded.indices, levels)  # nothing stripped: still distinct
    # Missing words become null and tokens that differ only by surrounding whitespace become one level.
    merged = pc.dictionary_encode(levels)
    lookup = np.append(_codes(merged, -1), -1)
    codes = lookup[_codes(encoded, len(levels))]
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, merged.dictionary)


def _offsets(strings: pa.Array) -> np.ndarray:
    """A (large_)string or binary array's offsets, as a numpy view: value i is data[offsets[i]:offsets[i + 1]]."""
    wide = pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type)
    return np.frombuffer(
        strings.buffers()[1],
        dtype=np.int64 if wide else np.int32,
        count=len(strings) + 1,
        offset=strings.offset * (8 if wide else 4),
    )


def _text_bytes(strings: pa.Array) -> int:
    """The bytes of all the values of a (large_)string array, from its offsets."""
    if len(strings) == 0:
        return 0
    offsets = _offsets(strings)
    return int(offsets[-1] - offsets[0])


def objects(column: pa.Array) -> np.ndarray:
    """A CATEGORICAL or TEXT column from ``coerce_array`` as an object array of str, None where missing (a
    dictionary array's repeated values share one str)."""
    if isinstance(column, pa.DictionaryArray):
        levels = np.append(np.asarray(column.dictionary.to_numpy(zero_copy_only=False), dtype=object), [None])
        return levels[_codes(column, len(levels) - 1)]
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def coerce_columns(batch: pa.RecordBatch, schema: Schema) -> tuple[dict[str, Column], dict[str, BoolArray]]:
    """``coerce_array`` over every column of a batch of raw tokens; the invalid masks of the columns that
    can hold invalid values (NUMERIC and BINARY), in the batch's column order."""
    attributes = {a.attributeName: a for a in schema.attributes}
    columns: dict[str, Column] = {}
    invalid: dict[str, BoolArray] = {}
    for name, tokens in zip(batch.schema.names, batch.columns, strict=True):
        attribute = attributes[name]
        columns[name], bad = coerce_array(tokens, attribute.attributeType, attribute_missing(attribute))
        if bad is not None:
            invalid[name] = bad
    return columns, invalid


def coerce_frame(raw: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type every column of ``raw`` by its attribute in ``schema``: the one conversion training, statistics
    and prediction share.

    ``raw`` holds string tokens (None allowed) in any subset of the schema's attributes. Returns
    ``(typed, invalid)`` with raw's index and columns: NUMERIC and BINARY columns are float64 (BINARY 0.0/1.0)
    with NaN where missing or invalid; CATEGORICAL and TEXT are object columns of stripped ``str`` with None
    where missing. ``invalid`` is a bool frame, True where a present token could not be read as its type;
    missing is never invalid.
    """
    attributes = {a.attributeName: a for a in schema.attributes}
    unknown = [str(c) for c in raw.columns if c not in attributes]
    if unknown:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"columns {unknown} are not in the schema; its attributes are {list(attributes)}",
            {"unknown_columns": unknown},
        )
    if raw.columns.has_duplicates:
        dupes = sorted({str(c) for c in raw.columns[raw.columns.duplicated()]})
        raise MlsvcError(ErrorCode.INVALID_DATA, f"columns {dupes} appear more than once", {"duplicate_columns": dupes})
    typed: dict[object, pd.Series] = {}
    invalid: dict[object, BoolArray] = {}
    for column in raw.columns:
        attribute = attributes[column]
        values, bad = coerce_array(_as_arrow_text(raw[column]), attribute.attributeType, attribute_missing(attribute))
        if isinstance(values, np.ndarray):
            typed[column] = pd.Series(values, index=raw.index, name=column, dtype=np.float64)
        else:
            typed[column] = pd.Series(objects(values), index=raw.index, name=column, dtype=object)
        invalid[column] = bad if bad is not None else np.zeros(len(raw), dtype=bool)
    typed_frame = pd.DataFrame(typed, index=raw.index, columns=raw.columns)
    invalid_frame = pd.DataFrame(invalid, index=raw.index, columns=raw.columns, dtype=bool)
    return typed_frame, invalid_frame
