"""Amazon ML schemas: header detection, type inference from a sample, caller overrides and ``.schema`` files."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from mlsvc.datasources.values import (
    BINARY_FALSE,
    BINARY_TRUE,
    MISSING_TOKENS,
    MissingSet,
    binary_from_tokens,
    missing_set,
    normalize_tokens,
    numeric_from_tokens,
)
from mlsvc.errors import ErrorCode, MlsvcError, did_you_mean
from mlsvc.resources import Attribute, AttributeType, Schema

GARBAGE_TOLERANCE = 0.05
MAX_CODE_LEVELS = 10
MIN_ROWS_PER_LEVEL = 5
TEXT_MIN_WORDS = 3.0
TEXT_MIN_DISTINCT = 0.5
MIN_ROWS_FOR_UNIQUE = 20
# When the sample is the whole file, uniqueness is a fact rather than an estimate, so smaller files qualify.
MIN_ROWS_FOR_UNIQUE_WHOLE_FILE = 5
# Header detection looks at this many rows at most: enough to see a column's type, cheap on any file.
HEADER_SAMPLE_ROWS = 1000

# Words that make an integer column an identifier whatever its cardinality.
_IDENTIFIER_WORDS = frozenset(
    {
        "id",
        "ids",
        "key",
        "uuid",
        "guid",
        "code",
        "zip",
        "zipcode",
        "zip5",
        "postal",
        "postcode",
        "fips",
        "phone",
        "areacode",
        "sku",
        "isbn",
        "ssn",
    }
)
# Head words that make a few-level integer column a set of codes.
_CODE_WORDS = frozenset(
    {
        "type",
        "class",
        "category",
        "cat",
        "kind",
        "group",
        "grp",
        "segment",
        "tier",
        "plan",
        "status",
        "state",
        "region",
        "zone",
        "cluster",
        "label",
        "flag",
        "mode",
        "channel",
        "gender",
        "sex",
        "race",
        "ethnicity",
        "marital",
        "color",
        "colour",
        "brand",
        "dept",
        "department",
        "country",
        "city",
        "store",
        "branch",
    }
)
# Suffixes for glued names ("Pclass", "bloodtype", "zipcode"); only words unlikely to end unrelated words.
_CODE_SUFFIXES = ("code", "class", "type", "category", "group")
# Head words that make a few-level integer column a quantity or an ordinal scale.
_QUANTITY_WORDS = frozenset(
    {
        "n",
        "num",
        "number",
        "count",
        "counts",
        "cnt",
        "qty",
        "quantity",
        "total",
        "sum",
        "amount",
        "amt",
        "age",
        "year",
        "years",
        "month",
        "months",
        "week",
        "weeks",
        "day",
        "days",
        "hour",
        "hours",
        "minutes",
        "seconds",
        "size",
        "length",
        "width",
        "height",
        "weight",
        "price",
        "cost",
        "rate",
        "score",
        "rating",
        "stars",
        "rank",
        "children",
        "kids",
        "dependents",
        "members",
        "people",
        "persons",
        "rooms",
        "bedrooms",
        "bathrooms",
        "floors",
        "stories",
        "cars",
        "visits",
        "calls",
        "tickets",
        "items",
        "orders",
        "purchases",
        "tenure",
        "duration",
        "level",
        "grade",
        "times",
        "attempts",
        "errors",
        "lines",
        "products",
        "accounts",
    }
)
_NUMBER_WORDS = frozenset({"number", "no", "num", "nr"})


def _name_words(name: str) -> list[str]:
    """The lower-case words of a column name: snake_case, kebab-case, spaces and camelCase all split."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def _name_says(name: str) -> str | None:
    """What the rightmost telling word of the name says: "identifier", "code", "quantity" or None.

    The rightmost word is the head of an English compound ("plan_code" is a code, "code_count" a count).
    """
    words = _name_words(name)
    if "area" in words and "code" in words:
        return "identifier"
    # "account_number", "order_no": a trailing number-word names an identifier ("number_of_x" is a count).
    if len(words) > 1 and words[-1] in _NUMBER_WORDS:
        return "identifier"
    for word in reversed(words):
        if word in _IDENTIFIER_WORDS:
            return "identifier"
        if word in _QUANTITY_WORDS:
            return "quantity"
        if word in _CODE_WORDS or word.endswith(_CODE_SUFFIXES):
            return "code"
    return None


