"""Recipes: how each attribute becomes model features (Amazon ML's transformations), as scikit-learn transformers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, KBinsDiscretizer, OneHotEncoder, StandardScaler, TargetEncoder
from sklearn.utils.multiclass import type_of_target

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.resources import Attribute, AttributeType
from mlsvc.training.recipe_language import (
    BINARY_STEP,
    BINS_STEP,
    CATEGORICAL_STEP,
    NORMALIZE_STEP,
    NUMERIC_STEP,
    TOKENS_STEP,
    Plan,
    TokenFeatures,
    as_amazon_recipe,
    check_recipe,
    is_amazon_recipe,
    level_name,
    output_feature_name,
    parse_recipe_json,
)

# Above this many levels one-hot columns cost more than they tell; a cross-fitted target encoding scales.
HIGH_CARDINALITY = 50
TRANSFORMS: dict[AttributeType, tuple[str, ...]] = {
    AttributeType.NUMERIC: ("impute_median_scale", "quantile_bins", "drop"),
    AttributeType.BINARY: ("impute_most_frequent", "drop"),
    AttributeType.CATEGORICAL: ("one_hot_rare_grouped", "target_encode", "drop"),
    AttributeType.TEXT: ("tfidf_words_1_2", "drop"),
}
TEXT_SVD_COMPONENTS = 64


def fill_text(column: pd.Series | pd.DataFrame | np.ndarray) -> list[str]:
    """TF-IDF needs strings: a missing text is the empty text. Module-level so that pipelines pickle."""
    values = column.iloc[:, 0] if isinstance(column, pd.DataFrame) else column
    if isinstance(values, np.ndarray) and values.ndim == 2:
        values = values[:, 0]
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def categorical_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as strings with missing as its own level, which the encoders need."""
    return frame.astype(object).where(frame.notna(), "__missing__")


def default_recipe(features: list[Attribute], cardinality: dict[str, int] | None = None) -> dict[str, Any]:
    """Amazon ML-style defaults: one transformation per attribute, chosen by its type (and cardinality)."""
    cardinality = cardinality or {}
    plan: dict[str, str] = {}
    for a in features:
        if a.attributeType == AttributeType.CATEGORICAL and cardinality.get(a.attributeName, 0) > HIGH_CARDINALITY:
            plan[a.attributeName] = "target_encode"
        else:
            plan[a.attributeName] = TRANSFORMS[a.attributeType][0]
    return {"attributes": plan, "crosses": []}


def default_amazon_recipe(features: list[Attribute], cardinality: dict[str, int] | None = None) -> dict[str, Any]:
    """The defaults, in Amazon ML's recipe language."""
    return as_amazon_recipe(default_recipe(features, cardinality), features)


def merge_recipe(
    defaults: dict[str, Any], given: dict[str, Any] | str | None, features: list[Attribute]
) -> dict[str, Any]:
    """The recipe a model trains with, checked: one in Amazon ML's recipe language (it has "outputs"; a JSON
    string is read as JSON) as given, normalized; or mlsvc's own over the defaults (known attributes, transforms
    that fit their type)."""
    if isinstance(given, str):
        given = parse_recipe_json(given)
    if not given:
        return defaults
    if is_amazon_recipe(given):
        return check_recipe(given, features).recipe
    _check_recipe_shape(given)
    unknown_keys = set(given) - {"attributes", "crosses"}
    if unknown_keys:
        raise _bad(
            f"recipe has unknown keys {sorted(unknown_keys)}; it takes 'attributes' and 'crosses' (mlsvc's own "
            "recipe), or 'groups', 'assignments' and 'outputs' (Amazon ML's recipe language, docs/recipes.md)"
        )
    types = {a.attributeName: a.attributeType for a in features}
    plan = dict(defaults["attributes"])
    for name, transform in (given.get("attributes") or {}).items():
        if name not in types:
            raise _bad(f"recipe names attribute '{name}', which is not a feature; features are {sorted(types)}")
        if transform not in TRANSFORMS[types[name]]:
            raise _bad(
                f"recipe transform '{transform}' does not apply to {types[name].value} attribute '{name}'; "
                f"choose one of {list(TRANSFORMS[types[name]])}"
            )
        plan[name] = transform
    crosses = [list(pair) for pair in given.get("crosses") or []]
    for pair in crosses:
        if len(pair) != 2 or any(p not in types for p in pair) or pair[0] == pair[1]:
            raise _bad(f"recipe cross {pair} must name two different features")
        if any(types[p] == AttributeType.TEXT for p in pair):
            raise _bad(f"recipe cross {pair}: TEXT attributes cannot be crossed")
    if not any(t != "drop" for t in plan.values()) and not crosses:
        raise _bad("the recipe drops every attribute; keep at least one")
    return {"attributes": plan, "crosses": crosses}


