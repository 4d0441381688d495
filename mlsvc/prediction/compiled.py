"""Compiled scoring: a fitted pipeline turned into plain numpy operations over a pre-allocated row.

``compile_pipeline`` reads a fitted pipeline of ``mlsvc.training.loop.make_pipeline`` (or a soft-voting ensemble of
them) once and keeps only constants: imputation values, scaling constants, category → column maps, bin edges, target
encodings, linear coefficients, tree node arrays, network weights. ``CompiledModel.predict`` then scores typed columns
(float64 arrays for NUMERIC and BINARY, object arrays of ``str | None`` for CATEGORICAL and TEXT) with no pandas and
no per-call validation, and returns what ``predict_output(pipeline, ...)`` returns on the same rows.

Anything not implemented here exactly raises ``NotCompilable`` at compile time, so the caller falls back to the
pipeline instead of serving a silently different answer.

The feature matrix is allocated per call: measured here, ``np.zeros((1, 120))`` costs about 110 ns against about
170 ns for fetching and zeroing a per-thread buffer, and a fresh array is thread-safe by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, Protocol, cast

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from scipy import sparse
from scipy.special import expit
from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss, HalfSquaredError
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.neural_network._base import ACTIVATIONS
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, KBinsDiscretizer, OneHotEncoder, StandardScaler, TargetEncoder
from sklearn.utils.extmath import softmax
from threadpoolctl import ThreadpoolController

from mlsvc.datasources.values import objects
from mlsvc.prediction.bitvectors import Bitvectors, compile_bitvectors
from mlsvc.resources import ModelType
from mlsvc.training.recipe import CappedSVD, CrossFeatures, categorical_as_text, cross_name, fill_text
from mlsvc.training.targets import expm1_target, is_on_log_scale

# NUMERIC and BINARY columns are float64 arrays; CATEGORICAL and TEXT ones object arrays, or arrow arrays as a
# scan reads them (a batch job's columns: dictionary-encoded categories are then looked up once per level).
Columns = Mapping[str, Any]
Floats = NDArray[np.float64]
Ints = NDArray[np.intp]

MISSING_LEVEL = "__missing__"  # what categorical_as_text makes of a missing category
CROSS_MISSING = "NA"  # what CrossFeatures makes of a missing value


class NotCompilable(Exception):
    """The pipeline holds a step, an estimator or a parameter combination the compiled path does not implement."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- typed columns to matrices ---


def _numbers(columns: Columns, names: list[str], n_rows: int) -> Floats:
    """The named float columns side by side, as one (n_rows, len(names)) float64 matrix."""
    out = np.empty((n_rows, len(names)))
    for j, name in enumerate(names):
        out[:, j] = columns[name]
    return out


def _category(value: Any) -> Any:
    """A category as categorical_as_text leaves it: missing (None or NaN) is a level of its own."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_LEVEL
    return value


def _str_categories(categories: np.ndarray, where: str) -> list[str]:
    values = list(categories)
    if not all(isinstance(v, str) for v in values):
        raise NotCompilable(f"{where}: categories that are not all strings")
    return values


# --- crosses ---


@dataclass(frozen=True)
class _Cross:
    """CrossFeatures for one pair: each side as a level ("NA" when missing, a quantile bin for numbers cut at
    fit), joined by "×"."""

    a: str
    b: str
    edges: tuple[Floats | None, Floats | None]

    @property
    def name(self) -> str:
        return cross_name(self.a, self.b)

    def values(self, columns: Columns) -> np.ndarray:
        left = _levels(columns[self.a], self.edges[0])
        right = _levels(columns[self.b], self.edges[1])
        return np.array([f"{x}×{y}" for x, y in zip(left, right, strict=True)], dtype=object)


def _levels(values: Any, edges: Floats | None) -> list[str]:
    values = as_objects(values)
    if edges is not None:
        numbers = np.asarray(values, dtype=np.float64)
        bins = np.searchsorted(edges, numbers, side="right").tolist()
        return [CROSS_MISSING if x != x else str(b) for x, b in zip(numbers.tolist(), bins, strict=True)]
    if values.dtype.kind == "f":
        return [CROSS_MISSING if x != x else str(x) for x in values.tolist()]
    return [CROSS_MISSING if x is None or (isinstance(x, float) and x != x) else str(x) for x in values]


def _compile_crosses(step: CrossFeatures) -> list[_Cross]:
    edges = step.edges_
    return [_Cross(a, b, (edges.get(a), edges.get(b))) for a, b in step.pairs]


# --- column groups: each writes its block of the feature matrix, or its share of a linear model's decision ---


class _Block(Protocol):
    @property
    def names(self) -> list[str]:
        """The typed (or crossed) columns it reads."""
        ...

    @property
    def width(self) -> int: ...

    @property
    def start(self) -> int:
        """Its first column in the feature matrix."""
        ...

    def write(self, columns: Columns, X: Floats) -> None: ...


class _Valued(_Block, Protocol):
    """A group whose columns are values: its block of the matrix, on its own."""

    def values(self, columns: Columns, n_rows: int) -> Floats: ...


def _write_hits(hits: list[Ints], X: Floats) -> None:
    rows = np.arange(X.shape[0])
    for index in hits:
        hit = index >= 0
        X[rows[hit], index[hit]] = 1.0


def _coefficients(block: _Block, coef: Floats) -> Floats:
    """The group's coefficients as ``_share`` reads them, (width, outputs) from ``coef`` (outputs, width): with a
    row of zeros after them for a one-hot group, for the rows that set none of its columns."""
    table = coef[:, block.start : block.start + block.width].T
    if isinstance(block, _OneHot | _Binned):
        return np.vstack([table, np.zeros((1, table.shape[1]))])
    return np.ascontiguousarray(table)


def _share(block: _Block, table: Floats, columns: Columns, n_rows: int) -> Floats:
    """The group's columns times their coefficients, (n_rows, outputs), without its block of the matrix: a
    one-hot group's as the coefficients of the columns it sets, looked up."""
    if not isinstance(block, _OneHot | _Binned):
        return cast(_Valued, block).values(columns, n_rows) @ table
    index = np.stack(block.hits(columns, n_rows))  # (columns read, n_rows)
    return table[np.where(index >= 0, index - block.start, block.width)].sum(axis=0)