@dataclass(frozen=True)
class _Column:
    """What inference needs to know about one sampled column."""

    name: str
    tokens: pa.Array  # stripped, missing as null
    present: int
    distinct: int

    @property
    def rows(self) -> int:
        return len(self.tokens)


def _profile(name: str, raw: pd.Series, missing: MissingSet) -> _Column:
    tokens = normalize_tokens(raw, missing)
    return _Column(name, tokens, pc.count(tokens).as_py(), pc.count_distinct(tokens).as_py())


def _numbers(col: _Column) -> np.ndarray | None:
    """The column's present numbers if it is numeric (within the garbage tolerance), else None."""
    values, invalid = numeric_from_tokens(col.tokens)
    if invalid.sum() > GARBAGE_TOLERANCE * col.present:
        return None
    return values[~np.isnan(values)]


def _is_binary(col: _Column, numbers: np.ndarray | None) -> bool:
    values, invalid = binary_from_tokens(col.tokens)
    if not invalid.any():
        return bool(np.isin([0.0, 1.0], values).all())
    return numbers is not None and set(np.unique(numbers).tolist()) == {0.0, 1.0}


def _has_leading_zero_codes(col: _Column) -> bool:
    """Fixed-width digit strings with leading zeros ("02134"): identifiers, since numbers never carry them."""
    tokens = col.tokens.drop_null()
    if not pc.all(pc.match_substring_regex(tokens, r"^\d+$")).as_py():
        return False
    if not pc.any(pc.match_substring_regex(tokens, r"^0\d")).as_py():
        return False
    widths = np.asarray(pc.utf8_length(tokens).to_numpy(zero_copy_only=False))
    return float(np.mean(widths == np.bincount(widths).argmax())) >= 0.9


def _has_sentinel_level(levels: np.ndarray) -> bool:
    """An "unknown" code far above the other levels, e.g. {1, 2, 3, 9} or {0, 1, 2, 99}: a code list.

    Only 9, 99, 999… count, and only when at least twice the next level and far beyond the usual spacing:
    {0, 1, …, 5, 9} is as likely a skewed count with one big value (digits' pixel intensities) as codes.
    """
    ordered = np.sort(levels)
    if len(ordered) < 3 or ordered[-1] <= 0 or set(str(int(ordered[-1]))) != {"9"}:
        return False
    gaps = np.diff(ordered)
    return bool(ordered[-1] >= 2 * ordered[-2] and gaps[-1] > 3 * np.median(gaps[:-1]))


def _is_integer_code(col: _Column, numbers: np.ndarray) -> bool:
    levels = np.unique(numbers)
    if not np.array_equal(levels, np.round(levels)) or len(levels) > MAX_CODE_LEVELS:
        return False
    if col.present < MIN_ROWS_PER_LEVEL * len(levels):
        return False
    says = _name_says(col.name)
    if says == "quantity":
        return False
    return says == "code" or _has_sentinel_level(levels)


def _is_text(col: _Column) -> bool:
    words = pc.add(pc.count_substring_regex(col.tokens, r"\s+"), 1)
    mean_words = pc.mean(words).as_py() or 0.0
    return mean_words >= TEXT_MIN_WORDS and col.distinct >= TEXT_MIN_DISTINCT * col.present


def _infer_type(col: _Column) -> AttributeType:
    if col.present == 0:
        return AttributeType.CATEGORICAL
    numbers = _numbers(col)
    if _is_binary(col, numbers):
        return AttributeType.BINARY
    if numbers is not None:
        identifier = _name_says(col.name) == "identifier" or _has_leading_zero_codes(col)
        if identifier or _is_integer_code(col, numbers):
            return AttributeType.CATEGORICAL
        return AttributeType.NUMERIC
    return AttributeType.TEXT if _is_text(col) else AttributeType.CATEGORICAL


