"""Tree ensembles scored over many rows at once with leaf bitvectors (QuickScorer's idea), in numpy.

Walking a tree row by row costs a mispredicted branch at almost every node (scikit-learn's own predictor: about
13 µs a row on one core for 300 trees of 31 leaves). Here each tree's leaves are numbered left to right and a row
keeps one bit per leaf. A node the row leaves to the right rules out every leaf of its left subtree; the leaf the row
reaches is then the lowest bit still set, whatever order the nodes were tested in (Lucchese et al., "QuickScorer",
SIGIR 2015). Which nodes of a feature send a row right depends only on where its value falls among that feature's
thresholds, so the AND of their masks is a table lookup per (feature, interval), for every tree at once. Features
with few intervals (one-hot columns have two, plus missing) are grouped so that one lookup covers several of them.

The comparisons are the trees' own (``x <= threshold`` goes left, NaN goes where the node says), so each row reaches
the same leaf as in the trees.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.intp]
Masks = NDArray[np.unsignedinteger[Any]]  # uint32 or uint64

# A group's table has at most this many rows (one per combination of its features' intervals): 256 rows of 300
# trees is 300 KB, which stays in a core's cache; larger groups measured slower on churn.
GROUP_ROWS = 256
# Rows scored together: a block's masks and their scratch copy (2 × rows × trees × 4 or 8 bytes) must stay in one
# core's L2 (1 MB here) while the other core does the same. On churn's 300 trees, two scoring threads measured 1.2–1.7
# µs a row with blocks of 256–320 rows against 2.5–3.8 with blocks of 1,024 (whose 2.4 MB spilled to the shared L3).
BLOCK_BYTES = 384 * 2**10
FEW_THRESHOLDS = 4  # a group whose features have at most this many thresholds each is keyed in a few calls
MIN_BLOCK_ROWS = 128  # below this numpy's per-call cost takes over
MAX_TABLE_BYTES = 64 * 2**20  # beyond this an ensemble is left to the row-by-row walk


class Helpers(Protocol):
    """Where a thread's bitvectors are evaluated instead of in process (``mlsvc.prediction.helpers``)."""

    def raw(self, bitvectors: Bitvectors, X: Floats, baseline: Floats) -> Floats: ...


_THREAD = threading.local()
HELPED_ROWS = 1024  # fewer rows than this are evaluated in process: a round trip to a helper costs tens of µs


def evaluate_in(helpers: Helpers | None) -> None:
    """Evaluate this thread's bitvectors in ``helpers`` from now on (None: in process again)."""
    _THREAD.helpers = helpers


@dataclass(frozen=True)
class _Group:
    """Features whose intervals index one table together: key = ((k0 · K1) + k1) · K2 + k2 …"""

    features: Ints
    thresholds: tuple[Floats, ...]  # per feature, its distinct split thresholds in ascending order
    table: Masks  # (∏ K, n_trees): per combination of intervals, the leaves still possible in each tree

    def keys(self, X: Floats) -> Ints:
        if self.cuts is not None:
            return self._keys_by_cut(X, *self.cuts)
        key: Ints = np.zeros(X.shape[0], dtype=np.intp)
        for feature, thresholds in zip(self.features, self.thresholds, strict=True):
            column = X[:, feature]
            interval = np.searchsorted(thresholds, column)  # how many thresholds lie below the value
            interval[np.isnan(column)] = len(thresholds) + 1
            key = key * (len(thresholds) + 2) + interval
        return key

    @cached_property
    def cuts(self) -> tuple[Floats, Ints, Ints] | None:
        """For a group of features of few thresholds each (one-hot columns, flags): their thresholds as one matrix
        (padded with +inf), each feature's stride in the key and its interval for a missing value; the group's keys
        are then a few calls for all of its features, not four a feature."""
        sizes = np.array([len(t) for t in self.thresholds], dtype=np.intp)
        if len(sizes) < 2 or sizes.max() > FEW_THRESHOLDS:
            return None
        padded = np.full((len(sizes), int(sizes.max())), np.inf)
        for row, thresholds in enumerate(self.thresholds):
            padded[row, : len(thresholds)] = thresholds
        strides = np.ones(len(sizes), dtype=np.intp)
        strides[:-1] = np.cumprod((sizes + 2)[::-1])[::-1][1:]
        return padded, strides, sizes + 1

    def _keys_by_cut(self, X: Floats, padded: Floats, strides: Ints, missing: Ints) -> Ints:
        values = X[:, self.features]
        # searchsorted's interval: how many thresholds lie below the value (the +inf padding never does).
        if padded.shape[1] == 1:
            intervals = (values > padded[:, 0]).astype(np.intp)
        else:
            intervals = (values[:, :, None] > padded[None, :, :]).sum(axis=2, dtype=np.intp)
        intervals = np.where(np.isnan(values), missing, intervals)
        keys: Ints = intervals @ strides
        return keys