@dataclass(frozen=True)
class _Imputation:
    """SimpleImputer: fill NaN with the fitted statistics, then append the missing indicators it kept."""

    fill: Floats
    indicator: Ints | None

    @property
    def width(self) -> int:
        return len(self.fill) + (0 if self.indicator is None else len(self.indicator))

    def apply(self, x: Floats) -> Floats:
        missing = np.isnan(x)
        filled = np.where(missing, self.fill, x)
        if self.indicator is None:
            return filled
        return np.hstack([filled, missing[:, self.indicator]])


def _compile_imputer(imputer: SimpleImputer, n_in: int) -> _Imputation:
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise NotCompilable(f"SimpleImputer with missing_values={imputer.missing_values!r}")
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if len(fill) != n_in:
        raise NotCompilable("SimpleImputer fitted on a different number of columns")
    if not imputer.keep_empty_features and np.isnan(fill).any():
        raise NotCompilable("SimpleImputer dropping columns that were empty at fit")
    indicator = None
    if imputer.add_indicator:
        indicator = np.asarray(imputer.indicator_.features_, dtype=np.intp)
    return _Imputation(fill, indicator)


@dataclass(frozen=True)
class _Imputed:
    """Imputation alone (the binary group)."""

    names: list[str]
    imputation: _Imputation
    start: int

    @property
    def width(self) -> int:
        return self.imputation.width

    def values(self, columns: Columns, n_rows: int) -> Floats:
        return self.imputation.apply(_numbers(columns, self.names, n_rows))

    def write(self, columns: Columns, X: Floats) -> None:
        X[:, self.start : self.start + self.width] = self.values(columns, X.shape[0])


@dataclass(frozen=True)
class _Indicated:
    """MissingIndicator: 1.0 where a column the indicator kept at fit is missing."""

    names: list[str]
    features: Ints
    start: int

    @property
    def width(self) -> int:
        return len(self.features)

    def values(self, columns: Columns, n_rows: int) -> Floats:
        return np.isnan(_numbers(columns, self.names, n_rows))[:, self.features].astype(np.float64)

    def write(self, columns: Columns, X: Floats) -> None:
        X[:, self.start : self.start + self.width] = self.values(columns, X.shape[0])


@dataclass(frozen=True)
class _Scaled:
    """Imputation then StandardScaler: (x - mean) / scale, the same two operations sklearn does in place."""

    names: list[str]
    imputation: _Imputation
    mean: Floats
    scale: Floats
    start: int

    @property
    def width(self) -> int:
        return self.imputation.width

    def values(self, columns: Columns, n_rows: int) -> Floats:
        x = self.imputation.apply(_numbers(columns, self.names, n_rows))
        x -= self.mean
        x /= self.scale
        return x

    def write(self, columns: Columns, X: Floats) -> None:
        X[:, self.start : self.start + self.width] = self.values(columns, X.shape[0])


@dataclass(frozen=True)
class _Binned:
    """Imputation then KBinsDiscretizer one-hot: bin j of input column i is output column offsets[i] + j."""

    names: list[str]
    imputation: _Imputation
    inner_edges: list[Floats]
    offsets: Ints
    start: int
    width: int

    def hits(self, columns: Columns, n_rows: int) -> list[Ints]:
        x = self.imputation.apply(_numbers(columns, self.names, n_rows))
        return [
            self.start + self.offsets[j] + np.searchsorted(edges, x[:, j], side="right")
            for j, edges in enumerate(self.inner_edges)
        ]

    def write(self, columns: Columns, X: Floats) -> None:
        _write_hits(self.hits(columns, X.shape[0]), X)


@dataclass(frozen=True)
class _OneHot:
    """categorical_as_text then OneHotEncoder: each known category → its column (infrequent ones share the
    infrequent column); an unknown category → the infrequent column if the feature has one, else no column."""

    names: list[str]
    lookups: list[dict[str, int]]  # absolute column in the feature matrix
    unknown: list[int]  # absolute column, or -1 for none
    start: int
    width: int

    def hits(self, columns: Columns, n_rows: int) -> list[Ints]:
        return [
            _codes(columns[name], lookup, unknown)
            for name, lookup, unknown in zip(self.names, self.lookups, self.unknown, strict=True)
        ]

    def write(self, columns: Columns, X: Floats) -> None:
        _write_hits(self.hits(columns, X.shape[0]), X)


