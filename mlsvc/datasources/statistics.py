"""Data insights for a datasource, computed in one streaming pass over typed chunks.

`StatisticsAccumulator.update` is called once per typed chunk (see `values.coerce_frame`): NUMERIC and
BINARY columns are float64 with NaN, CATEGORICAL and TEXT columns hold `str` or None. Memory stays
bounded whatever the number of rows:

- mean, std, min and max are exact: each chunk's moments are merged with Chan et al.'s parallel
  algorithm, which is numerically stable; the Pearson correlation with a numeric target merges
  co-moments the same way;
- one uniform reservoir of whole rows (Algorithm R, vectorised, seeded) backs the quantiles and
  histograms (exact while the rows fit in it) and the mutual information with the target;
- value counts are exact while an attribute has at most `distinct_cap` distinct values; past that
  they become a mergeable Misra-Gries summary holding `distinct_cap` counters: every reported count
  is then an under-count by at most `count_error_bound` (<= rows / (distinct_cap + 1)), and the
  distinct count is a lower bound, with a k-minimum-values estimate beside it.

Association with the target (rows whose target is missing left out): Pearson's r, exact, whenever
both sides are NUMERIC or BINARY (with a BINARY side it is the point-biserial r); and, for every
attribute, the mutual information in nats on the sampled rows, with NUMERIC values in `MI_BINS`
equal-frequency bins, CATEGORICAL ones as their `top_k` most frequent levels plus "other", and
missing as a level of its own. It is normalised by the target's entropy: the fraction of the
target's uncertainty the attribute removes, 0 to 1. A TEXT attribute scores as its most informative
frequent token, by that token's presence in a row.

A cell is *missing* when it was empty and *invalid* when a non-empty token could not be parsed for
its type; the two are disjoint. A NUMERIC +/-inf or a BINARY value other than 0/1 counts as invalid.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsvc.resources import AttributeType, Schema

QUANTILES: dict[str, float] = {"p1": 0.01, "p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
DISTINCT_CAP = 100_000
KMV_SIZE = 4096
MI_BINS = 10
MAX_TARGET_CLASSES = 100
TEXT_ASSOCIATION_TOKENS = 5
_PUNCTUATION = r"[\p{P}\p{S}]+"
_NUMERIC_LIKE = (AttributeType.NUMERIC, AttributeType.BINARY)


# --- JSON-safe scalars ---


def _float(value: float | np.floating | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return _float(numerator / denominator) if denominator else None


# --- exact moments ---


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        n_b = len(values)
        if n_b == 0:
            return
        mean_b = float(values.mean())
        m2_b = float(np.square(values - mean_b).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    def std(self) -> float | None:
        return _float(np.sqrt(self.m2 / (self.n - 1))) if self.n > 1 else None


@dataclass
class _CoMoments:
    """Pairwise-complete co-moments of two columns, merged chunk by chunk, for Pearson's r."""

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    m2_x: float = 0.0
    m2_y: float = 0.0
    c_xy: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        both = ~(np.isnan(x) | np.isnan(y))
        x, y = x[both], y[both]
        n_b = len(x)
        if n_b == 0:
            return
        mx, my = float(x.mean()), float(y.mean())
        dx_b, dy_b = x - mx, y - my
        n = self.n + n_b
        dx, dy = mx - self.mean_x, my - self.mean_y
        weight = self.n * n_b / n
        self.m2_x += float(np.dot(dx_b, dx_b)) + dx * dx * weight
        self.m2_y += float(np.dot(dy_b, dy_b)) + dy * dy * weight
        self.c_xy += float(np.dot(dx_b, dy_b)) + dx * dy * weight
        self.mean_x += dx * n_b / n
        self.mean_y += dy * n_b / n
        self.n = n

    def pearson(self) -> float | None:
        denominator = np.sqrt(self.m2_x * self.m2_y)
        return _float(min(1.0, max(-1.0, self.c_xy / denominator))) if denominator > 0 else None


# --- bounded value counts ---