def _is_unique_identifier(col: _Column, kind: AttributeType, min_rows: int) -> bool:
    """Present and distinct in every row, and an identifier rather than free text or a measurement."""
    if col.rows < min_rows or col.present != col.rows or col.distinct != col.rows:
        return False
    if kind is AttributeType.TEXT:
        return False
    numbers = _numbers(col)
    if numbers is None or _has_leading_zero_codes(col):
        return True
    if not np.array_equal(numbers, np.round(numbers)):
        return False
    consecutive = numbers.max() - numbers.min() + 1 == len(numbers)
    return consecutive or _says_id(col.name)


def _says_id(name: str) -> bool:
    return _name_says(name) == "identifier"


def _sample_names(sample: pd.DataFrame, has_header: bool) -> list[str]:
    """Attribute names: the sample's columns as the reader named them, or ``col_1..col_n`` when headerless."""
    if not has_header:
        return [f"col_{i}" for i in range(1, sample.shape[1] + 1)]
    names = [str(c) for c in sample.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or any(not n.strip() for n in names):
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"every column needs its own non-blank name; repeated: {dupes}; columns are {names}",
            {"duplicate_columns": dupes, "columns": names},
        )
    return names


def _propose_identifiers(
    cols: list[_Column], types: dict[str, AttributeType], protected: set[str], min_rows: int
) -> list[str]:
    """Unique-per-row identifier columns, the best rowId candidate first."""
    found = [c.name for c in cols if c.name not in protected and _is_unique_identifier(c, types[c.name], min_rows)]
    return sorted(found, key=lambda n: not _says_id(n))  # stable: file order among equals