@dataclass(frozen=True)
class _Target:
    """categorical_as_text then TargetEncoder.transform: each known category → its encoding (one value, or one
    per class for a multiclass target); an unknown category → the target mean (the last row of each table)."""

    names: list[str]
    lookups: list[dict[str, int]]  # category → row of its table
    tables: list[Floats]  # (n_categories + 1, values per feature)
    start: int
    width: int

    def values(self, columns: Columns, n_rows: int) -> Floats:
        parts = [
            table[_codes(columns[name], lookup, len(table) - 1)]
            for name, lookup, table in zip(self.names, self.lookups, self.tables, strict=True)
        ]
        return np.hstack(parts) if parts else np.zeros((n_rows, 0))

    def write(self, columns: Columns, X: Floats) -> None:
        X[:, self.start : self.start + self.width] = self.values(columns, X.shape[0])


def _codes(values: Any, lookup: dict[str, int], default: int) -> Ints:
    """Each category's code in ``lookup`` (``default`` for a category it does not hold)."""
    if isinstance(values, pa.DictionaryArray):  # each level looked up once, then spread to the rows
        levels = [*values.dictionary.to_pylist(), None]  # the last one: missing
        by_level = np.fromiter((lookup.get(_category(v), default) for v in levels), dtype=np.intp, count=len(levels))
        indices = values.indices.fill_null(len(levels) - 1) if values.null_count else values.indices
        return by_level[np.asarray(indices.to_numpy(zero_copy_only=False))]
    values = as_objects(values)
    return np.fromiter((lookup.get(_category(v), default) for v in values), dtype=np.intp, count=len(values))


def as_objects(values: Any) -> np.ndarray:
    """A CATEGORICAL or TEXT column as an object array of ``str``, None where missing."""
    return objects(values) if isinstance(values, pa.Array) else np.asarray(values)


@dataclass(frozen=True)
class _Text:
    """fill_text, the fitted TfidfVectorizer, and the SVD's projection when there is one (dense); without it the
    TF-IDF rows stay sparse and only a linear model may use them."""

    names: list[str]  # the one text column
    vectorizer: TfidfVectorizer
    components_t: Floats | None
    start: int
    width: int

    def tfidf(self, columns: Columns) -> sparse.csr_matrix:
        return self.vectorizer.transform(fill_text(as_objects(columns[self.names[0]])))

    def values(self, columns: Columns, n_rows: int) -> Floats:
        assert self.components_t is not None
        return np.asarray(self.tfidf(columns) @ self.components_t)

    def write(self, columns: Columns, X: Floats) -> None:
        X[:, self.start : self.start + self.width] = self.values(columns, X.shape[0])


def _steps(transformer: Any) -> list[Any]:
    return [s for _, s in transformer.steps] if type(transformer) is Pipeline else [transformer]


def _function_is(step: Any, func: Callable[..., Any]) -> bool:
    return (
        type(step) is FunctionTransformer
        and step.func is func
        and step.inverse_func is None
        and not step.kw_args
        and not step.validate
    )


def _compile_group(name: str, transformer: Any, names: list[str], start: int) -> _Block:
    """One ColumnTransformer group, by the exact sequence of its steps."""
    steps = _steps(transformer)
    kinds = tuple(type(s) for s in steps)
    if kinds == (SimpleImputer,):
        return _Imputed(names, _compile_imputer(steps[0], len(names)), start)
    if kinds == (MissingIndicator,):
        indicator = steps[0]
        if not (isinstance(indicator.missing_values, float) and np.isnan(indicator.missing_values)):
            raise NotCompilable(f"MissingIndicator with missing_values={indicator.missing_values!r}")
        if indicator.sparse is True:
            raise NotCompilable("a sparse MissingIndicator")
        return _Indicated(names, np.asarray(indicator.features_, dtype=np.intp), start)
    if kinds == (SimpleImputer, StandardScaler):
        imputation = _compile_imputer(steps[0], len(names))
        scaler = steps[1]
        if scaler.n_features_in_ != imputation.width:
            raise NotCompilable("StandardScaler fitted on a different number of columns")
        mean = scaler.mean_ if scaler.with_mean else np.zeros(imputation.width)
        scale = scaler.scale_ if scaler.with_std else np.ones(imputation.width)
        return _Scaled(names, imputation, np.asarray(mean, np.float64), np.asarray(scale, np.float64), start)
    if kinds == (SimpleImputer, KBinsDiscretizer):
        return _compile_bins(names, _compile_imputer(steps[0], len(names)), steps[1], start)
    if len(steps) == 2 and _function_is(steps[0], categorical_as_text):
        if kinds[1] is OneHotEncoder:
            return _compile_one_hot(names, steps[1], start)
        if kinds[1] is TargetEncoder:
            return _compile_target(names, steps[1], start)
    if len(steps) in (2, 3) and _function_is(steps[0], fill_text) and kinds[1] is TfidfVectorizer and len(names) == 1:
        return _compile_text(names, steps, start)
    raise NotCompilable(f"column group '{name}': steps {[k.__name__ for k in kinds]} are not compiled")


