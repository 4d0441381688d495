"""Data insights for a datasource, computed in one streaming pass over typed chunks, or per partition and merged.

`StatisticsAccumulator.update` is called once per typed chunk (see `values.coerce_frame`): NUMERIC and
BINARY columns are float64 with NaN, CATEGORICAL and TEXT columns hold `str` or None.
`update_columns` takes the same chunk as the datasource job keeps it (`values.coerce_array`): float64
numpy, and arrow string or dictionary arrays with nulls, so counting never makes a Python object per
cell. Memory stays bounded whatever the number of rows:

- mean, std, min and max are exact: each chunk's moments are merged with Chan et al.'s parallel
  algorithm, which is numerically stable, with each mean held as two floats so that a large offset
  costs no precision and where the chunks were cut does not matter; the Pearson correlation with a
  numeric target merges co-moments the same way;
- one uniform reservoir of whole rows (Algorithm R, vectorised, seeded) backs the quantiles and
  histograms (exact while the rows fit in it) and the mutual information with the target;
- value counts are exact while an attribute has at most `distinct_cap` distinct values; past that
  they become a mergeable Misra-Gries summary holding `distinct_cap` counters: every reported count
  is then an under-count by at most `count_error_bound` (<= rows / (distinct_cap + 1)), and the
  distinct count is a lower bound, with a k-minimum-values estimate beside it.

Accumulators merge: one per partition of the data (a contiguous run of rows: a file, or a byte range of
one), each built with the same schema and settings, folded together in the partitions' order by
`StatisticsAccumulator.merge`. The merge gives what one pass over all the rows gives wherever that pass
is exact: counts of rows, missing, invalid, zeros and ones, text lengths and tokens, min and max, and
value counts while under `distinct_cap`, exactly; the moments and co-moments to rounding (Chan et al.'s
pairwise combination, as between chunks); and, while all the rows fit in the reservoir, the very sample
one pass holds, in stream order, hence the same quantiles, histograms and mutual information. Past those
limits the merge keeps the single pass's guarantees: Misra-Gries summaries merge within the same error
bound (Agarwal et al.), distinct sketches as their union, and reservoirs as a uniform sample of the union
of their rows (if each partition's accumulator has a seed of its own).

Association with the target (rows whose target is missing left out): Pearson's r, exact, whenever
both sides are NUMERIC or BINARY (with a BINARY side it is the point-biserial r); and, for every
attribute, the mutual information in nats on the sampled rows, with NUMERIC values in `MI_BINS`
equal-frequency bins, CATEGORICAL ones as their `top_k` most frequent levels plus "other", and
missing as a level of its own. It is normalised by the target's entropy: the fraction of the
target's uncertainty the attribute removes, 0 to 1. A TEXT attribute scores as its most informative
frequent token, by that token's presence in a row.

A cell is *missing* when it was empty and *invalid* when a non-empty token could not be parsed for
its type; the two are disjoint. A NUMERIC +/-inf or a BINARY value other than 0/1 counts as invalid.
The datasource job leaves rows holding an invalid value out of every figure (as training leaves them
out) and adds their invalid values to each attribute's `invalid` by `add_skipped_invalid`, so that an
attribute's `invalid` is the count its datasource's `invalid_rows.by_column` shows.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlsvc.datasources.values import objects
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


def _two_sum(a: float, b: float) -> tuple[float, float]:
    """a + b rounded, and what the rounding lost (Knuth's TwoSum): the two add up to a + b exactly."""
    total = a + b
    b_part = total - a
    return total, (a - (total - b_part)) + (b - b_part)


def _chunk_mean(values: np.ndarray) -> tuple[float, float, np.ndarray]:
    """A chunk's mean as a float and what its rounding left out, and the values' deviations from that float."""
    high = float(values.mean())
    deviations = values - high  # exact for values near their mean (Sterbenz), so their mean is what was lost
    return high, float(deviations.mean()), deviations


def _difference(mean: float, low: float, other_mean: float, other_low: float) -> float:
    """(other_mean + other_low) - (mean + low), to the precision of the difference itself, however large the two."""
    high, error = _two_sum(other_mean, -mean)
    return high + (error + (other_low - low))


def _moved(mean: float, low: float, step: float) -> tuple[float, float]:
    """The mean held as mean + low, moved by `step`, renormalised."""
    high, error = _two_sum(mean, step)
    return _two_sum(high, low + error)


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk and partition by partition (Chan et al.).

    The mean is held as a float and what its rounding left out (`mean_low`). Far from zero (1e9 give or take 1,
    say) one float's rounding of the mean is a sizeable part of the deviation between two means that each merge
    adds in; the std would then be good to 1e-9 only, and would depend on where chunks and partitions were cut.
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    mean_low: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        high, low, deviations = _chunk_mean(values)
        m2 = max(0.0, float(np.square(deviations).sum()) - len(values) * low * low)  # about high + low, not high
        self.merge(_Moments(len(values), high, m2, low))

    def merge(self, other: _Moments) -> None:
        """Fold in the moments of other values (Chan et al.'s pairwise combination)."""
        if other.n == 0:
            return
        if self.n == 0:  # copied, not combined: the step to other's mean would round its low part away
            vars(self).update(vars(other))
            return
        n = self.n + other.n
        delta = _difference(self.mean, self.mean_low, other.mean, other.mean_low)
        self.mean, self.mean_low = _moved(self.mean, self.mean_low, delta * other.n / n)
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n

    def value(self) -> float:
        """The mean, rounded once."""
        return self.mean + self.mean_low

    def std(self) -> float | None:
        return _float(np.sqrt(self.m2 / (self.n - 1))) if self.n > 1 else None


@dataclass
class _CoMoments:
    """Pairwise-complete co-moments of two columns, merged chunk by chunk and partition by partition, for
    Pearson's r; the means are held as `_Moments` holds its mean."""

    n: int = 0
    mean_x: float = 0.0
    mean_y: float = 0.0
    m2_x: float = 0.0
    m2_y: float = 0.0
    c_xy: float = 0.0
    low_x: float = 0.0
    low_y: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray, y_missing: np.ndarray | None = None) -> None:
        """Fold in a chunk's pairs; ``y_missing`` is ``np.isnan(y)``, when the caller has it already."""
        missing = np.isnan(x)
        missing |= np.isnan(y) if y_missing is None else y_missing
        if missing.any():
            x, y = x[~missing], y[~missing]
        n_b = len(x)
        if n_b == 0:
            return
        (mx, lx, dx_b), (my, ly, dy_b) = _chunk_mean(x), _chunk_mean(y)
        # einsum, not np.dot: these 1-D sums must not go to BLAS, whose threads can make each call take
        # milliseconds instead of microseconds on a busy machine.
        m2_x = max(0.0, float(np.einsum("i,i->", dx_b, dx_b)) - n_b * lx * lx)
        m2_y = max(0.0, float(np.einsum("i,i->", dy_b, dy_b)) - n_b * ly * ly)
        c_xy = float(np.einsum("i,i->", dx_b, dy_b)) - n_b * lx * ly
        self.merge(_CoMoments(n_b, mx, my, m2_x, m2_y, c_xy, lx, ly))

    def merge(self, other: _CoMoments) -> None:
        """Fold in the co-moments of other pairs (Chan et al.'s pairwise combination)."""
        if other.n == 0:
            return
        if self.n == 0:  # copied, as in `_Moments.merge`
            vars(self).update(vars(other))
            return
        n = self.n + other.n
        dx = _difference(self.mean_x, self.low_x, other.mean_x, other.low_x)
        dy = _difference(self.mean_y, self.low_y, other.mean_y, other.low_y)
        weight = self.n * other.n / n
        self.m2_x += other.m2_x + dx * dx * weight
        self.m2_y += other.m2_y + dy * dy * weight
        self.c_xy += other.c_xy + dx * dy * weight
        self.mean_x, self.low_x = _moved(self.mean_x, self.low_x, dx * other.n / n)
        self.mean_y, self.low_y = _moved(self.mean_y, self.low_y, dy * other.n / n)
        self.n = n

    def pearson(self) -> float | None:
        denominator = np.sqrt(self.m2_x * self.m2_y)
        return _float(min(1.0, max(-1.0, self.c_xy / denominator))) if denominator > 0 else None