def infer_schema(
    sample: pd.DataFrame,
    *,
    has_header: bool = True,
    target: str | None = None,
    row_id: str | None = None,
    overrides: Mapping[str, AttributeType | str] | None = None,
    total_rows_hint: int | None = None,
    missing_values: Sequence[str] | None = None,
) -> Schema:
    """Infer an Amazon ML schema from a sample of raw string tokens, choosing what a careful person would.

    Inference rules, applied to each column of a bounded sample of raw tokens (missing tokens ignored):

    1. No present value → CATEGORICAL, and excluded from training.
    2. BINARY when every present token is a binary token (0/1, true/false, t/f, yes/no, y/n, any case) and both
       truth values occur; or when the column is numeric by rule 3 and its numbers are exactly {0, 1}.
    3. Numeric when at most ``GARBAGE_TOLERANCE`` (5 %) of present tokens fail to parse as numbers (a few
       garbage cells do not demote a numeric column; ``coerce_frame`` reports them as invalid). Then:
       - CATEGORICAL when the name names an identifier or place code (``zip``, ``postal``, ``code``, ``id``,
         ``phone``…, or ends in number/no as in ``account_number``), or when the tokens are fixed-width digit
         strings with leading zeros ("02134", "007"): numbers never carry leading zeros, identifiers do;
       - CATEGORICAL for integer codes: at most ``MAX_CODE_LEVELS`` (10) integer levels, each seen on average
         ``MIN_ROWS_PER_LEVEL`` (5) times, and either the name's head word says code (``plan_code``,
         ``customer_type``, ``Pclass``) or, with a neutral name, the levels end in a 9/99/999 "unknown"
         sentinel far above the rest ({1, 2, 3, 9}: ≥ 2 × the next level, gap > 3 × the others' median gap),
         which makes arithmetic on them meaningless. A head word that says quantity (``num_children``,
         ``tenure_months``, ``rating``) keeps it NUMERIC: counts and ordinal scales carry order a model uses;
       - NUMERIC otherwise (also for a neutral name over a plain 1..k range: the conservative choice).
    4. TEXT when tokens average at least ``TEXT_MIN_WORDS`` (3) words and at least ``TEXT_MIN_DISTINCT`` (half)
       of them are distinct: free text, not a handful of multi-word labels such as "Bank transfer (automatic)".
    5. CATEGORICAL otherwise (dates included: Amazon ML's schema has no date type).

    A column that is present and distinct in every sampled row (at least ``MIN_ROWS_FOR_UNIQUE`` rows) and is a
    string or integer identifier (not TEXT, not fractional numbers; integers only when the name says id or the
    values are exactly a run of consecutive row numbers) cannot teach a model anything: the first such column,
    preferring one whose name says id, is proposed as ``rowId``, and the others are excluded from training.
    The caller's ``target``, ``row_id`` and ``overrides`` always win over these guesses.

    ``sample``'s columns are the header names as the reader made them (stripped, unique, non-blank), or,
    when not ``has_header``, are renamed ``col_1..col_n``.
    ``total_rows_hint`` is the file's row count when known; a sample that covers the whole file lets
    small files have a ``rowId`` too. ``overrides`` set attribute types, and a column the caller typed is
    never excluded or proposed as ``rowId`` by inference. ``missing_values`` are the missing tokens (None: the
    defaults); which of them stay levels of a CATEGORICAL column is ``settle_missing_values``' to say, after.
    """
    names = _sample_names(sample, has_header)
    if not names or len(sample) == 0:
        raise MlsvcError(ErrorCode.INVALID_DATA, "the data has no rows or no columns, so no schema can be inferred")
    overrides = dict(overrides or {})
    _check_names(names, target=target, row_id=row_id, overrides=overrides)
    missing = missing_set(missing_values)
    cols = [_profile(name, sample.iloc[:, i], missing) for i, name in enumerate(names)]
    types = {c.name: _infer_type(c) for c in cols}
    whole_file = total_rows_hint is not None and total_rows_hint <= len(sample)
    min_rows = MIN_ROWS_FOR_UNIQUE_WHOLE_FILE if whole_file else MIN_ROWS_FOR_UNIQUE
    # The caller's named columns are theirs: inference neither excludes them nor makes them the row id.
    protected = {n for n in (target, row_id) if n is not None} | set(overrides)
    identifiers = _propose_identifiers(cols, types, protected, min_rows)
    if row_id is None and identifiers:
        row_id = identifiers.pop(0)
    dropped = set(identifiers) | {c.name for c in cols if c.present == 0 and c.name not in protected}
    schema = Schema(
        targetAttributeName=target,
        rowId=row_id,
        dataFileContainsHeader=has_header,
        attributes=[Attribute(attributeName=n, attributeType=types[n]) for n in names],
        excludedAttributeNames=[n for n in names if n in dropped],
    )
    return apply_overrides(schema, overrides=overrides)


def _check_names(
    names: Sequence[str], *, target: str | None, row_id: str | None, overrides: Mapping[str, object]
) -> None:
    """Every column the caller names must exist, and one column cannot be both target and row id."""
    for name in [target, row_id, *overrides]:
        if name is not None and name not in names:
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"column {name!r} not found{did_you_mean(name, list(names))}; columns are {list(names)}",
                {"column": name, "columns": list(names)},
            )
    if target is not None and target == row_id:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"column {target!r} cannot be both the target and the row id",
            {"column": target},
        )


def _attribute_type(name: str, value: AttributeType | str) -> AttributeType:
    try:
        return AttributeType(str(value).upper())
    except ValueError:
        allowed = [t.value for t in AttributeType]
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"attribute type {value!r} for column {name!r} is not one of {allowed}",
            {"column": name, "allowed": allowed},
        ) from None