def _compile_bins(names: list[str], imputation: _Imputation, bins: KBinsDiscretizer, start: int) -> _Binned:
    if bins.encode not in ("onehot", "onehot-dense") or bins.dtype not in (None, np.float64):
        raise NotCompilable(f"KBinsDiscretizer with encode={bins.encode!r}, dtype={bins.dtype!r}")
    n_bins = np.asarray(bins.n_bins_, dtype=np.intp)
    if len(n_bins) != imputation.width:
        raise NotCompilable("KBinsDiscretizer fitted on a different number of columns")
    offsets = np.concatenate([[0], np.cumsum(n_bins)[:-1]]).astype(np.intp)
    inner = [np.asarray(e[1:-1], dtype=np.float64) for e in bins.bin_edges_]
    return _Binned(names, imputation, inner, offsets, start, int(n_bins.sum()))


def _compile_one_hot(names: list[str], encoder: OneHotEncoder, start: int) -> _OneHot:
    if encoder.drop is not None or encoder.handle_unknown not in ("ignore", "infrequent_if_exist", "warn"):
        raise NotCompilable(f"OneHotEncoder with drop={encoder.drop!r}, handle_unknown={encoder.handle_unknown!r}")
    if np.dtype(encoder.dtype) != np.float64:
        raise NotCompilable(f"OneHotEncoder with dtype={encoder.dtype!r}")
    infrequent_enabled = encoder._infrequent_enabled
    lookups, unknowns, offset = [], [], start
    for i, categories in enumerate(encoder.categories_):
        levels = _str_categories(categories, "OneHotEncoder")
        mapping = encoder._default_to_infrequent_mappings[i] if infrequent_enabled else None
        infrequent = encoder._infrequent_indices[i] if infrequent_enabled else None
        columns = range(len(levels)) if mapping is None else [int(m) for m in mapping]
        lookups.append({level: offset + c for level, c in zip(levels, columns, strict=True)})
        # sklearn maps an unknown value to the first infrequent category, which the mapping sends to the
        # infrequent column; with no infrequent category an unknown value sets no column.
        if infrequent is not None and mapping is not None and encoder.handle_unknown != "ignore":
            unknowns.append(offset + int(mapping[infrequent[0]]))
        else:
            unknowns.append(-1)
        offset += int(encoder._n_features_outs[i])
    return _OneHot(names, lookups, unknowns, start, offset - start)


def _compile_target(names: list[str], encoder: TargetEncoder, start: int) -> _Target:
    target_type = encoder.target_type_
    if target_type not in ("binary", "continuous", "multiclass"):
        raise NotCompilable(f"TargetEncoder with target type {target_type!r}")
    per = len(encoder.classes_) if target_type == "multiclass" else 1
    unknown = np.atleast_1d(np.asarray(encoder.target_mean_, dtype=np.float64))
    if len(unknown) != per:
        raise NotCompilable("TargetEncoder target mean does not match its classes")
    lookups, tables = [], []
    for i, categories in enumerate(encoder.categories_):
        levels = _str_categories(categories, "TargetEncoder")
        known = np.column_stack([np.asarray(encoder.encodings_[i * per + k], dtype=np.float64) for k in range(per)])
        lookups.append({level: j for j, level in enumerate(levels)})
        tables.append(np.vstack([known, unknown]))
    return _Target(names, lookups, tables, start, len(names) * per)


def _compile_text(names: list[str], steps: list[Any], start: int) -> _Text:
    vectorizer = steps[1]
    if len(steps) == 2:
        return _Text(names, vectorizer, None, start, len(vectorizer.vocabulary_))
    projection = steps[2]
    if type(projection) is CappedSVD:
        projection = projection.svd_
    if type(projection) is not TruncatedSVD:
        raise NotCompilable(f"text column '{names[0]}': {type(steps[2]).__name__} after TF-IDF is not compiled")
    components_t = np.asarray(projection.components_, dtype=np.float64).T
    return _Text(names, vectorizer, components_t, start, components_t.shape[1])


# --- the feature stage: crosses, then the column groups into one matrix ---


@dataclass(frozen=True)
class _Features:
    """Writes the ColumnTransformer's output for typed columns. Dense groups go into one float64 matrix in the
    transformer's column order; TF-IDF groups without a projection stay sparse, aside, with their column range
    in the transformer's output (``dense_index`` maps the matrix's columns back to that output)."""

    crosses: list[_Cross]
    blocks: list[_Block]
    sparse_blocks: list[tuple[slice, _Text]]
    width: int  # of the dense matrix
    n_outputs: int  # of the ColumnTransformer
    dense_index: Ints

    def transform(self, columns: Columns, n_rows: int) -> tuple[Floats, list[sparse.csr_matrix]]:
        columns = self.crossed(columns)
        X = np.zeros((n_rows, self.width))
        for block in self.blocks:
            block.write(columns, X)
        return X, [text.tfidf(columns) for _, text in self.sparse_blocks]

    def crossed(self, columns: Columns) -> Columns:
        """The typed columns with the crosses the groups read added."""
        if not self.crosses:
            return columns
        columns = dict(columns)
        for cross in self.crosses:
            columns[cross.name] = cross.values(columns)
        return columns