# --- bounded value counts ---


class _FrequencyCounter:
    """Exact value counts up to `capacity` distinct values, then a mergeable Misra-Gries summary.

    Chunks' exact counts are added in; whenever more than `capacity` values are held, the
    (capacity + 1)-th largest count is subtracted from all and the values left at zero or below are
    dropped (Agarwal et al., "Mergeable summaries", 2012). Every held count is then short of the true
    one by at most `error_bound`, the sum of the subtractions, itself at most rows / (capacity + 1).
    Beside it, a k-minimum-values sketch of the values' hashes estimates the distinct count; it starts
    when the counts stop being exact, from the values held then (all the values seen so far).

    The values are held as an arrow string array, so no Python object is made per value. Chunks' counts
    wait until they hold `capacity` entries and are merged together: one merge per `capacity` values
    instead of one per chunk, and the summary only gets tighter for it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys = pa.array([], type=pa.string())
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[pa.Array, np.ndarray]] = []
        self._pending_entries = 0
        self._error_bound = 0
        self._max_distinct = 0
        self._hashes = np.empty(0, dtype=np.uint64)
        self._sketching = False

    @property
    def keys(self) -> pa.Array:
        self._merge()
        return self._keys

    @property
    def counts(self) -> np.ndarray:
        self._merge()
        return self._counts

    @property
    def error_bound(self) -> int:
        self._merge()
        return self._error_bound

    @property
    def max_distinct(self) -> int:
        self._merge()
        return self._max_distinct

    @property
    def exact(self) -> bool:
        return self.error_bound == 0 and self.max_distinct <= self.capacity

    def add(self, keys: pa.Array, counts: np.ndarray) -> None:
        """Add one chunk's counts of distinct `keys` (an arrow string array)."""
        if len(keys) == 0:
            return
        self._pending.append((_strings(keys), np.asarray(counts, dtype=np.int64)))
        self._pending_entries += len(keys)
        if self._pending_entries >= self.capacity:
            self._merge()

    def merge(self, other: _FrequencyCounter) -> None:
        """Fold in the counts of a counter of the same capacity (Agarwal et al.'s merge of Misra-Gries summaries)."""
        if other.capacity != self.capacity:
            raise ValueError(f"cannot merge value counts of capacity {other.capacity} into capacity {self.capacity}")
        self._merge()
        keys, counts = other.keys, other.counts.copy()  # a copy: the held counts must not alias other's
        if other._sketching:
            if not self._sketching:  # still exact, so the values held are all the values seen
                self._add_hashes(self._keys)
                self._sketching = True
            self._add_hash_values(other._hashes)
        elif self._sketching:  # other is exact: its values held are all the values it saw
            self._add_hashes(keys)
        self._error_bound += other._error_bound
        self._max_distinct = max(self._max_distinct, other._max_distinct)
        if len(keys):
            self._combine([(keys, counts)])

    def _merge(self) -> None:
        if not self._pending:
            return
        pending, self._pending, self._pending_entries = self._pending, [], 0
        if self._sketching:
            for keys, _ in pending:
                self._add_hashes(keys)
        self._combine(pending)

    def _combine(self, pending: list[tuple[pa.Array, np.ndarray]]) -> None:
        """Add counts (not empty) to those held; past capacity, reduce to a Misra-Gries summary."""
        parts = ([(self._keys, self._counts)] if len(self._keys) else []) + pending
        if len(parts) == 1:
            keys, counts = parts[0]
        else:
            merged = pc.dictionary_encode(pa.concat_arrays([keys for keys, _ in parts]))
            codes = merged.indices.to_numpy(zero_copy_only=False)
            weights = np.concatenate([counts for _, counts in parts])
            keys = merged.dictionary
            counts = np.bincount(codes, weights=weights, minlength=len(keys)).astype(np.int64)
        self._max_distinct = max(self._max_distinct, len(keys))
        if len(keys) > self.capacity:
            if not self._sketching:
                self._add_hashes(keys)
                self._sketching = True
            cut = len(counts) - self.capacity - 1
            threshold = int(np.partition(counts, cut)[cut])
            kept = counts > threshold
            keys, counts = keys.filter(pa.array(kept)), counts[kept] - threshold
            self._error_bound += threshold
        self._keys, self._counts = keys, counts

    def _add_hashes(self, keys: pa.Array) -> None:
        self._add_hash_values(_string_hashes(keys))

    def _add_hash_values(self, hashes: np.ndarray) -> None:
        """Keep the KMV_SIZE smallest distinct hashes of those held and `hashes` (so sketches merge as a union)."""
        if len(self._hashes) == KMV_SIZE:
            hashes = hashes[hashes < self._hashes[-1]]
        self._hashes = _sorted_unique(np.concatenate([self._hashes, hashes]))[:KMV_SIZE]

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