def _check_recipe_shape(given: Any) -> None:
    """The recipe's JSON shape, before its meaning is checked."""
    shape = 'a recipe is {"attributes": {"column": "transform", …}, "crosses": [["column", "column"], …]}'
    if not isinstance(given, dict):
        raise _bad(shape)
    attributes = given.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise _bad(f"recipe 'attributes' must map column names to transform names; {shape}")
    crosses = given.get("crosses") or []
    if not isinstance(crosses, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(c, str) for c in pair) for pair in crosses
    ):
        raise _bad(f"recipe 'crosses' must be a list of pairs of column names; {shape}")


def _bad(message: str) -> MlsvcError:
    return MlsvcError(ErrorCode.VALIDATION_ERROR, message)


class CrossFeatures(TransformerMixin, BaseEstimator):
    """Amazon ML's cartesian transformation: a new categorical column per pair of attributes (numbers are cut
    into quantile bins learned at fit)."""

    def __init__(self, pairs: list[list[str]], bins: int = 5) -> None:
        self.pairs = pairs
        self.bins = bins

    def fit(self, X: pd.DataFrame, y: Any = None) -> CrossFeatures:
        self.edges_: dict[str, np.ndarray] = {}
        for name in {n for pair in self.pairs for n in pair}:
            column = X[name]
            if pd.api.types.is_float_dtype(column) and column.nunique() > self.bins:
                quantiles = np.nanquantile(column.to_numpy(dtype=float), np.linspace(0, 1, self.bins + 1)[1:-1])
                self.edges_[name] = np.unique(quantiles)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for a, b in self.pairs:
            out[cross_name(a, b)] = self._level(X, a) + "×" + self._level(X, b)
        return out

    def _level(self, X: pd.DataFrame, name: str) -> pd.Series:
        column = X[name]
        if name in self.edges_:
            values = column.to_numpy(dtype=float)
            level = pd.Series(np.searchsorted(self.edges_[name], values, side="right").astype(str), index=X.index)
            return level.where(~np.isnan(values), "NA")
        return column.astype(object).where(column.notna(), "NA").astype(str)


class CappedSVD(TransformerMixin, BaseEstimator):
    """Truncated SVD that asks for no more components than a small vocabulary has."""

    def __init__(self, n_components: int = TEXT_SVD_COMPONENTS, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> CappedSVD:
        k = max(1, min(self.n_components, X.shape[1] - 1, X.shape[0] - 1))
        self.svd_ = TruncatedSVD(n_components=k, random_state=self.random_state).fit(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        return self.svd_.transform(X)


class SeededFolds:
    """TargetEncoder's cross-fitting folds as they were before scikit-learn 1.9 moved shuffling into ``cv``: five
    shuffled folds with a fixed seed (so the same data gives the same model), stratified for class targets."""

    def __init__(self, n_splits: int = 5, random_state: int = 0) -> None:
        self.n_splits = n_splits
        self.random_state = random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Any:
        classes = type_of_target(y) in ("binary", "multiclass")
        # StratifiedKFold refuses labels where no class has a row for every fold (a few rows of many classes).
        stratifiable = classes and int(np.unique(y, return_counts=True)[1].max()) >= self.n_splits
        folds = StratifiedKFold if stratifiable else KFold
        return folds(self.n_splits, shuffle=True, random_state=self.random_state).split(X, y, groups)


def cross_name(a: str, b: str) -> str:
    return f"{a}×{b}"


def build_preprocessor(
    features: list[Attribute], recipe: dict[str, Any], *, numeric: str | None = None, dense: bool = False
) -> Pipeline:
    """Crosses (if any) then a ColumnTransformer applying ``recipe``. ``numeric`` replaces the default numeric
    transform (a linear model may prefer quantile bins), except in an Amazon ML recipe, which says itself how each
    number is used; ``dense`` compresses TF-IDF for models that need it."""
    if is_amazon_recipe(recipe):
        return _amazon_preprocessor(check_recipe(recipe, features), dense)
    plan = dict(recipe["attributes"])
    if numeric:
        plan = {n: (numeric if t == "impute_median_scale" else t) for n, t in plan.items()}
    groups: dict[str, list[str]] = {}
    for a in features:
        groups.setdefault(plan[a.attributeName], []).append(a.attributeName)
    crosses = [cross_name(a, b) for a, b in recipe.get("crosses", [])]
    steps = _column_steps(groups, crosses, dense)
    column_transformer = ColumnTransformer(
        steps, remainder="drop", sparse_threshold=0.0 if dense else 0.3, verbose_feature_names_out=False
    )
    stages: list[tuple[str, Any]] = []
    if recipe.get("crosses"):
        stages.append(("crosses", CrossFeatures(recipe["crosses"])))
    stages.append(("columns", column_transformer))
    return Pipeline(stages)


def _amazon_preprocessor(plan: Plan, dense: bool) -> Pipeline:
    """A ColumnTransformer making an Amazon ML recipe's outputs: numbers as they are (missing ones imputed) and
    normalized, flags, categories one-hot, quantile bins, and each token output by its own TokenFeatures."""
    steps: list[tuple[str, Any, Any]] = []
    if plan.numeric:
        steps.append((NUMERIC_STEP, SimpleImputer(strategy="median", keep_empty_features=True), plan.numeric))
    if plan.normalized:
        steps.append((NORMALIZE_STEP, _impute_then("scale", StandardScaler()), plan.normalized))
    if plan.binary:
        steps.append((BINARY_STEP, SimpleImputer(strategy="most_frequent", keep_empty_features=True), plan.binary))
    if plan.categorical:
        steps.append((CATEGORICAL_STEP, _one_hot(level_name), plan.categorical))
    for bins, columns in plan.bins.items():
        steps.append((f"{BINS_STEP}{bins}", _impute_then("bins", _quantile_bins(bins)), columns))
    for i, output in enumerate(plan.tokens):
        tokens = TokenFeatures(output.expression, output.label)
        step = Pipeline([("tokens", tokens), ("svd", CappedSVD())]) if dense else tokens
        steps.append((f"{TOKENS_STEP}{i}", step, output.columns))
    columns = ColumnTransformer(
        steps, remainder="drop", sparse_threshold=0.0 if dense else 0.3, verbose_feature_names_out=output_feature_name
    )
    return Pipeline([("columns", columns)])


def _impute_then(name: str, step: Any) -> Pipeline:
    """Missing numbers imputed by the median, then ``step``."""
    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)), (name, step)])