class _FrequencyCounter:
    """Exact value counts up to `capacity` distinct values, then a mergeable Misra-Gries summary.

    Each chunk's exact counts are added in; whenever more than `capacity` values are held, the
    (capacity + 1)-th largest count is subtracted from all and the values left at zero or below are
    dropped (Agarwal et al., "Mergeable summaries", 2012). Every held count is then short of the true
    one by at most `error_bound`, the sum of the subtractions, itself at most rows / (capacity + 1).
    Beside it, a k-minimum-values sketch of the values' hashes estimates the distinct count.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys = np.empty(0, dtype=object)
        self.counts = np.empty(0, dtype=np.int64)
        self.error_bound = 0
        self.max_distinct = 0
        self._hashes = np.empty(0, dtype=np.uint64)

    @property
    def exact(self) -> bool:
        return self.error_bound == 0 and self.max_distinct <= self.capacity

    def add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Add one chunk's counts of distinct `keys`."""
        if len(keys) == 0:
            return
        self._add_hashes(keys)
        if len(self.keys):
            codes, uniques = pd.factorize(np.concatenate([self.keys, keys]))
            sums = np.bincount(codes, weights=np.concatenate([self.counts, counts]), minlength=len(uniques))
            keys, counts = np.asarray(uniques, dtype=object), sums.astype(np.int64)
        self.max_distinct = max(self.max_distinct, len(keys))
        if len(keys) > self.capacity:
            cut = len(counts) - self.capacity - 1
            threshold = int(np.partition(counts, cut)[cut])
            kept = counts > threshold
            keys, counts = keys[kept], counts[kept] - threshold
            self.error_bound += threshold
        self.keys, self.counts = keys, counts

    def _add_hashes(self, keys: np.ndarray) -> None:
        hashes = pd.util.hash_array(keys, categorize=False)
        self._hashes = np.union1d(self._hashes, hashes)[:KMV_SIZE]

    def distinct(self) -> int:
        """Exact while under capacity; else the number known to exist (a lower bound)."""
        return len(self.keys) if self.exact else self.max_distinct

    def distinct_estimate(self) -> int:
        """The k-minimum-values estimate; exact (bar hash collisions) while fewer than k values were seen."""
        if self.exact:
            return self.distinct()
        if len(self._hashes) < KMV_SIZE:
            return max(self.max_distinct, len(self._hashes))
        kth = float(self._hashes[KMV_SIZE - 1]) / 2.0**64
        return max(self.max_distinct, round((KMV_SIZE - 1) / kth))

    def top(self, k: int) -> list[tuple[str, int]]:
        """The k largest counts, ties broken by value, so the answer is deterministic."""
        return _top(self.keys, self.counts, k)

    def summary(self, k: int, key: str = "value") -> dict[str, Any]:
        return {
            "distinct": self.distinct(),
            "distinct_is_lower_bound": not self.exact,
            "distinct_estimate": self.distinct_estimate(),
            "top_values": [{key: value, "count": count} for value, count in self.top(k)],
            "top_counts_exact": self.exact,
            "count_error_bound": self.error_bound,
        }