def _compile_features(step: Any) -> _Features:
    stages = _steps(step)
    crosses: list[_Cross] = []
    for stage in stages[:-1]:
        if type(stage) is not CrossFeatures:
            raise NotCompilable(f"preprocessing step {type(stage).__name__} is not compiled")
        crosses += _compile_crosses(stage)
    ct = stages[-1]
    if type(ct) is not ColumnTransformer:
        raise NotCompilable(f"preprocessing ends with {type(ct).__name__}, not a ColumnTransformer")
    blocks: list[_Block] = []
    sparse_blocks: list[tuple[slice, _Text]] = []
    dense_index: list[Ints] = []
    dense_at = 0
    for name, transformer, names in ct.transformers_:
        if isinstance(transformer, str):
            if transformer == "drop":
                continue
            raise NotCompilable(f"column group '{name}' is '{transformer}'")
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise NotCompilable(f"column group '{name}' selects columns by {names!r}, not by name")
        block = _compile_group(name, transformer, names, dense_at)
        out = ct.output_indices_[name]
        if out.stop - out.start != block.width:
            raise NotCompilable(f"column group '{name}': {block.width} columns compiled, {out.stop - out.start} fitted")
        if isinstance(block, _Text) and block.components_t is None:
            sparse_blocks.append((out, block))
            continue
        blocks.append(block)
        dense_index.append(np.arange(out.start, out.stop, dtype=np.intp))
        dense_at += block.width
    index = np.concatenate(dense_index) if dense_index else np.zeros(0, dtype=np.intp)
    n_outputs = max((s.stop for s in ct.output_indices_.values()), default=0)
    return _Features(crosses, blocks, sparse_blocks, dense_at, n_outputs, index)


# --- models: each scores the feature matrix as the estimator's predict_proba (classes_ order) or predict ---


class _Model(Protocol):
    def scores(self, X: Floats, texts: list[sparse.csr_matrix]) -> Floats: ...


@dataclass(frozen=True)
class _Linear:
    """LogisticRegression (binary: expit; multiclass: softmax of the decision function) or Ridge, scored from the
    typed columns group by group, without the feature matrix (most of it a one-hot group's zeros): each group's
    share of the decision is its values times its coefficients, or for a one-hot group the coefficients of the
    columns it sets, looked up."""

    shares: list[tuple[_Block, Floats]]  # each dense group and its ``_coefficients``
    texts: list[tuple[_Text, Floats]]  # each sparse TF-IDF group and its coefficients, (outputs, vocabulary)
    intercept: Floats | float
    link: str  # "binary", "multinomial" or "identity" (Ridge: one value a row)

    def scores(self, columns: Columns, n_rows: int) -> Floats:
        """From columns the features' crosses were added to (``_Features.crossed``)."""
        decision = np.zeros((n_rows, len(np.atleast_1d(self.intercept))))
        for block, table in self.shares:
            decision += _share(block, table, columns, n_rows)
        for text, coef in self.texts:
            decision += np.asarray(text.tfidf(columns) @ coef.T)
        if self.link == "identity":
            return decision.reshape(-1) + self.intercept
        decision += self.intercept
        if self.link == "multinomial":
            return softmax(decision, copy=False)
        p = expit(decision.reshape(-1))
        return np.stack([1 - p, p], axis=1)


def _compile_linear(estimator: Any, features: _Features) -> _Linear:
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    if coef.shape[-1] != features.n_outputs:
        raise NotCompilable("linear model fitted on a different number of features")
    if type(estimator) is Ridge:
        if coef.ndim != 1:
            raise NotCompilable("Ridge with several targets")
        link = "identity"
    else:
        link = "binary" if len(estimator.classes_) <= 2 else "multinomial"
    coef = np.atleast_2d(coef)
    dense = coef[:, features.dense_index]
    shares = [(block, _coefficients(block, dense)) for block in features.blocks]
    texts = [(text, coef[:, out]) for out, text in features.sparse_blocks]
    return _Linear(shares, texts, estimator.intercept_, link)


@dataclass(frozen=True)
class _Trees:
    """Many binary trees in flat node arrays, evaluated together level by level. A leaf points to itself, so
    a row that reached its leaf stays there for the remaining levels. ``x > threshold`` is False for NaN,
    which then goes right unless ``missing_right`` says left."""

    roots: Ints
    feature: Ints
    threshold: Floats
    left: Ints
    right: Ints
    missing_right: NDArray[np.bool_]
    depth: int

    def leaves(self, X: np.ndarray) -> Ints:
        """The leaf each row reaches in each tree: (n_rows, n_trees) indexes into the flat node arrays."""
        X = np.ascontiguousarray(X)
        n_rows, n_features = X.shape
        flat = X.reshape(-1)
        node = np.broadcast_to(self.roots, (n_rows, len(self.roots)))
        row_start = (np.arange(n_rows, dtype=np.intp) * n_features)[:, None]
        has_nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            x = flat[self.feature[node] + row_start] if n_rows > 1 else flat[self.feature[node]]
            go_right = x > self.threshold[node]
            if has_nan:
                go_right |= np.isnan(x) & self.missing_right[node]
            node = np.where(go_right, self.right[node], self.left[node])
        return np.asarray(node)