def _quantile_bins(bins: int) -> KBinsDiscretizer:
    return KBinsDiscretizer(
        n_bins=bins, encode="onehot-dense", strategy="quantile", quantile_method="averaged_inverted_cdf"
    )


def _one_hot(names: Any = "concat") -> Pipeline:
    """Categories one-hot, missing as a level of its own; rare levels share one column so unseen data degrades
    gracefully. ``names`` makes a column's name from the attribute's and the level's."""
    return Pipeline(
        [
            ("as_text", FunctionTransformer(categorical_as_text, feature_names_out="one-to-one")),
            (
                "one_hot",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    min_frequency=5,
                    max_categories=64,
                    sparse_output=False,
                    feature_name_combiner=names,
                ),
            ),
        ]
    )


def _column_steps(groups: dict[str, list[str]], crosses: list[str], dense: bool) -> list[tuple[str, Any, Any]]:
    steps: list[tuple[str, Any, Any]] = []
    if groups.get("impute_median_scale"):
        steps.append(("numeric", _impute_then("scale", StandardScaler()), groups["impute_median_scale"]))
    if groups.get("quantile_bins"):
        steps.append(("numeric_bins", _impute_then("bins", _quantile_bins(10)), groups["quantile_bins"]))
        # Binning the imputed values hides which were missing; a linear model may learn from that on its own.
        steps.append(
            ("numeric_missing", MissingIndicator(features="missing-only", error_on_new=False), groups["quantile_bins"])
        )
    if groups.get("impute_most_frequent"):
        steps.append(
            (
                "binary",
                SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                groups["impute_most_frequent"],
            )
        )
    one_hot = groups.get("one_hot_rare_grouped", []) + crosses
    if one_hot:
        steps.append(("categorical", _one_hot(), one_hot))
    if groups.get("target_encode"):
        steps.append(
            (
                "high_cardinality",
                Pipeline(
                    [
                        ("as_text", FunctionTransformer(categorical_as_text, feature_names_out="one-to-one")),
                        ("target", TargetEncoder(cv=SeededFolds())),
                    ]
                ),
                groups["target_encode"],
            )
        )
    for name in groups.get("tfidf_words_1_2", []):
        stages: list[tuple[str, Any]] = [
            ("fill", FunctionTransformer(fill_text)),
            (
                "tfidf",
                TfidfVectorizer(lowercase=True, ngram_range=(1, 2), min_df=2, max_features=20_000, sublinear_tf=True),
            ),
        ]
        if dense:
            stages.append(("svd", CappedSVD()))
        steps.append((f"text_{name}", Pipeline(stages), [name]))
    return steps