def _top_indices(keys: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest counts, largest first, ties broken by the key as str."""
    candidates = np.arange(len(keys))
    if len(keys) > k:
        kth = np.partition(counts, len(counts) - k)[len(counts) - k]
        above = np.flatnonzero(counts > kth)
        tied = heapq.nsmallest(k - len(above), ((str(keys[i]), i) for i in np.flatnonzero(counts == kth)))
        candidates = np.concatenate([above, np.array([i for _, i in tied], dtype=np.int64)])
    order = sorted(candidates.tolist(), key=lambda i: (-counts[i], str(keys[i])))
    return np.array(order, dtype=np.int64)


def _top(keys: np.ndarray, counts: np.ndarray, k: int) -> list[tuple[str, int]]:
    """The k (key, count) pairs of largest count, as str and int, ties broken by key."""
    return [(str(keys[i]), int(counts[i])) for i in _top_indices(keys, counts, k)]


def _value_counts(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    counts = column.value_counts(dropna=True)
    return counts.index.to_numpy(dtype=object), counts.to_numpy(dtype=np.int64)


# --- text ---


def _split_tokens(texts: pd.Series) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Texts (none missing) as arrow strings; the row of each token; the tokens, lowercased, punctuation stripped."""
    array = pa.array(texts.to_numpy(dtype=object), type=pa.large_string())
    split = pc.utf8_split_whitespace(pc.replace_substring_regex(pc.utf8_lower(array), _PUNCTUATION, ""))
    tokens = pc.list_flatten(split)
    keep = pc.greater(pc.utf8_length(tokens), 0)
    rows = pc.list_parent_indices(split).to_numpy(zero_copy_only=False)[keep.to_numpy(zero_copy_only=False)]
    return array, rows, pc.filter(tokens, keep)


# --- per-attribute accumulators ---


class _AttributeStats:
    """Rows seen, missing and invalid cells; subclasses add what their type calls for."""

    def __init__(self, kind: AttributeType) -> None:
        self.kind = kind
        self.count = 0
        self.missing = 0
        self.invalid = 0

    def update(self, column: pd.Series, invalid: np.ndarray) -> np.ndarray | None:
        """Take a chunk's column; return the cleaned float values for numeric-like types."""
        self.count += len(column)
        self.invalid += int(invalid.sum())
        self.missing += int((column.isna().to_numpy() & ~invalid).sum())
        return None

    def summary(self, sample: pd.Series, approximate: bool, top_k: int) -> dict[str, Any]:
        return {"type": self.kind.value, "count": self.count, "missing": self.missing, "invalid": self.invalid}


class _NumericStats(_AttributeStats):
    def __init__(self, histogram_bins: int) -> None:
        super().__init__(AttributeType.NUMERIC)
        self.histogram_bins = histogram_bins
        self.moments = _Moments()
        self.min = np.inf
        self.max = -np.inf

    def update(self, column: pd.Series, invalid: np.ndarray) -> np.ndarray:
        values = column.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        infinite = np.isinf(values)
        values[infinite] = np.nan
        super().update(column, invalid | infinite)
        present = values[~np.isnan(values)]
        if len(present):
            self.moments.add(present)
            self.min = min(self.min, float(present.min()))
            self.max = max(self.max, float(present.max()))
        return values

    def numbers(self) -> dict[str, Any]:
        present = self.moments.n > 0
        return {
            "min": self.min if present else None,
            "max": self.max if present else None,
            "mean": _float(self.moments.mean) if present else None,
            "std": self.moments.std(),
        }

    def summary(self, sample: pd.Series, approximate: bool, top_k: int) -> dict[str, Any]:
        values = sample.to_numpy(dtype="float64", na_value=np.nan)
        values = values[~np.isnan(values)]
        return {
            **super().summary(sample, approximate, top_k),
            **self.numbers(),
            "quantiles": self._quantiles(values),
            "histogram": self._histogram(values),
            "approximate": approximate,
            "sample_values": len(values),
        }

    @staticmethod
    def _quantiles(values: np.ndarray) -> dict[str, float | None]:
        if len(values) == 0:
            return dict.fromkeys(QUANTILES)
        found = np.quantile(values, list(QUANTILES.values()), method="linear")
        return {name: _float(v) for name, v in zip(QUANTILES, found, strict=True)}

    def _histogram(self, values: np.ndarray) -> dict[str, list[Any]] | None:
        if len(values) == 0:
            return None
        counts, edges = np.histogram(values, bins=self.histogram_bins, range=(self.min, self.max))
        return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


class _BinaryStats(_AttributeStats):
    def __init__(self) -> None:
        super().__init__(AttributeType.BINARY)
        self.zeros = 0
        self.ones = 0

    def update(self, column: pd.Series, invalid: np.ndarray) -> np.ndarray:
        values = column.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        zeros, ones = values == 0.0, values == 1.0
        other = ~(zeros | ones | np.isnan(values))
        values[other] = np.nan
        super().update(column, invalid | other)
        self.zeros += int(zeros.sum())
        self.ones += int(ones.sum())
        return values

    def summary(self, sample: pd.Series, approximate: bool, top_k: int) -> dict[str, Any]:
        return {
            **super().summary(sample, approximate, top_k),
            "zeros": self.zeros,
            "ones": self.ones,
            "true_fraction": _ratio(self.ones, self.zeros + self.ones),
        }


class _CategoricalStats(_AttributeStats):
    def __init__(self, distinct_cap: int) -> None:
        super().__init__(AttributeType.CATEGORICAL)
        self.counter = _FrequencyCounter(distinct_cap)

    def update(self, column: pd.Series, invalid: np.ndarray) -> None:
        super().update(column, invalid)
        self.counter.add(*_value_counts(column))

    def summary(self, sample: pd.Series, approximate: bool, top_k: int) -> dict[str, Any]:
        return {**super().summary(sample, approximate, top_k), **self.counter.summary(top_k)}


class _TextStats(_AttributeStats):
    def __init__(self, distinct_cap: int) -> None:
        super().__init__(AttributeType.TEXT)
        self.tokens = _FrequencyCounter(distinct_cap)
        self.values = 0
        self.length_sum = 0
        self.length_min: int | None = None
        self.length_max: int | None = None
        self.token_sum = 0
        self.token_max = 0

    def update(self, column: pd.Series, invalid: np.ndarray) -> None:
        super().update(column, invalid)
        texts = column.dropna()
        if texts.empty:
            return
        array, rows, tokens = _split_tokens(texts)
        lengths = pc.utf8_length(array).to_numpy(zero_copy_only=False)
        token_counts = np.bincount(rows, minlength=len(array))
        self.values += len(texts)
        self.length_sum += int(lengths.sum())
        low, high = int(lengths.min()), int(lengths.max())
        self.length_min = low if self.length_min is None else min(self.length_min, low)
        self.length_max = high if self.length_max is None else max(self.length_max, high)
        self.token_sum += int(token_counts.sum())
        self.token_max = max(self.token_max, int(token_counts.max()))
        counted = pc.value_counts(tokens)
        self.tokens.add(
            counted.field("values").to_numpy(zero_copy_only=False), counted.field("counts").to_numpy().astype(np.int64)
        )

    def summary(self, sample: pd.Series, approximate: bool, top_k: int) -> dict[str, Any]:
        vocabulary = self.tokens.summary(top_k, key="token")
        return {
            **super().summary(sample, approximate, top_k),
            "length_min": self.length_min,
            "length_mean": _ratio(self.length_sum, self.values),
            "length_max": self.length_max,
            "tokens_mean": _ratio(self.token_sum, self.values),
            "tokens_max": self.token_max if self.values else None,
            "vocabulary": vocabulary["distinct"],
            "vocabulary_is_lower_bound": vocabulary["distinct_is_lower_bound"],
            "vocabulary_estimate": vocabulary["distinct_estimate"],
            "top_tokens": vocabulary["top_values"],
            "top_token_counts_exact": vocabulary["top_counts_exact"],
            "token_count_error_bound": vocabulary["count_error_bound"],
        }


def _attribute_stats(kind: AttributeType, histogram_bins: int, distinct_cap: int) -> _AttributeStats:
    if kind is AttributeType.NUMERIC:
        return _NumericStats(histogram_bins)
    if kind is AttributeType.BINARY:
        return _BinaryStats()
    if kind is AttributeType.CATEGORICAL:
        return _CategoricalStats(distinct_cap)
    return _TextStats(distinct_cap)


# --- the row reservoir ---


class _RowReservoir:
    """A uniform sample of at most `size` whole rows (Algorithm R, vectorised per chunk)."""

    def __init__(self, kinds: dict[str, AttributeType], size: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self.filled = 0
        self._rng = np.random.default_rng(seed)
        self._columns = {
            name: np.full(size, np.nan) if kind in _NUMERIC_LIKE else np.full(size, None, dtype=object)
            for name, kind in kinds.items()
        }

    def offer(self, columns: dict[str, pd.Series | np.ndarray], rows: int) -> None:
        fill = min(rows, self.size - self.filled)
        if fill:
            self._store(columns, np.arange(self.filled, self.filled + fill), np.arange(fill))
            self.filled += fill
        if fill < rows:
            self._store(columns, *self._replacements(fill, rows))
        self.seen += rows

    def _replacements(self, start: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i of the stream (1-based) replaces slot j, j uniform in [0, i), when j < size; last one wins."""
        position = np.arange(self.seen + start + 1, self.seen + rows + 1, dtype=np.int64)
        slots = self._rng.integers(0, position)
        hit = np.flatnonzero(slots < self.size)
        slots, chunk_rows = slots[hit][::-1], (hit + start)[::-1]
        slots, last = np.unique(slots, return_index=True)
        return slots, chunk_rows[last]

    def _store(self, columns: dict[str, pd.Series | np.ndarray], slots: np.ndarray, chunk_rows: np.ndarray) -> None:
        for name, target in self._columns.items():
            source = columns[name]
            if isinstance(source, np.ndarray):
                target[slots] = source[chunk_rows]
            else:
                target[slots] = source.take(chunk_rows).to_numpy(dtype=object, na_value=None)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                name: pd.Series(values[: self.filled], dtype="float64" if values.dtype.kind == "f" else object)
                for name, values in self._columns.items()
            }
        )


# --- mutual information on the sample ---


def _quantile_codes(values: np.ndarray, bins: int) -> np.ndarray:
    """Equal-frequency bins; missing values get a code of their own."""
    missing = np.isnan(values)
    codes = np.full(len(values), bins, dtype=np.int64)
    present = values[~missing]
    if len(present):
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
        codes[~missing] = np.searchsorted(edges, present, side="right")
    return codes


def _level_codes(values: pd.Series, levels: int) -> np.ndarray:
    """The most frequent `levels` values, then one code for every other value, then one for missing."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object, na_value=None))
    top = _top_indices(
        np.asarray(uniques, dtype=object), np.bincount(codes[codes >= 0], minlength=len(uniques)), levels
    )
    lookup = np.full(len(uniques) + 1, len(top), dtype=np.int64)
    lookup[top] = np.arange(len(top))
    lookup[-1] = len(top) + 1  # factorize codes a missing value -1
    return lookup[codes]


def _codes(kind: AttributeType, values: pd.Series, levels: int) -> np.ndarray:
    if kind is AttributeType.NUMERIC:
        return _quantile_codes(values.to_numpy(dtype="float64", na_value=np.nan), MI_BINS)
    if kind is AttributeType.BINARY:
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        return np.where(np.isnan(numbers), 2, numbers).astype(np.int64)
    return _level_codes(values, levels)


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """Plug-in mutual information, in nats, of two integer codings of the same rows."""
    if len(x) == 0:
        return 0.0
    width = int(y.max()) + 1
    joint = np.bincount(x * width + y).astype("float64") / len(x)
    joint = np.pad(joint, (0, (-len(joint)) % width)).reshape(-1, width)
    px, py = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return max(0.0, float((joint[nonzero] * np.log(joint[nonzero] / (px @ py)[nonzero])).sum()))


def _token_presence(texts: pd.Series, count: int) -> dict[str, np.ndarray]:
    """For the `count` tokens found in most rows of `texts`: 1 for the rows that contain it, else 0."""
    present = np.flatnonzero(texts.notna().to_numpy())
    if len(present) == 0:
        return {}
    _, rows, tokens = _split_tokens(texts.iloc[present])
    encoded = pc.dictionary_encode(tokens)
    vocabulary = encoded.dictionary.to_numpy(zero_copy_only=False)
    if len(vocabulary) == 0:
        return {}
    pairs = np.unique(rows * len(vocabulary) + encoded.indices.to_numpy())
    pair_rows, pair_codes = present[pairs // len(vocabulary)], pairs % len(vocabulary)
    documents = np.bincount(pair_codes, minlength=len(vocabulary))
    presence = {}
    for code in _top_indices(vocabulary, documents, count):
        contains = np.zeros(len(texts), dtype=np.int64)
        contains[pair_rows[pair_codes == code]] = 1
        presence[str(vocabulary[code])] = contains
    return presence


# --- the accumulator ---


class StatisticsAccumulator:
    """Data insights over a stream of typed chunks, in bounded memory; `result()` is plain JSON."""

    def __init__(
        self,
        schema: Schema,
        *,
        sample_size: int = 100_000,
        seed: int = 0,
        top_k: int = 20,
        histogram_bins: int = 20,
        distinct_cap: int = DISTINCT_CAP,
    ) -> None:
        if sample_size < 1 or top_k < 1 or histogram_bins < 1 or distinct_cap < 1:
            raise ValueError("sample_size, top_k, histogram_bins and distinct_cap must be positive")
        self.schema = schema
        self.top_k = top_k
        self.kinds = {a.attributeName: a.attributeType for a in schema.attributes}
        self.target = schema.targetAttributeName
        self.rows = 0
        self._stats = {name: _attribute_stats(kind, histogram_bins, distinct_cap) for name, kind in self.kinds.items()}
        self._reservoir = _RowReservoir(self.kinds, sample_size, seed)
        self._pearson: dict[str, _CoMoments] = {}
        if self.target is not None and self.kinds[self.target] in _NUMERIC_LIKE:
            self._pearson = {
                name: _CoMoments() for name, kind in self.kinds.items() if kind in _NUMERIC_LIKE and name != self.target
            }

    @property
    def sample_rows(self) -> int:
        """How many rows the reservoir holds: min(rows seen, sample_size)."""
        return self._reservoir.filled

    def sample(self) -> pd.DataFrame:
        """The uniform reservoir sample of rows, typed as the chunks were (numeric-like cleaned of inf)."""
        return self._reservoir.frame()

    def update(self, typed: pd.DataFrame, invalid: pd.DataFrame) -> None:
        """Fold one typed chunk and its same-shape invalid mask into the statistics."""
        absent = [name for name in self.kinds if name not in typed.columns]
        if absent:
            raise ValueError(f"chunk lacks attributes {absent}; its columns are {list(typed.columns)}")
        rows = len(typed)
        columns: dict[str, pd.Series | np.ndarray] = {}
        for name, stats in self._stats.items():
            column = typed[name]
            mask = invalid[name].to_numpy(dtype=bool) if name in invalid.columns else np.zeros(rows, dtype=bool)
            values = stats.update(column, mask)
            columns[name] = column if values is None else values
        if self._pearson:
            y = columns[self.target]
            for name, co in self._pearson.items():
                co.add(columns[name], y)
        self._reservoir.offer(columns, rows)
        self.rows += rows

    def result(self) -> dict[str, Any]:
        sample = self._reservoir.frame()
        approximate = self.rows > self._reservoir.size
        attributes = {name: stats.summary(sample[name], approximate, self.top_k) for name, stats in self._stats.items()}
        result: dict[str, Any] = {
            "row_count": self.rows,
            "sample_rows": self._reservoir.filled,
            "approximate": approximate,
            "attributes": attributes,
            "target": None,
        }
        if self.target is not None:
            associations = self._associations(sample)
            for name, association in associations.items():
                attributes[name]["association"] = association
            result["target"] = self._target_section(attributes[self.target], associations)
        return result

    def _target_section(self, stats: dict[str, Any], associations: dict[str, dict[str, Any]]) -> dict[str, Any]:
        kind = self.kinds[self.target]
        section: dict[str, Any] = {"name": self.target, "type": kind.value, "count": stats["count"]}
        section.update(missing=stats["missing"], invalid=stats["invalid"])
        if kind is AttributeType.BINARY:
            section["class_counts"] = {"0": stats["zeros"], "1": stats["ones"]}
            section["true_fraction"] = stats["true_fraction"]
        elif isinstance(target_stats := self._stats[self.target], _CategoricalStats):
            section["class_counts"] = dict(target_stats.counter.top(max(self.top_k, MAX_TARGET_CLASSES)))
            section.update(distinct=stats["distinct"], class_counts_exact=stats["top_counts_exact"])
        elif kind is AttributeType.NUMERIC:
            keys = ("min", "max", "mean", "std", "quantiles", "histogram", "approximate")
            section["summary"] = {key: stats[key] for key in keys}
        ranking = [
            {
                "attribute": name,
                "mutual_information_normalized": a["mutual_information_normalized"],
                "correlation": a["correlation"],
            }
            for name, a in associations.items()
        ]
        section["ranking"] = sorted(
            ranking, key=lambda r: (-(r["mutual_information_normalized"] or 0.0), r["attribute"])
        )
        return section

    def _associations(self, sample: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Association of every other attribute with the target, on sampled rows whose target is present."""
        target_kind = self.kinds[self.target]
        labelled = sample[sample[self.target].notna().to_numpy()].reset_index(drop=True)
        y = _codes(target_kind, labelled[self.target], MAX_TARGET_CLASSES)
        target_entropy = _entropy(y) if len(y) else 0.0
        associations = {}
        for name, kind in self.kinds.items():
            if name == self.target:
                continue
            co = self._pearson.get(name)
            association: dict[str, Any] = {
                "target": self.target,
                "correlation": co.pearson() if co else None,
                "correlation_rows": co.n if co else None,
                "sample_rows": len(labelled),
            }
            if kind is AttributeType.TEXT:
                association.update(self._text_information(labelled[name], y, target_entropy))
            else:
                mi = _mutual_information(_codes(kind, labelled[name], self.top_k), y)
                association.update(_information(mi, target_entropy))
            associations[name] = association
        return associations

    def _text_information(self, texts: pd.Series, y: np.ndarray, target_entropy: float) -> dict[str, Any]:
        """A text's information about the target: that of its most informative frequent token's presence."""
        scores = [
            {"token": token, **_information(_mutual_information(rows, y), target_entropy)}
            for token, rows in _token_presence(texts, self.top_k).items()
        ]
        scores.sort(key=lambda s: (-s["mutual_information"], s["token"]))
        best = scores[0]["mutual_information"] if scores else 0.0
        return {**_information(best, target_entropy), "tokens": scores[:TEXT_ASSOCIATION_TOKENS]}


def _information(mi: float, target_entropy: float) -> dict[str, float | None]:
    """Mutual information in nats, and as the fraction of the target's entropy it explains (0 to 1)."""
    normalized = min(1.0, mi / target_entropy) if target_entropy > 0 else None
    return {"mutual_information": _float(mi), "mutual_information_normalized": _float(normalized)}