@dataclass(frozen=True)
class Bitvectors:
    """An ensemble's trees as tables of leaf masks per combination of feature intervals."""

    groups: tuple[_Group, ...]
    values: Floats  # (n_trees · width,): tree t's leaves, left to right, from t · width
    width: int  # bits per tree: 32 or 64
    offsets: Ints  # per tree, t · width less the float exponent's bias

    def raw(self, X: Floats, baseline: Floats) -> Floats:
        """(n_rows, n_outputs): ``baseline`` (1, n_outputs) plus the leaf value each row reaches in each tree (trees
        of the same iteration are consecutive, one per output). Summed pairwise, not one tree after another as
        scikit-learn adds them: the same to within a few units in the last place, at a fraction of the cost. In a
        thread given helper processes (``evaluate_in``), evaluated by its helper."""
        helpers = getattr(_THREAD, "helpers", None)
        if helpers is not None and X.shape[0] >= HELPED_ROWS:
            return helpers.raw(self, X, baseline)
        return self.raw_here(X, baseline)

    def raw_here(self, X: Floats, baseline: Floats) -> Floats:
        """``raw``, in this thread."""
        X = np.asfortranarray(X, dtype=np.float64)
        keys = [g.keys(X) for g in self.groups]
        n_rows, n_outputs = X.shape[0], baseline.shape[1]
        out = np.empty((n_rows, n_outputs))
        step = min(self.block_rows, n_rows)
        work = _Workspace(step, len(self.offsets), self.width)
        for start in range(0, n_rows, step):
            block = slice(start, start + step)
            masks, scratch, floats, leaves, values = work.first(min(step, n_rows - start))
            # Keys are in range by construction; under the default mode="raise" numpy buffers ``out`` (a copy of
            # the block per lookup, three times the cost of the lookup itself).
            np.take(self.groups[0].table, keys[0][block], axis=0, out=masks, mode="clip")
            for group, key in zip(self.groups[1:], keys[1:], strict=True):
                np.take(group.table, key[block], axis=0, out=scratch, mode="clip")
                np.bitwise_and(masks, scratch, out=masks)
            self._leaves(masks, scratch, floats, leaves)
            np.take(self.values, leaves, out=values, mode="clip")
            np.add(values.reshape(len(masks), -1, n_outputs).sum(axis=1), baseline, out=out[block])
        return out

    @property
    def block_rows(self) -> int:
        """How many rows one block scores: as many as keep its masks within BLOCK_BYTES."""
        row_bytes = len(self.offsets) * self.width // 8
        return max(MIN_BLOCK_ROWS, BLOCK_BYTES // row_bytes)

    def _leaves(self, masks: Masks, scratch: Masks, floats: Floats, leaves: Ints) -> None:
        """Into ``leaves`` (n_rows, n_trees): the index into ``values`` of the leaf each row reaches, its mask's
        lowest set bit."""
        np.negative(masks, out=scratch)  # two's complement: -m & m keeps only the lowest set bit
        np.bitwise_and(masks, scratch, out=scratch)
        # A power of two converts to float exactly; its exponent field is the bit's index plus the bias.
        np.copyto(floats, scratch, casting="unsafe")
        bits = floats.view(np.int32 if self.width == 32 else np.int64)
        np.right_shift(bits, 23 if self.width == 32 else 52, out=bits)
        # As intp: numpy's take is several times slower with int32 indexes.
        np.add(bits, self.offsets, out=leaves)


class _Workspace:
    """One block's arrays, made once a call and reused block after block: fresh arrays of this size each block
    (hundreds of KB, so mapped and unmapped by malloc every time) cost a third of the evaluator's time when two
    scoring threads run, and the reused ones stay in the core's cache."""

    def __init__(self, rows: int, trees: int, width: int) -> None:
        unsigned, floating = (np.uint32, np.float32) if width == 32 else (np.uint64, np.float64)
        self.arrays = (
            np.empty((rows, trees), dtype=unsigned),  # the masks
            np.empty((rows, trees), dtype=unsigned),  # scratch
            np.empty((rows, trees), dtype=floating),  # lowest bits as floats
            np.empty((rows, trees), dtype=np.intp),  # leaf indexes
            np.empty((rows, trees), dtype=np.float64),  # leaf values
        )

    def first(self, rows: int) -> tuple[Any, ...]:
        """The arrays' first ``rows`` rows (the last block of a call may be short)."""
        return tuple(a[:rows] for a in self.arrays)


def compile_bitvectors(trees: Sequence[Mapping[str, np.ndarray]]) -> Bitvectors | None:
    """Trees given as node arrays (feature, threshold, left, right, missing_left, leaf, value; child indexes local to
    each tree, node 0 the root) as bitvector tables, or None where they do not fit: a tree of more than 64 leaves,
    tables over MAX_TABLE_BYTES, or no split at all."""
    orders = [_leaf_order(t) for t in trees]
    most = max((len(leaves) for leaves, _ in orders), default=0)
    if most == 0 or most > 64:
        return None
    width = 32 if most <= 32 else 64
    dtype = np.uint32 if width == 32 else np.uint64
    thresholds = _thresholds(trees)
    if not thresholds:  # every tree a single leaf: nothing to look up
        return None
    tables = {f: np.full((len(t) + 2, len(trees)), np.iinfo(dtype).max, dtype=dtype) for f, t in thresholds.items()}
    values = np.zeros((len(trees), width))
    for index, (tree, (leaves, left_ranges)) in enumerate(zip(trees, orders, strict=True)):
        values[index, : len(leaves)] = tree["value"][leaves]
        for node, (first, end) in left_ranges.items():
            feature = int(tree["feature"][node])
            own = thresholds[feature]
            rank = int(np.searchsorted(own, tree["threshold"][node]))
            ruled_out = dtype(np.iinfo(dtype).max) ^ dtype(((1 << (end - first)) - 1) << first)
            tables[feature][rank + 1 : len(own) + 1, index] &= ruled_out  # above the threshold: right
            if not tree["missing_left"][node]:
                tables[feature][len(own) + 1, index] &= ruled_out
    groups = _group(thresholds, tables)
    if sum(g.table.nbytes for g in groups) > MAX_TABLE_BYTES:
        return None
    offsets = np.arange(len(trees), dtype=np.intp) * width - (127 if width == 32 else 1023)
    return Bitvectors(tuple(groups), values.reshape(-1), width, offsets)


def _leaf_order(tree: Mapping[str, np.ndarray]) -> tuple[Ints, dict[int, tuple[int, int]]]:
    """The tree's leaves left to right, and for each split node the range of leaf numbers of its left subtree."""
    leaves: list[int] = []
    left_ranges: dict[int, tuple[int, int]] = {}
    starts: dict[int, int] = {}
    stack: list[tuple[int, bool]] = [(0, False)]  # (node, its left subtree done): trees can outgrow recursion
    while stack:
        node, left_done = stack.pop()
        if tree["leaf"][node]:
            leaves.append(node)
        elif not left_done:
            starts[node] = len(leaves)
            stack.extend([(node, True), (int(tree["left"][node]), False)])
        else:
            left_ranges[node] = (starts[node], len(leaves))
            stack.append((int(tree["right"][node]), False))
    return np.asarray(leaves, dtype=np.intp), left_ranges


def _thresholds(trees: Sequence[Mapping[str, np.ndarray]]) -> dict[int, Floats]:
    """Per feature that any tree splits on, its distinct thresholds in ascending order."""
    found: dict[int, list[Floats]] = {}
    for tree in trees:
        split = ~tree["leaf"].astype(bool)
        for feature in np.unique(tree["feature"][split]):
            found.setdefault(int(feature), []).append(tree["threshold"][split & (tree["feature"] == feature)])
    return {f: np.unique(np.concatenate(parts)).astype(np.float64) for f, parts in sorted(found.items())}


def _group(thresholds: Mapping[int, Floats], tables: Mapping[int, Masks]) -> list[_Group]:
    """Features in order of how few intervals they have, packed into groups of at most GROUP_ROWS combinations."""
    groups: list[list[int]] = [[]]
    rows = 1
    for feature in sorted(thresholds, key=lambda f: (len(thresholds[f]), f)):
        intervals = len(thresholds[feature]) + 2
        if groups[-1] and rows * intervals > GROUP_ROWS:
            groups.append([])
            rows = 1
        groups[-1].append(feature)
        rows *= intervals
    return [_combine(members, thresholds, tables) for members in groups]


def _combine(members: list[int], thresholds: Mapping[int, Floats], tables: Mapping[int, Masks]) -> _Group:
    """One table for several features: row ((k0 · K1) + k1) … is the AND of their tables' rows k0, k1, …"""
    table: Masks = tables[members[0]]
    for feature in members[1:]:
        table = np.bitwise_and(table[:, None, :], tables[feature][None, :, :]).reshape(-1, table.shape[1])
    own = tuple(thresholds[f] for f in members)
    return _Group(np.asarray(members, dtype=np.intp), own, np.ascontiguousarray(table))