# From this many rows, a batch's trees are evaluated by leaf bitvectors (mlsvc.prediction.bitvectors: about 4 µs a
# row on one core for churn's 300 trees) where they fit, else by the fitted estimator's own predictor (sklearn's
# compiled loop, row by row through each tree: about 13 µs), on the compiled feature matrix. Walking every tree level
# by level over (rows × trees) arrays wins for a few rows only (about 210 µs a row on a batch).
NATIVE_ROWS = 256


def _native_scores(estimator: Any, X: Floats) -> Floats:
    """What the estimator's predict_proba (a classifier) or predict (a regressor) gives for the feature matrix."""
    score = estimator.predict_proba if hasattr(estimator, "predict_proba") else estimator.predict
    return np.asarray(score(X), dtype=np.float64)


def _sequential_sum(values: Floats) -> Floats:
    """The sum over axis 1, added one term after another as sklearn accumulates its trees (numpy's sum would add
    pairwise, which differs in the last bits)."""
    return np.cumsum(values, axis=1)[:, -1]


def _stack_trees(trees: list[dict[str, np.ndarray]], depth: int) -> _Trees:
    """Trees given as arrays feature, threshold, left, right, missing_left, leaf (child indexes local to each
    tree) into one flat set of arrays with global indexes."""
    sizes = [len(t["leaf"]) for t in trees]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "missing_right")}
    for tree, start in zip(trees, starts, strict=True):
        leaf = tree["leaf"].astype(bool)
        own = np.arange(len(leaf), dtype=np.intp) + start
        parts["feature"].append(np.where(leaf, 0, tree["feature"]).astype(np.intp))
        parts["threshold"].append(np.where(leaf, np.inf, tree["threshold"]).astype(np.float64))
        parts["left"].append(np.where(leaf, own, tree["left"].astype(np.intp) + start))
        parts["right"].append(np.where(leaf, own, tree["right"].astype(np.intp) + start))
        parts["missing_right"].append(~leaf & ~tree["missing_left"].astype(bool))
    flat = {k: np.concatenate(v) for k, v in parts.items()}
    return _Trees(starts, flat["feature"], flat["threshold"], flat["left"], flat["right"], flat["missing_right"], depth)


@dataclass(frozen=True)
class _Boosting:
    """HistGradientBoosting: baseline + the sum of every tree's leaf value, per class, then the inverse link."""

    trees: _Trees
    value: Floats
    baseline: Floats  # (1, n_trees_per_iteration)
    link: str  # "binary", "multinomial" or "identity"
    native: Any = None  # the fitted estimator, for batches (see NATIVE_ROWS)

    @cached_property
    def bitvectors(self) -> Bitvectors | None:
        """Built on a first batch, not at load: a real-time model never needs them (tens of ms, a few MB)."""
        return None if self.native is None else compile_bitvectors(_boosting_trees(self.native))

    def scores(self, X: Floats, texts: list[sparse.csr_matrix]) -> Floats:
        if X.shape[0] >= NATIVE_ROWS and self.bitvectors is not None:
            raw = self.bitvectors.raw(X, self.baseline)
        elif X.shape[0] >= NATIVE_ROWS and self.native is not None:
            return _native_scores(self.native, X)
        else:
            raw = self._walked(X)
        if self.link == "identity":
            return raw.reshape(-1)
        if self.link == "multinomial":
            return softmax(raw, copy=False)
        proba = np.empty((X.shape[0], 2))
        proba[:, 1] = expit(raw[:, 0])
        proba[:, 0] = 1 - proba[:, 1]
        return proba

    def _walked(self, X: Floats) -> Floats:
        leaves = self.trees.leaves(X)
        n_rows, per_iteration = X.shape[0], self.baseline.shape[1]
        values = self.value[leaves].reshape(n_rows, -1, per_iteration)
        start = np.broadcast_to(self.baseline, (n_rows, 1, per_iteration))
        return _sequential_sum(np.concatenate([start, values], axis=1))


def _compile_boosting(estimator: Any) -> _Boosting:
    if estimator.is_categorical_ is not None:
        raise NotCompilable("HistGradientBoosting with categorical features")
    loss = type(estimator._loss)
    links = {HalfBinomialLoss: "binary", HalfMultinomialLoss: "multinomial", HalfSquaredError: "identity"}
    if loss not in links:
        raise NotCompilable(f"HistGradientBoosting with loss {loss.__name__}")
    nodes = [p.nodes for iteration in estimator._predictors for p in iteration]
    if any(n["is_categorical"].any() for n in nodes):
        raise NotCompilable("HistGradientBoosting with categorical splits")
    depth = max(int(n["depth"].max()) for n in nodes)
    value = np.concatenate([n["value"] for n in nodes]).astype(np.float64)
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1, -1)
    if baseline.shape[1] != estimator.n_trees_per_iteration_:
        raise NotCompilable("HistGradientBoosting baseline does not match its trees per iteration")
    return _Boosting(_stack_trees(_boosting_trees(estimator), depth), value, baseline, links[loss], estimator)


def _boosting_trees(estimator: Any) -> list[dict[str, np.ndarray]]:
    """Each tree of a fitted HistGradientBoosting as node arrays, iteration after iteration."""
    nodes = [p.nodes for iteration in estimator._predictors for p in iteration]
    fields = {"feature": "feature_idx", "threshold": "num_threshold", "left": "left", "right": "right"}
    return [
        {
            **{k: n[f] for k, f in fields.items()},
            "missing_left": n["missing_go_to_left"],
            "leaf": n["is_leaf"],
            "value": n["value"],
        }
        for n in nodes
    ]