def apply_overrides(
    schema: Schema,
    *,
    target: str | None = None,
    row_id: str | None = None,
    overrides: Mapping[str, AttributeType | str] | None = None,
) -> Schema:
    """A copy of ``schema`` with the caller's target, row id and attribute types; names must be attributes.

    The target and the row id are taken out of ``excludedAttributeNames``: they have roles of their own.
    """
    overrides = dict(overrides or {})
    target = target if target is not None else schema.targetAttributeName
    row_id = row_id if row_id is not None else schema.rowId
    _check_names([a.attributeName for a in schema.attributes], target=target, row_id=row_id, overrides=overrides)
    types = {n: _attribute_type(n, t) for n, t in overrides.items()}
    attributes = [
        a.model_copy(update={"attributeType": types[a.attributeName]}) if a.attributeName in types else a
        for a in schema.attributes
    ]
    return Schema(
        version=schema.version,
        targetAttributeName=target,
        rowId=row_id,
        rowWeight=schema.rowWeight,
        dataFormat=schema.dataFormat,
        dataFileContainsHeader=schema.dataFileContainsHeader,
        attributes=attributes,
        excludedAttributeNames=[n for n in schema.excludedAttributeNames if n not in {target, row_id}],
    )


# --- missing values: the datasource's tokens, and the default ones that are levels of a CATEGORICAL column ---

# A default missing token is a level of a CATEGORICAL column when it fills at least this fraction of the sampled
# cells, and at least this many: "none" for "no internet service" in a fifth of the rows is data, while a rare "NA"
# is a cell someone left empty.
LEVEL_MIN_FRACTION = 0.01
LEVEL_MIN_ROWS = 10


def settle_missing_values(schema: Schema, sample: pd.DataFrame | None, missing_values: Sequence[str] | None) -> Schema:
    """The schema with each attribute's missing tokens written where they are not the defaults.

    An attribute that lists its own ``missingValues`` keeps them. Otherwise, given the datasource's
    ``missing_values``, every attribute takes them as they are. Without them the defaults hold, except in a
    CATEGORICAL column of the ``sample`` (raw tokens, columns named as the attributes) where a default token
    (blank aside; its spellings in any case together) fills at least ``LEVEL_MIN_FRACTION`` of the sampled
    cells and ``LEVEL_MIN_ROWS`` of them, and the column has other present values too: such a token is a level
    of that column, and its ``missingValues`` are the defaults without it.
    """
    attributes = []
    for a in schema.attributes:
        if a.missingValues is None and missing_values is not None:
            a = a.model_copy(update={"missingValues": list(missing_values)})
        elif a.missingValues is None and a.attributeType is AttributeType.CATEGORICAL and sample is not None:
            levels = _frequent_missing_tokens(sample[a.attributeName]) if a.attributeName in sample else set()
            if levels:
                a = a.model_copy(update={"missingValues": sorted(MISSING_TOKENS - levels - {""})})
        attributes.append(a)
    return schema.model_copy(update={"attributes": attributes})


def _frequent_missing_tokens(raw: pd.Series) -> set[str]:
    """The default missing tokens (lower-cased) frequent enough in a sampled column to be its levels."""
    lowered = raw.dropna().astype(str).str.strip().str.lower()
    counts = lowered[lowered != ""].value_counts()
    words = counts[counts.index.isin(MISSING_TOKENS)]
    if len(words) == len(counts):  # nothing but missing words: the column has no values of its own
        return set()
    enough = max(LEVEL_MIN_ROWS, LEVEL_MIN_FRACTION * len(raw))
    return {str(token) for token, count in words.items() if count >= enough}


def check_schema_columns(schema: Schema, columns: Sequence[str]) -> None:
    """Raise INVALID_DATA unless ``schema`` describes exactly the data's columns (by position if headerless)."""
    names = [a.attributeName for a in schema.attributes]
    if not schema.dataFileContainsHeader:
        if len(names) != len(columns):
            raise MlsvcError(
                ErrorCode.INVALID_DATA,
                f"the schema has {len(names)} attributes but the data has {len(columns)} columns",
                {"attributes": len(names), "columns": len(columns)},
            )
        return
    absent = [n for n in names if n not in set(columns)]
    if absent:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"schema attributes {absent} are not columns of the data; columns are {list(columns)}",
            {"missing_columns": absent, "columns": list(columns)},
        )
    extra = [c for c in columns if c not in set(names)]
    if extra:
        raise MlsvcError(
            ErrorCode.INVALID_DATA,
            f"data columns {extra} are not in the schema; add them as attributes (excluded if unwanted)",
            {"extra_columns": extra},
        )