def _strings(values: pa.Array) -> pa.Array:
    """An arrow array of text as plain `string` (one type, so chunks' arrays can be concatenated)."""
    if isinstance(values, pa.DictionaryArray):
        values = values.dictionary_decode()
    return values if values.type == pa.string() else values.cast(pa.string())


_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_BYTE_BASE = np.uint64(0x100000001B3)
_powers = np.cumprod(np.full(64, _BYTE_BASE, dtype=np.uint64))  # BASE**1, BASE**2, ...: grown on demand


_HASH_SLICE_BYTES = 64 * 1024  # strings are hashed this many bytes at a time, so temporaries stay small


def _string_hashes(strings: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string, over arrow's buffers: a polynomial of the bytes mixed by splitmix64's
    finaliser. Used only to estimate distinct counts, so it needs to spread values, not to resist attack."""
    strings = strings.cast(pa.large_string())
    n = len(strings)
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64, count=n + 1, offset=strings.offset * 8)
    hashes = np.diff(offsets).astype(np.uint64) * _MIX_2
    if n and offsets[-1] > offsets[0]:
        data = np.frombuffer(data_buffer, dtype=np.uint8)
        cuts = np.unique(np.searchsorted(offsets, np.arange(offsets[0], offsets[-1], _HASH_SLICE_BYTES), "right") - 1)
        for low, high in zip(cuts, [*cuts[1:].tolist(), n], strict=True):
            hashes[low:high] += _polynomial(data, offsets[low : high + 1])
    hashes ^= hashes >> np.uint64(30)
    hashes *= _MIX_1
    hashes ^= hashes >> np.uint64(27)
    hashes *= _MIX_2
    hashes ^= hashes >> np.uint64(31)
    return hashes


def _polynomial(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum over each string's bytes b_j of (b_j + 1) * BASE**(j + 1), modulo 2**64."""
    global _powers
    lengths = np.diff(offsets)
    out = np.zeros(len(lengths), dtype=np.uint64)
    total = int(offsets[-1] - offsets[0])
    if total == 0:
        return out
    longest = int(lengths.max())
    if len(_powers) < longest:
        _powers = np.cumprod(np.full(max(longest, 2 * len(_powers)), _BYTE_BASE, dtype=np.uint64))
    starts = offsets[:-1] - offsets[0]
    position = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    terms = (data[offsets[0] : offsets[-1]].astype(np.uint64) + np.uint64(1)) * _powers[position]
    filled = lengths > 0
    out[filled] = np.add.reduceat(terms, starts[filled])
    return out


def _names(keys: pa.Array | np.ndarray, indices: np.ndarray) -> list[str]:
    if isinstance(keys, pa.Array):
        return [str(v) for v in keys.take(pa.array(indices, type=pa.int64())).to_pylist()]
    return [str(keys[i]) for i in indices]


def _top_indices(keys: pa.Array | np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest counts, largest first, ties broken by the key as str."""
    candidates = np.arange(len(counts))
    if len(counts) > k:
        kth = np.partition(counts, len(counts) - k)[len(counts) - k]
        above = np.flatnonzero(counts > kth)
        tied_at = np.flatnonzero(counts == kth)
        room = k - len(above)
        if isinstance(keys, pa.Array):  # sorted by arrow: UTF-8 bytes sort as the code points, as str does
            order = pc.sort_indices(keys.take(pa.array(tied_at, type=pa.int64())))
            chosen = tied_at[np.asarray(order.to_numpy(zero_copy_only=False)[:room], dtype=np.int64)]
        else:
            tied = heapq.nsmallest(room, zip(_names(keys, tied_at), tied_at.tolist(), strict=True))
            chosen = np.array([i for _, i in tied], dtype=np.int64)
        candidates = np.concatenate([above, chosen])
    names = _names(keys, candidates)
    order = sorted(range(len(candidates)), key=lambda j: (-counts[candidates[j]], names[j]))
    return candidates[np.array(order, dtype=np.int64)] if order else candidates


def _top(keys: pa.Array | np.ndarray, counts: np.ndarray, k: int) -> list[tuple[str, int]]:
    """The k (key, count) pairs of largest count, as str and int, ties broken by key."""
    indices = _top_indices(keys, counts, k)
    return [(name, int(counts[i])) for name, i in zip(_names(keys, indices), indices, strict=True)]


# --- text ---


def _words(texts: pa.Array) -> tuple[pa.Array, pa.DictionaryArray, np.ndarray, pa.Array]:
    """Texts split at whitespace (a missing one has no word): the lists of words, the words dictionary-encoded,
    and for each distinct word the code of its token (lowercased, punctuation stripped; -1 if nothing is left)
    in the vocabulary of tokens. Each distinct word is cleaned once; neither step touches whitespace, so splitting
    first gives the tokens splitting the cleaned text would."""
    split = _split_whitespace(texts)
    words = pc.dictionary_encode(pc.list_flatten(split))
    merged = pc.dictionary_encode(pc.replace_substring_regex(pc.utf8_lower(words.dictionary), _PUNCTUATION, ""))
    blank = np.asarray(pc.equal(pc.binary_length(merged.dictionary), 0).to_numpy(zero_copy_only=False), dtype=bool)
    renumber = np.cumsum(~blank) - 1
    renumber[blank] = -1
    token_of_word = renumber.astype(np.int32)[np.asarray(merged.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    vocabulary = merged.dictionary.filter(pa.array(~blank)) if blank.any() else merged.dictionary
    return split, words, token_of_word, vocabulary


def _split_tokens(texts: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Texts (none missing) as tokens: the row of each token, its code, and the vocabulary the codes index."""
    split, words, token_of_word, vocabulary = _words(texts)
    codes = token_of_word[words.indices.to_numpy(zero_copy_only=False)]
    rows = np.asarray(pc.list_parent_indices(split).to_numpy(zero_copy_only=False), dtype=np.int32)
    del split, words
    kept = codes >= 0
    return (rows, codes, vocabulary) if kept.all() else (rows[kept], codes[kept], vocabulary)


def _count_tokens(texts: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """Texts (a missing one has no token): the number of tokens of each, and the tokens that occur with their
    counts."""
    split, words, token_of_word, vocabulary = _words(texts)
    word_counts = np.bincount(words.indices.to_numpy(zero_copy_only=False), minlength=len(token_of_word))
    kept = token_of_word >= 0
    counts = np.bincount(token_of_word[kept], weights=word_counts[kept], minlength=len(vocabulary)).astype(np.int64)
    if kept.all():
        per_text = np.asarray(
            pc.fill_null(pc.list_value_length(split), 0).to_numpy(zero_copy_only=False), dtype=np.int64
        )
    else:  # some words are only punctuation: count the others
        rows, _, _ = _split_tokens(texts)
        per_text = np.bincount(rows, minlength=len(texts))
    used = counts > 0
    return per_text, vocabulary if used.all() else vocabulary.filter(pa.array(used)), counts[used]


def _split_whitespace(texts: pa.Array) -> pa.Array:
    """``utf8_split_whitespace``; twice as fast by its ASCII twin on ASCII text, where the two agree except on
    the separators U+001C..U+001F, which only the UTF-8 one splits at."""
    data = texts.buffers()[2]
    raw = data.to_pybytes() if data is not None else b""
    if raw.isascii() and not any(bytes([separator]) in raw for separator in range(0x1C, 0x20)):
        return pc.ascii_split_whitespace(texts)
    return pc.utf8_split_whitespace(texts)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy's hash-based unique is many times slower on large integer arrays)."""
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.concatenate([[True], values[1:] != values[:-1]])]
    return values


def _arrow_text(column: pd.Series) -> pa.Array:
    """An object column of the typed contract (str or None) as an arrow string array, nulls where missing."""
    values = column.to_numpy(dtype=object)
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all str: count each value by its text, as before
        return pa.array([None if v is None or v is pd.NA or v != v else str(v) for v in values], type=pa.string())


# --- per-attribute accumulators ---


class _AttributeStats:
    """Rows seen, missing and invalid cells; subclasses add what their type calls for."""

    def __init__(self, kind: AttributeType) -> None:
        self.kind = kind
        self.count = 0
        self.missing = 0
        self.invalid = 0

    def update(self, column: Any, invalid: np.ndarray | None) -> np.ndarray | None:
        """Take a chunk's column (float64 numpy for numeric-like types, else an arrow array) and its invalid
        mask (None: no invalid value); return the cleaned float values for numeric-like types."""
        self.count += len(column)
        if invalid is not None:
            self.invalid += int(np.count_nonzero(invalid))
        return None

    def merge(self, other: Self) -> None:
        """Fold in the statistics of the same attribute over other rows."""
        if type(other) is not type(self) or other.kind is not self.kind:
            raise ValueError(f"cannot merge {other.kind.value} statistics into {self.kind.value} ones")
        self.count += other.count
        self.missing += other.missing
        self.invalid += other.invalid

    def _count_missing(self, missing: np.ndarray, invalid: np.ndarray | None) -> None:
        """Missing cells are the empty ones that were not invalid (the typed value of both is NaN or null)."""
        if invalid is None:
            self.missing += int(np.count_nonzero(missing))
        else:
            self.missing += int(np.count_nonzero(missing & ~invalid))

    def summary(self, sample: np.ndarray | None, approximate: bool, top_k: int) -> dict[str, Any]:
        return {"type": self.kind.value, "count": self.count, "missing": self.missing, "invalid": self.invalid}


class _TextLikeStats(_AttributeStats):
    def update(self, column: pa.Array, invalid: np.ndarray | None) -> None:
        super().update(column, invalid)
        if invalid is None or not invalid.any():
            self.missing += column.null_count
        elif column.null_count:
            self._count_missing(column.is_null().to_numpy(zero_copy_only=False), invalid)
        return None


class _NumericStats(_AttributeStats):
    def __init__(self, histogram_bins: int) -> None:
        super().__init__(AttributeType.NUMERIC)
        self.histogram_bins = histogram_bins
        self.moments = _Moments()
        self.min = np.inf
        self.max = -np.inf

    def update(self, column: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
        values = column
        infinite = np.isinf(values)
        if infinite.any():
            values = np.where(infinite, np.nan, values)
            invalid = infinite if invalid is None else invalid | infinite
        super().update(values, invalid)
        missing = np.isnan(values)
        self._count_missing(missing, invalid)
        present = values[~missing]
        if len(present):
            self.moments.add(present)
            self.min = min(self.min, float(present.min()))
            self.max = max(self.max, float(present.max()))
        return values

    def merge(self, other: Self) -> None:
        """Fold in the counts, moments and range of other rows."""
        if other.histogram_bins != self.histogram_bins:  # checked first, so a refused merge changes nothing
            raise ValueError(f"cannot merge {other.histogram_bins} histogram bins into {self.histogram_bins}")
        super().merge(other)
        self.moments.merge(other.moments)
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def numbers(self) -> dict[str, Any]:
        present = self.moments.n > 0
        return {
            "min": self.min if present else None,
            "max": self.max if present else None,
            "mean": _float(self.moments.value()) if present else None,
            "std": self.moments.std(),
        }

    def summary(self, sample: np.ndarray | None, approximate: bool, top_k: int) -> dict[str, Any]:
        values = sample if sample is not None else np.empty(0)
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

    def update(self, column: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
        values = column
        zeros, ones, missing = values == 0.0, values == 1.0, np.isnan(values)
        other = ~(zeros | ones | missing)
        if other.any():
            values = np.where(other, np.nan, values)
            invalid = other if invalid is None else invalid | other
            missing = np.isnan(values)
        super().update(values, invalid)
        self._count_missing(missing, invalid)
        self.zeros += int(np.count_nonzero(zeros))
        self.ones += int(np.count_nonzero(ones))
        return values

    def merge(self, other: Self) -> None:
        """Fold in the counts of other rows."""
        super().merge(other)
        self.zeros += other.zeros
        self.ones += other.ones

    def summary(self, sample: np.ndarray | None, approximate: bool, top_k: int) -> dict[str, Any]:
        return {
            **super().summary(sample, approximate, top_k),
            "zeros": self.zeros,
            "ones": self.ones,
            "true_fraction": _ratio(self.ones, self.zeros + self.ones),
        }


class _CategoricalStats(_TextLikeStats):
    def __init__(self, distinct_cap: int) -> None:
        super().__init__(AttributeType.CATEGORICAL)
        self.counter = _FrequencyCounter(distinct_cap)

    def update(self, column: pa.Array, invalid: np.ndarray | None) -> None:
        super().update(column, invalid)
        encoded = column if isinstance(column, pa.DictionaryArray) else pc.dictionary_encode(column)
        codes = encoded.indices.drop_null().to_numpy(zero_copy_only=False)
        counts = np.bincount(codes, minlength=len(encoded.dictionary))
        seen = counts > 0
        levels = encoded.dictionary if seen.all() else encoded.dictionary.filter(pa.array(seen))
        self.counter.add(levels, counts[seen])

    def merge(self, other: Self) -> None:
        """Fold in the counts and value counts of other rows."""
        super().merge(other)
        self.counter.merge(other.counter)

    def summary(self, sample: np.ndarray | None, approximate: bool, top_k: int) -> dict[str, Any]:
        return {**super().summary(sample, approximate, top_k), **self.counter.summary(top_k)}


class _TextStats(_TextLikeStats):
    def __init__(self, distinct_cap: int) -> None:
        super().__init__(AttributeType.TEXT)
        self.tokens = _FrequencyCounter(distinct_cap)
        self.values = 0
        self.length_sum = 0
        self.length_min: int | None = None
        self.length_max: int | None = None
        self.token_sum = 0
        self.token_max = 0

    def update(self, column: pa.Array, invalid: np.ndarray | None) -> None:
        super().update(column, invalid)
        texts = _strings(column)
        if texts.null_count == len(texts):
            return
        token_counts, vocabulary, counts = _count_tokens(texts)
        lengths = pc.utf8_length(texts)
        if texts.null_count:  # missing texts are left out, without copying the others
            present = texts.is_valid().to_numpy(zero_copy_only=False)
            token_counts, lengths = token_counts[present], pc.drop_null(lengths)
        lengths = lengths.to_numpy(zero_copy_only=False)
        self.values += len(texts) - texts.null_count
        self.length_sum += int(lengths.sum())
        low, high = int(lengths.min()), int(lengths.max())
        self.length_min = low if self.length_min is None else min(self.length_min, low)
        self.length_max = high if self.length_max is None else max(self.length_max, high)
        self.token_sum += int(token_counts.sum())
        self.token_max = max(self.token_max, int(token_counts.max()))
        self.tokens.add(vocabulary, counts)

    def merge(self, other: Self) -> None:
        """Fold in the lengths and token counts of other rows."""
        super().merge(other)
        self.values += other.values
        self.length_sum += other.length_sum
        self.length_min = _least(self.length_min, other.length_min)
        self.length_max = _greatest(self.length_max, other.length_max)
        self.token_sum += other.token_sum
        self.token_max = max(self.token_max, other.token_max)
        self.tokens.merge(other.tokens)

    def summary(self, sample: np.ndarray | None, approximate: bool, top_k: int) -> dict[str, Any]:
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


def _least(a: int | None, b: int | None) -> int | None:
    """The smaller of two optional ints (None: nothing seen)."""
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: int | None, b: int | None) -> int | None:
    """The larger of two optional ints (None: nothing seen)."""
    return b if a is None else a if b is None else max(a, b)


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
        # Only the filled slots are ever read, so the pages of a sample never filled are never touched.
        self._numbers = {name: np.empty(size) for name, kind in kinds.items() if kind in _NUMERIC_LIKE}
        self._texts = _TextSlots([name for name, kind in kinds.items() if kind not in _NUMERIC_LIKE], size)
        self._names = list(kinds)

    def offer(self, columns: dict[str, pa.Array | np.ndarray], rows: int) -> None:
        fill = min(rows, self.size - self.filled)
        if fill:
            self._store(columns, np.arange(self.filled, self.filled + fill), np.arange(fill))
            self.filled += fill
        if fill < rows:
            self._store(columns, *self._replacements(fill, rows))
        self.seen += rows

    def merge(self, other: _RowReservoir) -> None:
        """Fold in the sample of the rows that follow: all of them while every row fits, else a uniform sample."""
        if other.size != self.size or other._names != self._names:
            raise ValueError("cannot merge reservoirs of other sizes or attributes")
        seen = self.seen + other.seen
        if seen <= self.size:  # each holds every row it saw, in stream order: keep them all, as one pass would
            kept, taken = np.arange(self.filled), np.arange(other.filled)
        else:
            # In a uniform sample of the union, how many rows come from this side is hypergeometric; a uniform
            # subset of each side's uniform sample is then a uniform sample of that side. (The two samples must be
            # independent: partitions' accumulators need seeds of their own, or they draw the same replacements.)
            mine = _hypergeometric(self._rng, self.seen, other.seen, self.size)
            kept = _subset(self._rng, self.filled, mine)
            taken = _subset(self._rng, other.filled, self.size - mine)
        filled = len(kept) + len(taken)
        for name, values in self._numbers.items():
            values[:filled] = np.concatenate([values[kept], other._numbers[name][taken]])
        self._texts.merge(other._texts, kept, taken)
        self.seen, self.filled = seen, filled

    def __getstate__(self) -> dict[str, Any]:
        """The state without the slots never filled: reservoirs are shipped between processes."""
        state = self.__dict__.copy()
        state["_numbers"] = {name: values[: self.filled] for name, values in self._numbers.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the state, with room for every slot again."""
        self.__dict__.update(state)
        self._numbers = {name: _padded(values, self.size) for name, values in state["_numbers"].items()}

    def _replacements(self, start: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i of the stream (1-based) replaces slot j, j uniform in [0, i), when j < size; last one wins."""
        position = np.arange(self.seen + start + 1, self.seen + rows + 1, dtype=np.int64)
        slots = self._rng.integers(0, position)
        hit = np.flatnonzero(slots < self.size)
        slots, chunk_rows = slots[hit][::-1], (hit + start)[::-1]
        slots, last = np.unique(slots, return_index=True)
        return slots, chunk_rows[last]

    def _store(self, columns: dict[str, pa.Array | np.ndarray], slots: np.ndarray, chunk_rows: np.ndarray) -> None:
        if len(slots) == 0:
            return
        for name, target in self._numbers.items():
            target[slots] = columns[name][chunk_rows]
        self._texts.store(columns, slots, chunk_rows)

    def column(self, name: str) -> np.ndarray:
        """One column of the sample: float64 for numeric-like attributes, else str objects (None if missing)."""
        if name in self._numbers:
            return self._numbers[name][: self.filled]
        return objects(self._texts.arrow(name, self.filled))

    def values(self, name: str) -> np.ndarray | pa.Array:
        """One column of the sample without Python objects: float64, or an arrow (dictionary) string array."""
        if name in self._numbers:
            return self._numbers[name][: self.filled]
        return self._texts.arrow(name, self.filled)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                name: pd.Series(self.column(name), dtype="float64" if name in self._numbers else object)
                for name in self._names
            }
        )


_HYPERGEOMETRIC_LIMIT = 10**9  # numpy's hypergeometric takes fewer good and bad items than this


def _hypergeometric(rng: np.random.Generator, good: int, bad: int, draws: int) -> int:
    """How many of `draws` items taken uniformly without replacement from `good` + `bad` ones are good."""
    if good < _HYPERGEOMETRIC_LIMIT and bad < _HYPERGEOMETRIC_LIMIT:
        return int(rng.hypergeometric(good, bad, draws))
    # Past numpy's limit, draw the positions themselves: the same distribution, in O(draws).
    return int(np.count_nonzero(rng.choice(good + bad, draws, replace=False, shuffle=False) < good))


def _subset(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k of the positions 0..n-1, uniformly without replacement, ascending; all of them without a draw if k == n."""
    if k == n:
        return np.arange(n)
    return np.sort(rng.choice(n, k, replace=False, shuffle=False))


def _padded(values: np.ndarray, size: int) -> np.ndarray:
    """`values` at the start of a new array of `size` elements (the others uninitialised, as never read)."""
    out = np.empty(size, dtype=values.dtype)
    out[: len(values)] = values
    return out


class _TextSlots:
    """The text columns of the reservoir, kept in arrow: the pieces of chunks that entered it, and for each
    slot the piece and row that hold its values (the same for every column, since whole rows are sampled).
    Values become Python objects only when the sample is read, so the many rows that are replaced later
    never do. A column of few levels keeps its pieces dictionary-encoded (4 bytes a row). Once the pieces
    hold half as many rows again as there are slots, they are compacted into one."""

    def __init__(self, names: list[str], size: int) -> None:
        self._pieces: dict[str, list[pa.Array]] = {name: [] for name in names}
        self._held = 0
        self._size = size
        self._piece = np.zeros(size, dtype=np.int32)
        self._row = np.zeros(size, dtype=np.int32)
        self._used = 0  # slots 0.._used-1 hold a row (the reservoir fills them in order)

    def store(self, columns: dict[str, pa.Array | np.ndarray], slots: np.ndarray, chunk_rows: np.ndarray) -> None:
        if not self._pieces:
            return
        rows = pa.array(chunk_rows, type=pa.int64())
        for name, pieces in self._pieces.items():
            column = columns[name]
            if isinstance(column, pa.DictionaryArray) and 2 * len(column.dictionary) > len(column):
                column = column.dictionary_decode()  # nearly a level a row: keep only the rows taken
            pieces.append(column.take(rows))
        self._piece[slots] = len(next(iter(self._pieces.values()))) - 1
        self._row[slots] = np.arange(len(slots))
        self._held += len(slots)
        self._used = max(self._used, int(slots.max()) + 1)
        if self._held > self._size * 3 // 2:
            self._compact()

    def merge(self, other: _TextSlots, kept: np.ndarray, taken: np.ndarray) -> None:
        """Hold this one's slots `kept`, then `other`'s slots `taken`, as slots 0, 1, ... of this one."""
        count = len(kept) + len(taken)
        if self._pieces:
            offset = len(next(iter(self._pieces.values())))
            for name, pieces in self._pieces.items():
                pieces.extend(other._pieces[name])  # shared, not copied: arrow arrays are immutable
            self._piece[:count] = np.concatenate([self._piece[kept], other._piece[taken] + offset])
            self._row[:count] = np.concatenate([self._row[kept], other._row[taken]])
            self._held += other._held
        self._used = count
        if self._held > self._size * 3 // 2:
            self._compact()

    def __getstate__(self) -> dict[str, Any]:
        """The state without the slots never used: reservoirs are shipped between processes."""
        state = self.__dict__.copy()
        state["_piece"], state["_row"] = self._piece[: self._used], self._row[: self._used]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the state, with room for every slot again."""
        self.__dict__.update(state)
        self._piece, self._row = _padded(state["_piece"], self._size), _padded(state["_row"], self._size)

    def _compact(self) -> None:
        pieces = next(iter(self._pieces.values()), [])
        if len(pieces) <= 1:
            return
        starts = np.cumsum([0] + [len(piece) for piece in pieces[:-1]])
        used = slice(0, self._used)
        index = pa.array(starts[self._piece[used]] + self._row[used])
        for name, parts in self._pieces.items():
            if all(isinstance(part, pa.DictionaryArray) for part in parts):
                whole = pa.chunked_array(parts).unify_dictionaries().combine_chunks()
            else:
                whole = pa.concat_arrays([_decoded(part) for part in parts])
            self._pieces[name] = [whole.take(index)]
        self._held = self._used
        self._piece[used], self._row[used] = 0, np.arange(self._used)

    def arrow(self, name: str, count: int) -> pa.Array:
        """The values of the first ``count`` slots, null where missing."""
        self._compact()
        pieces = self._pieces[name]
        if count == 0 or not pieces:
            return pa.nulls(count, type=pa.large_string())
        rows = self._row[:count]
        if len(pieces[0]) == count and np.array_equal(rows, np.arange(count)):
            return pieces[0]  # compacted: already in slot order
        return pieces[0].take(pa.array(rows))


def _decoded(values: pa.Array) -> pa.Array:
    if isinstance(values, pa.DictionaryArray):
        values = values.dictionary_decode()
    return values if values.type == pa.large_string() else values.cast(pa.large_string())


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


def _level_codes(values: pa.Array, levels: int) -> np.ndarray:
    """The most frequent `levels` values, then one code for every other value, then one for missing. (Levels of a
    dictionary that no row holds may take codes too, but no row gets them, so the coding partitions the rows
    as one of only the values present would.)"""
    encoded = values if isinstance(values, pa.DictionaryArray) else pc.dictionary_encode(values)
    uniques = encoded.dictionary
    codes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    top = _top_indices(uniques, np.bincount(codes[codes >= 0], minlength=len(uniques)), levels)
    lookup = np.full(len(uniques) + 1, len(top), dtype=np.int64)
    lookup[top] = np.arange(len(top))
    lookup[-1] = len(top) + 1  # a missing value is coded -1
    return lookup[codes]


def _codes(kind: AttributeType, values: np.ndarray | pa.Array, levels: int) -> np.ndarray:
    if kind is AttributeType.NUMERIC:
        return _quantile_codes(values, MI_BINS)
    if kind is AttributeType.BINARY:
        return np.where(np.isnan(values), 2, values).astype(np.int64)
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
    joint = np.bincount(x.astype(np.int64) * width + y).astype("float64") / len(x)
    joint = np.pad(joint, (0, (-len(joint)) % width)).reshape(-1, width)
    px, py = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    expected = px * py  # an outer product by broadcasting, not by BLAS (see _CoMoments.add)
    return max(0.0, float((joint[nonzero] * np.log(joint[nonzero] / expected[nonzero])).sum()))


def _token_presence(texts: pa.Array, count: int) -> Iterator[tuple[str, np.ndarray]]:
    """For the `count` tokens found in most rows of `texts`: 1 for the rows that contain it, else 0 (one token
    at a time, so only one row mask is alive)."""
    present = np.flatnonzero(texts.is_valid().to_numpy(zero_copy_only=False))
    if len(present) == 0:
        return
    rows, codes, words = _split_tokens(_decoded(texts.take(pa.array(present, type=pa.int64()))))
    if len(words) == 0:
        return
    pairs = rows.astype(np.int64) * len(words) + codes  # (row, token): a row counts once per token it holds
    del rows, codes
    pairs.sort()
    if len(pairs) > 1:
        pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
    pair_codes = (pairs % len(words)).astype(np.int32)
    pairs //= len(words)
    pair_rows = present[pairs]
    del pairs
    documents = np.bincount(pair_codes, minlength=len(words))
    top = _top_indices(words, documents, count)
    for code, token in zip(top, _names(words, top), strict=True):
        contains = np.zeros(len(texts), dtype=np.int8)
        contains[pair_rows[pair_codes == code]] = 1
        yield token, contains


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
        self._settings = {
            "sample_size": sample_size,
            "top_k": top_k,
            "histogram_bins": histogram_bins,
            "distinct_cap": distinct_cap,
        }
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
        columns: dict[str, pa.Array | np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for name, kind in self.kinds.items():
            column = typed[name]
            if kind in _NUMERIC_LIKE:
                columns[name] = column.to_numpy(dtype="float64", na_value=np.nan)
            else:
                columns[name] = _arrow_text(column)
            if name in invalid.columns:
                masks[name] = invalid[name].to_numpy(dtype=bool)
        self.update_columns(columns, masks, len(typed))

    def update_columns(self, columns: dict[str, Any], invalid: dict[str, np.ndarray], rows: int) -> None:
        """Fold one chunk given column by column: float64 numpy for NUMERIC and BINARY (NaN where missing or
        invalid), arrow string or dictionary arrays for CATEGORICAL and TEXT (null where missing); the invalid
        masks of the columns that have one (an absent mask: no invalid value). The arrays are only read."""
        absent = [name for name in self.kinds if name not in columns]
        if absent:
            raise ValueError(f"chunk lacks attributes {absent}; its columns are {list(columns)}")
        cleaned: dict[str, pa.Array | np.ndarray] = {}
        for name, stats in self._stats.items():
            column = columns[name]
            values = stats.update(column, invalid.get(name))
            cleaned[name] = column if values is None else values
        if self._pearson:
            assert self.target is not None  # Pearson sums are kept only for a NUMERIC target
            y = cleaned[self.target]
            y_missing = np.isnan(y)
            for name, co in self._pearson.items():
                co.add(cleaned[name], y, y_missing)
        self._reservoir.offer(cleaned, rows)
        self.rows += rows

    def add_skipped_invalid(self, by_column: Mapping[str, int]) -> None:
        """Count invalid values of rows that were not folded in (a datasource skips the rows that hold one) in
        their attributes' ``invalid``; the other figures stay those of the rows folded in."""
        unknown = sorted(set(by_column) - set(self._stats))
        if unknown:
            raise ValueError(f"invalid values counted for columns that are not attributes: {unknown}")
        for name, count in by_column.items():
            self._stats[name].invalid += int(count)

    def merge(self, other: StatisticsAccumulator) -> None:
        """Fold in, in place, an accumulator of the same schema and settings over the rows that follow these."""
        if other is self:
            raise ValueError("an accumulator cannot be merged into itself")
        if other.schema != self.schema:
            raise ValueError("cannot merge the statistics of another schema")
        differ = {
            key: (value, other._settings[key]) for key, value in self._settings.items() if other._settings[key] != value
        }
        if differ:
            raise ValueError(f"cannot merge statistics of other settings (this one's, the other's): {differ}")
        for name, stats in self._stats.items():
            stats.merge(other._stats[name])
        for name, co in self._pearson.items():
            co.merge(other._pearson[name])
        self._reservoir.merge(other._reservoir)
        self.rows += other.rows

    def result(self) -> dict[str, Any]:
        reservoir = self._reservoir
        approximate = self.rows > reservoir.size
        attributes = {
            name: stats.summary(
                reservoir.values(name) if isinstance(stats, _NumericStats) else None, approximate, self.top_k
            )
            for name, stats in self._stats.items()
        }
        result: dict[str, Any] = {
            "row_count": self.rows,
            "sample_rows": reservoir.filled,
            "approximate": approximate,
            "attributes": attributes,
            "target": None,
        }
        if self.target is not None:
            associations = self._associations()
            for name, association in associations.items():
                attributes[name]["association"] = association
            result["target"] = self._target_section(attributes[self.target], associations)
        return result

    def _target_section(self, stats: dict[str, Any], associations: dict[str, dict[str, Any]]) -> dict[str, Any]:
        assert self.target is not None  # called only when the datasource has a target
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

    def _associations(self) -> dict[str, dict[str, Any]]:
        """Association of every other attribute with the target, on sampled rows whose target is present."""
        assert self.target is not None  # called only when the datasource has a target
        target_kind = self.kinds[self.target]
        target = self._reservoir.values(self.target)
        if isinstance(target, np.ndarray):
            labelled = np.flatnonzero(~np.isnan(target))
        else:
            labelled = np.flatnonzero(target.is_valid().to_numpy(zero_copy_only=False))
        y = _codes(target_kind, _rows(target, labelled), MAX_TARGET_CLASSES)
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
            values = _rows(self._reservoir.values(name), labelled)
            if kind is AttributeType.TEXT:
                association.update(self._text_information(values, y, target_entropy))
            else:
                mi = _mutual_information(_codes(kind, values, self.top_k), y)
                association.update(_information(mi, target_entropy))
            associations[name] = association
        return associations

    def _text_information(self, texts: pa.Array, y: np.ndarray, target_entropy: float) -> dict[str, Any]:
        """A text's information about the target: that of its most informative frequent token's presence."""
        scores: list[dict[str, Any]] = [
            {"token": token, **_information(_mutual_information(rows, y), target_entropy)}
            for token, rows in _token_presence(texts, self.top_k)
        ]
        scores.sort(key=lambda s: (-s["mutual_information"], s["token"]))
        best = scores[0]["mutual_information"] if scores else 0.0
        return {**_information(best, target_entropy), "tokens": scores[:TEXT_ASSOCIATION_TOKENS]}


def _rows(values: np.ndarray | pa.Array, rows: np.ndarray) -> np.ndarray | pa.Array:
    if len(rows) == len(values):  # every row (the rows are ascending)
        return values
    if isinstance(values, np.ndarray):
        return values[rows]
    return values.take(pa.array(rows, type=pa.int64()))


def _information(mi: float, target_entropy: float) -> dict[str, float | None]:
    """Mutual information in nats, and as the fraction of the target's entropy it explains (0 to 1)."""
    normalized = min(1.0, mi / target_entropy) if target_entropy > 0 else None
    return {"mutual_information": _float(mi), "mutual_information_normalized": _float(normalized)}