@dataclass(frozen=True)
class _Forest:
    """Random forest / extra trees: X cast to float32 as sklearn does, then the mean over trees of the leaf
    values (class fractions for a classifier, values for a regressor)."""

    trees: _Trees
    value: Floats  # (n_nodes, n_classes) or (n_nodes,)
    native: Any = None  # the fitted estimator, for batches (see NATIVE_ROWS)

    def scores(self, X: Floats, texts: list[sparse.csr_matrix]) -> Floats:
        if self.native is not None and X.shape[0] >= NATIVE_ROWS:
            return _native_scores(self.native, X)
        leaves = self.trees.leaves(X.astype(np.float32))
        return _sequential_sum(self.value[leaves]) / len(self.trees.roots)


def _compile_forest(estimator: Any, classifier: bool) -> _Forest:
    if estimator.n_outputs_ != 1:
        raise NotCompilable("forest with several outputs")
    fitted = [e.tree_ for e in estimator.estimators_]
    trees = [
        {
            "feature": t.feature,
            "threshold": t.threshold,
            "left": t.children_left,
            "right": t.children_right,
            "missing_left": t.missing_go_to_left,
            "leaf": t.children_left == -1,
        }
        for t in fitted
    ]
    depth = max(int(t.max_depth) for t in fitted)
    if classifier:
        value = np.concatenate([t.value[:, 0, : estimator.n_classes_] for t in fitted]).astype(np.float64)
    else:
        value = np.concatenate([t.value[:, 0, 0] for t in fitted]).astype(np.float64)
    return _Forest(_stack_trees(trees, depth), value, estimator)


@dataclass(frozen=True)
class _Perceptron:
    """MLP forward pass with sklearn's own in-place activations."""

    coefs: list[Floats]
    intercepts: list[Floats]
    hidden: Callable[[Floats], None]
    output: Callable[[Floats], None]
    classifier: bool

    def scores(self, X: Floats, texts: list[sparse.csr_matrix]) -> Floats:
        activation = X
        last = len(self.coefs) - 1
        for i, (coef, intercept) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            activation = activation @ coef
            activation += intercept
            if i != last:
                self.hidden(activation)
        self.output(activation)
        if activation.shape[1] == 1:
            out = activation.reshape(-1)
            return np.vstack([1 - out, out]).T if self.classifier else out
        return activation


def _compile_mlp(estimator: Any, classifier: bool) -> _Perceptron:
    if estimator.activation not in ACTIVATIONS or estimator.out_activation_ not in ACTIVATIONS:
        raise NotCompilable(f"MLP with activation {estimator.activation!r} / {estimator.out_activation_!r}")
    return _Perceptron(
        list(estimator.coefs_),
        list(estimator.intercepts_),
        ACTIVATIONS[estimator.activation],
        ACTIVATIONS[estimator.out_activation_],
        classifier,
    )


@dataclass(frozen=True)
class _Delegate:
    """k nearest neighbours: the fitted estimator's own predict_proba / predict on the compiled matrix. One row
    is searched on one OpenMP thread (a per-thread setting in libgomp): measured on a busy two-core machine,
    sklearn's parallel neighbour search takes 4-26 ms for one row and 0.35 ms on one thread."""

    score: Callable[[Floats], Floats]

    def scores(self, X: Floats, texts: list[sparse.csr_matrix]) -> Floats:
        if X.shape[0] > 1:
            return np.asarray(self.score(X), dtype=np.float64)
        with _thread_pools().limit(limits=1, user_api="openmp"):
            return np.asarray(self.score(X), dtype=np.float64)


@cache
def _thread_pools() -> ThreadpoolController:
    """Made once per process (it inspects the loaded libraries), and not part of a compiled model, which stays
    picklable."""
    return ThreadpoolController()


@dataclass(frozen=True)
class _OnLogScale:
    """A regressor fitted on log1p of the target (``mlsvc.training.targets``): its values through expm1, as
    TransformedTargetRegressor answers."""

    inner: _Model | _Linear


def _compile_model(estimator: Any, features: _Features) -> _Model | _Linear | _OnLogScale:
    if type(estimator) is TransformedTargetRegressor:
        if not is_on_log_scale(estimator):
            raise NotCompilable("TransformedTargetRegressor with functions other than mlsvc's log1p / expm1")
        inner = _compile_model(estimator.regressor_, features)
        assert not isinstance(inner, _OnLogScale)
        return _OnLogScale(inner)
    kind = type(estimator)
    if kind in (LogisticRegression, Ridge):
        return _compile_linear(estimator, features)
    if features.sparse_blocks:
        raise NotCompilable(f"{kind.__name__} on sparse TF-IDF columns")
    if getattr(estimator, "n_features_in_", None) != features.width:
        raise NotCompilable(f"{kind.__name__} fitted on a different number of features")
    if kind in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        return _compile_boosting(estimator)
    if kind in (RandomForestClassifier, ExtraTreesClassifier, RandomForestRegressor, ExtraTreesRegressor):
        return _compile_forest(estimator, classifier=kind in (RandomForestClassifier, ExtraTreesClassifier))
    if kind in (MLPClassifier, MLPRegressor):
        return _compile_mlp(estimator, classifier=kind is MLPClassifier)
    if kind is KNeighborsClassifier:
        return _Delegate(estimator.predict_proba)
    if kind is KNeighborsRegressor:
        return _Delegate(estimator.predict)
    raise NotCompilable(f"estimator {kind.__name__} is not compiled")