# --- header detection ---


def _is_number(token: str) -> bool:
    values, _ = numeric_from_tokens(normalize_tokens(pd.Series([token], dtype=object)))
    return not np.isnan(values[0])


def _looks_like_name(token: str) -> bool:
    """Short, one-line and few words: what a column name looks like, unlike a sentence of free text."""
    return len(token) <= 100 and "\n" not in token and len(token.split()) <= 6


def _column_vote(name: str, later: list[str | None]) -> int:
    """How strongly one column says its first token is a name (+) or a value (−)."""
    tokens = normalize_tokens(pd.Series(later, dtype=object)).drop_null()
    if len(tokens) == 0:
        return 0
    _, invalid = numeric_from_tokens(tokens)
    if invalid.mean() <= GARBAGE_TOLERANCE:
        return 2  # a word over a column of numbers
    values = set(tokens.to_pylist())
    binary = BINARY_TRUE | BINARY_FALSE
    if name in values or (name.lower() in binary and all(v.lower() in binary for v in values)):
        return -2  # the first token recurs in (or belongs to) its column: it is data
    if len(values) <= 0.5 * len(tokens):
        return 1  # a repeating column of levels whose first token is none of them
    return 0


def detect_header(rows: list[list[str]]) -> bool:
    """Whether the first of ``rows`` (the file's first lines, split) is a header.

    - Any first-row token that is a number → no header: column names are words.
    - Otherwise each column votes: +2 when the rest of the column is numeric (a word over numbers);
      −2 when the first token recurs in its column (or is a binary token over a binary column);
      +1 when the column repeats a few levels and the first token is none of them; 0 otherwise
      (ids and free text are all distinct, so a new first token says nothing). Duplicate names vote −2.
    - A positive total → header. A zero total (e.g. an all-string file with no repeats) → header when every
      first-row token looks like a name (short, few words), since most CSV files carry one.
    - A single row of distinct non-numeric tokens → header (a header-only file).
    """
    if not rows:
        return False
    first = [t.strip() for t in rows[0]]
    named = [t for t in first if t.lower() not in MISSING_TOKENS]
    if not named or any(_is_number(t) for t in named):
        return False
    rest = rows[1:HEADER_SAMPLE_ROWS]
    duplicates = len(set(named)) != len(named)
    if not rest:
        return not duplicates
    score = -2 if duplicates else 0
    for j, name in enumerate(first):
        if name.lower() not in MISSING_TOKENS:
            score += _column_vote(name, [row[j] if j < len(row) else None for row in rest])
    return score > 0 or (score == 0 and all(_looks_like_name(t) for t in named))


# --- .schema files ---


def schema_to_json(schema: Schema) -> str:
    """The schema as the pretty JSON of an Amazon ML ``.schema`` file (unset fields left out)."""
    return json.dumps(schema.model_dump(mode="json", exclude_none=True), indent=2) + "\n"


def schema_from_json(text: str | bytes) -> Schema:
    """Parse a ``.schema`` file; INVALID_REQUEST with the reason when it is not JSON or not a valid schema."""
    try:
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise MlsvcError(ErrorCode.INVALID_REQUEST, f"the schema is not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            f"the schema is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    if not isinstance(data, dict):
        raise MlsvcError(ErrorCode.INVALID_REQUEST, "the schema must be a JSON object with an 'attributes' list")
    try:
        return Schema.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'schema'}: {e['msg']}" for e in exc.errors()]
        raise MlsvcError(
            ErrorCode.INVALID_REQUEST,
            "the schema is not a valid Amazon ML schema: " + "; ".join(problems),
            {"problems": problems},
        ) from None