# --- pipelines and ensembles ---


class _Scorer(Protocol):
    def scores(self, columns: Columns, n_rows: int) -> Floats: ...


@dataclass(frozen=True)
class _Pipeline:
    features: _Features
    model: _Model | _Linear | _OnLogScale

    def scores(self, columns: Columns, n_rows: int) -> Floats:
        model = self.model.inner if isinstance(self.model, _OnLogScale) else self.model
        if isinstance(model, _Linear):
            out = model.scores(self.features.crossed(columns), n_rows)
        else:
            X, texts = self.features.transform(columns, n_rows)
            out = model.scores(X, texts)
        return expm1_target(out) if isinstance(self.model, _OnLogScale) else out


@dataclass(frozen=True)
class _Voting:
    """Soft VotingClassifier (np.average of the members' probabilities) or VotingRegressor (of their values),
    with the ensemble's weights, exactly as sklearn averages."""

    members: list[_Scorer]
    weights: list[float] | None
    classifier: bool

    def scores(self, columns: Columns, n_rows: int) -> Floats:
        outputs = np.asarray([m.scores(columns, n_rows) for m in self.members])
        if self.classifier:
            return np.average(outputs, axis=0, weights=self.weights)
        return np.average(outputs.T, axis=1, weights=self.weights)


def _compile_pipeline(pipeline: Any) -> _Pipeline:
    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        raise NotCompilable(f"{type(pipeline).__name__} is not a features + model pipeline")
    features = _compile_features(pipeline.steps[0][1])
    return _Pipeline(features, _compile_model(pipeline.steps[1][1], features))


def _compile_scorer(model: Any) -> _Scorer:
    kind = type(model)
    if kind in (VotingClassifier, VotingRegressor):
        if kind is VotingClassifier and model.voting != "soft":
            raise NotCompilable(f"VotingClassifier with voting={model.voting!r}")
        members: list[_Scorer] = [_compile_pipeline(m) for m in model.estimators_]
        weights = model._weights_not_none
        return _Voting(members, None if weights is None else list(weights), classifier=kind is VotingClassifier)
    return _compile_pipeline(model)


# --- the public face ---


@dataclass(frozen=True)
class CompiledModel:
    """A fitted pipeline as numpy operations. ``predict`` takes typed columns by feature name and returns what
    ``predict_output`` returns: P(positive) for BINARY, class probabilities for MULTICLASS, values for
    REGRESSION."""

    model_type: ModelType
    n_classes: int
    feature_names: list[str]
    classes: Ints | None  # the fitted estimator's classes_ (label codes), for classifiers
    scorer: _Scorer

    def predict(self, columns: Columns, n_rows: int) -> np.ndarray:
        out = self.scorer.scores(columns, n_rows)
        if self.model_type == ModelType.REGRESSION:
            return np.asarray(out, dtype=np.float64)
        proba = out
        if proba.shape[1] != self.n_classes:  # a class absent from the fitting data, as predict_output pads it
            assert self.classes is not None
            proba = np.zeros((n_rows, self.n_classes))
            proba[:, self.classes] = out
        return proba[:, 1] if self.model_type == ModelType.BINARY else proba


def compile_pipeline(pipeline: Any, model_type: ModelType, n_classes: int, feature_names: list[str]) -> CompiledModel:
    """Compile a fitted pipeline (or soft-voting ensemble of pipelines) of the training loop; raises
    NotCompilable for any step, estimator or parameter this module does not implement exactly."""
    scorer = _compile_scorer(pipeline)
    classes = None
    if model_type != ModelType.REGRESSION:
        if not hasattr(pipeline, "predict_proba"):
            raise NotCompilable(f"{type(pipeline).__name__} has no predict_proba")
        classes = np.asarray(pipeline.classes_)
        if classes.dtype.kind not in "iu":
            raise NotCompilable("classifier classes are not label codes")
    _check_inputs(scorer, feature_names)
    return CompiledModel(model_type, n_classes, list(feature_names), classes, scorer)


def _check_inputs(scorer: _Scorer, feature_names: list[str]) -> None:
    """Every column the compiled stages read is a feature (or a cross made of features)."""
    known = set(feature_names)
    pipelines = scorer.members if isinstance(scorer, _Voting) else [scorer]
    for member in pipelines:
        assert isinstance(member, _Pipeline)
        features = member.features
        made = {c.name for c in features.crosses}
        for cross in features.crosses:
            if not {cross.a, cross.b} <= known:
                raise NotCompilable(f"cross {cross.name} reads columns that are not features")
        blocks: list[_Block] = [*features.blocks, *(t for _, t in features.sparse_blocks)]
        read = {n for block in blocks for n in block.names}
        unknown = read - known - made
        if unknown:
            raise NotCompilable(f"the pipeline reads columns {sorted(unknown)} that are not features")
