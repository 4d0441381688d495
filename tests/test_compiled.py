"""The compiled scoring path against the fitted pipeline it came from: every family the loop can choose, missing
values, unseen categories and words, one row at a time and in a batch, to 1e-9."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
    VotingClassifier,
)
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from mlsvc.prediction.compiled import NotCompilable, _compile_boosting, _compile_forest, compile_pipeline
from mlsvc.resources import Attribute, AttributeType, ModelType
from mlsvc.training.candidates import BY_NAME
from mlsvc.training.data import TrainingData
from mlsvc.training.loop import Config, _voting, fit_quietly, make_pipeline, predict_output
from mlsvc.training.recipe import build_preprocessor

TYPES = {
    "amount": AttributeType.NUMERIC,
    "tenure": AttributeType.NUMERIC,
    "flag": AttributeType.BINARY,
    "plan": AttributeType.CATEGORICAL,
    "city": AttributeType.CATEGORICAL,
    "review": AttributeType.TEXT,
}
FEATURES = [Attribute(attributeName=n, attributeType=t) for n, t in TYPES.items()]
RECIPE = {
    "attributes": {
        "amount": "impute_median_scale",
        "tenure": "impute_median_scale",
        "flag": "impute_most_frequent",
        "plan": "one_hot_rare_grouped",
        "city": "target_encode",
        "review": "tfidf_words_1_2",
    },
    "crosses": [["plan", "tenure"], ["flag", "plan"]],
}
WORDS = np.array(["great", "slow", "refund", "love", "broken", "fast", "cheap", "support", "late", "kind"])
# Four common plans and six rare ones (fewer than OneHotEncoder's min_frequency=5 rows each).
PLANS = ["basic", "plus", "pro", "team"] + [f"legacy{i}" for i in range(6)]
PLAN_P = np.array([0.3, 0.3, 0.2, 0.17] + [0.005] * 6)
N_FIT, N_HELD = 700, 500
TOLERANCE = 1e-9
ONE_BY_ONE = 150  # held-out rows also scored one at a time (the hostile values are spread over all of them)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Small fits on a busy machine: OpenMP threads only add waiting (HistGradientBoosting fits 6× faster)."""
    with threadpool_limits(1):
        yield


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal to 1e-9, or to a few units in the last place where a value is so large (an extrapolating regression
    at 1e7) that one ulp exceeds 1e-9: there the pipeline itself differs by an ulp between one row and a batch."""
    assert actual.shape == expected.shape
    allowed = np.maximum(TOLERANCE, 4 * np.spacing(np.abs(expected)))
    worst = np.max(np.abs(actual - expected) - allowed, initial=-np.inf)
    assert worst <= 0, f"differs by up to {np.max(np.abs(actual - expected))}"


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "tenure": rng.integers(0, 72, n).astype(float),
            "flag": rng.integers(0, 2, n).astype(float),
            "plan": pd.Series(rng.choice(PLANS, n, p=PLAN_P / PLAN_P.sum()), dtype=object),
            "city": pd.Series([f"city{i}" for i in rng.integers(0, 90, n)], dtype=object),
            "review": pd.Series([" ".join(rng.choice(WORDS, rng.integers(1, 6))) for _ in range(n)], dtype=object),
        }
    )
    for column in X.columns:  # about 6% missing everywhere
        X.loc[rng.random(n) < 0.06, column] = None if X[column].dtype == object else np.nan
    return X


def _hostile(X: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Held-out rows with what a live request brings: unseen categories and words, missing and empty values,
    numbers outside the training range."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    n = len(X)
    pick = rng.random((6, n))
    X.loc[pick[0] < 0.1, "plan"] = "enterprise"  # never seen
    X.loc[pick[1] < 0.1, "city"] = "atlantis"  # never seen
    X.loc[pick[2] < 0.1, "review"] = "zyzzyva quux great"  # unseen words beside a known one
    X.loc[pick[3] < 0.05, "review"] = ""
    X.loc[pick[4] < 0.05, "amount"] = 1e9
    X.loc[pick[5] < 0.05, "tenure"] = -5.0
    for column in X.columns:  # a record with nothing in it
        X.loc[X.index[0], column] = None if X[column].dtype == object else np.nan
    return X


def _target(X: pd.DataFrame, model_type: ModelType, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    score = (
        np.nan_to_num(np.log1p(X["amount"].to_numpy(dtype=float)), nan=3.0)
        - 3
        - 0.03 * np.nan_to_num(X["tenure"].to_numpy(dtype=float), nan=30.0)
        + X["plan"].isin(["basic", "legacy1"]).to_numpy() * 1.2
        + X["review"].fillna("").str.contains("great|love").to_numpy() * 1.0
        + rng.normal(0, 0.5, len(X))
    )
    if model_type == ModelType.REGRESSION:
        return score
    if model_type == ModelType.BINARY:
        return (score > np.median(score)).astype(np.int64)
    return np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype(np.int64)


def _data(model_type: ModelType) -> TrainingData:
    X = _frame(N_FIT, 1)
    classes = {ModelType.BINARY: ["no", "yes"], ModelType.MULTICLASS: ["a", "b", "c"]}.get(model_type)
    return TrainingData(X, _target(X, model_type, 2), FEATURES, model_type, classes, None)


def _config(family: str, model_type: ModelType, **params: Any) -> Config:
    return Config(f"{family}#0", BY_NAME[family], BY_NAME[family].defaults(model_type) | params)


def _columns(X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Typed columns as the scorer hands them over: float64 for numbers and flags, object (str | None) else."""
    text = (AttributeType.CATEGORICAL, AttributeType.TEXT)
    return {c: X[c].to_numpy(dtype=object if TYPES[c] in text else np.float64) for c in X.columns}


def _arrow_columns(X: pd.DataFrame) -> dict[str, Any]:
    """Typed columns as a batch job's scan hands them over (``values.coerce_array``): float64 for numbers and
    flags, a dictionary array for CATEGORICAL, a string array for TEXT, null where missing."""
    out: dict[str, Any] = {}
    for column, kind in TYPES.items():
        if kind == AttributeType.CATEGORICAL:
            out[column] = pa.array(X[column].tolist(), type=pa.string()).dictionary_encode()
        elif kind == AttributeType.TEXT:
            out[column] = pa.array(X[column].tolist(), type=pa.string())
        else:
            out[column] = X[column].to_numpy(dtype=np.float64)
    return out


def _n_classes(model_type: ModelType) -> int:
    return {ModelType.BINARY: 2, ModelType.MULTICLASS: 3}.get(model_type, 0)


def _check(pipeline: Any, model_type: ModelType) -> None:
    held = _hostile(_frame(N_HELD, 7), 8)
    n_classes = _n_classes(model_type)
    compiled = compile_pipeline(pipeline, model_type, n_classes, list(TYPES))
    expected = predict_output(pipeline, model_type, held, n_classes)
    columns = _columns(held)

    batch = compiled.predict(columns, N_HELD)
    _assert_close(batch, expected)
    # A batch job's columns: arrow, as its scan types them (categories dictionary-encoded, one lookup per level).
    _assert_close(compiled.predict(_arrow_columns(held), N_HELD), expected)

    one_by_one = np.array(
        [compiled.predict({c: v[i : i + 1] for c, v in columns.items()}, 1)[0] for i in range(ONE_BY_ONE)]
    )
    _assert_close(one_by_one, expected[:ONE_BY_ONE])
    # The pipeline itself on single-row frames agrees too (rows are scored independently).
    for i in (0, 1, 2, 3):
        single = predict_output(pipeline, model_type, held.iloc[[i]], n_classes)[0]
        _assert_close(one_by_one[i], single)
    if model_type != ModelType.REGRESSION:
        assert np.all((batch >= 0) & (batch <= 1)) and np.ptp(batch) > 0.05  # a real model, not a constant


def _fit(config: Config, model_type: ModelType) -> Any:
    data = _data(model_type)
    return fit_quietly(make_pipeline(config, data, RECIPE, 0, 1), data.X, data.y)


CASES = [
    ("linear", ModelType.BINARY, {}),
    ("linear", ModelType.MULTICLASS, {}),
    ("linear", ModelType.REGRESSION, {}),
    ("linear", ModelType.BINARY, {"numeric": "quantile_bins"}),
    ("linear", ModelType.REGRESSION, {"numeric": "quantile_bins"}),
    ("hist_gradient_boosting", ModelType.BINARY, {}),
    ("hist_gradient_boosting", ModelType.MULTICLASS, {"max_iter": 40}),
    ("hist_gradient_boosting", ModelType.REGRESSION, {}),
    ("random_forest", ModelType.BINARY, {"n_estimators": 60}),
    ("random_forest", ModelType.MULTICLASS, {"n_estimators": 60, "min_samples_leaf": 1}),
    ("random_forest", ModelType.REGRESSION, {"n_estimators": 60}),
    ("extra_trees", ModelType.BINARY, {"n_estimators": 60}),
    ("extra_trees", ModelType.REGRESSION, {"n_estimators": 60}),
    ("knn", ModelType.BINARY, {}),
    ("knn", ModelType.REGRESSION, {"weights": "uniform"}),
    ("mlp", ModelType.BINARY, {}),
    ("mlp", ModelType.MULTICLASS, {"hidden": [32, 16]}),
    ("mlp", ModelType.REGRESSION, {"hidden": [32]}),
]


@pytest.mark.parametrize(
    ("family", "model_type", "params"),
    CASES,
    ids=[f"{f}-{t.value.lower()}{'-' + '-'.join(map(str, p.values())) if p else ''}" for f, t, p in CASES],
)
def test_compiled_family_matches_pipeline(family: str, model_type: ModelType, params: dict[str, Any]) -> None:
    _check(_fit(_config(family, model_type, **params), model_type), model_type)


def test_a_compiled_model_pickles_for_worker_processes() -> None:
    pipeline = _fit(_config("knn", ModelType.BINARY), ModelType.BINARY)
    compiled = compile_pipeline(pipeline, ModelType.BINARY, 2, list(TYPES))
    columns = _columns(_hostile(_frame(50, 13), 14))
    copy = pickle.loads(pickle.dumps(compiled))
    assert np.array_equal(copy.predict(columns, 50), compiled.predict(columns, 50))


def test_one_compiled_model_serves_many_threads_at_once() -> None:
    pipeline = _fit(_config("hist_gradient_boosting", ModelType.MULTICLASS, max_iter=20), ModelType.MULTICLASS)
    compiled = compile_pipeline(pipeline, ModelType.MULTICLASS, 3, list(TYPES))
    columns = _columns(_hostile(_frame(200, 11), 12))
    alone = [compiled.predict({c: v[i : i + 1] for c, v in columns.items()}, 1) for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        together = list(
            pool.map(
                lambda i: compiled.predict({c: v[i : i + 1] for c, v in columns.items()}, 1),
                [i for _ in range(5) for i in range(200)],
            )
        )
    assert all(np.array_equal(t, alone[k % 200]) for k, t in enumerate(together))


def test_the_data_reaches_the_paths_under_test() -> None:
    """Rare plans are grouped as infrequent, the cross and target encoding and text are in the pipeline: the
    equality tests above are only worth something if these paths are exercised."""
    pipeline = _fit(_config("linear", ModelType.BINARY), ModelType.BINARY)
    columns = pipeline.named_steps["features"].named_steps["columns"]
    one_hot = columns.named_transformers_["categorical"].named_steps["one_hot"]
    assert one_hot.infrequent_categories_[0] is not None and len(one_hot.infrequent_categories_[0]) >= 2
    assert list(one_hot.feature_names_in_) == ["plan", "plan×tenure", "flag×plan"]
    assert "high_cardinality" in columns.named_transformers_ and "text_review" in columns.named_transformers_
    assert "__missing__" in one_hot.categories_[0]


@pytest.mark.parametrize("model_type", [ModelType.BINARY, ModelType.REGRESSION])
def test_compiled_ensemble_of_three_matches_pipeline(model_type: ModelType) -> None:
    data = _data(model_type)
    members = [
        _config("linear", model_type, numeric="quantile_bins"),
        _config("hist_gradient_boosting", model_type),
        _config("random_forest", model_type, n_estimators=40),
    ]

    class _Search:  # what _voting reads from a search
        def __init__(self) -> None:
            self.data, self.recipe, self.seed, self.n_jobs = data, RECIPE, 0, 1

    class _Member:
        def __init__(self, config: Config) -> None:
            self.config = config

    ensemble = fit_quietly(_voting([_Member(c) for c in members], _Search()), data.X, data.y)  # type: ignore[arg-type]
    assert len(ensemble.estimators_) == 3
    _check(ensemble, model_type)


def test_a_class_missing_from_the_fit_is_padded_as_predict_output_does() -> None:
    data = _data(ModelType.MULTICLASS)
    keep = data.y != 1
    config = _config("hist_gradient_boosting", ModelType.MULTICLASS, max_iter=30)
    pipeline = fit_quietly(make_pipeline(config, data, RECIPE, 0, 1), data.X[keep], data.y[keep])
    assert list(pipeline.classes_) == [0, 2]
    _check(pipeline, ModelType.MULTICLASS)


def _preprocessor(dense: bool = True) -> Pipeline:
    return build_preprocessor(FEATURES, RECIPE, dense=dense)


def test_unsupported_estimators_and_parameters_raise_not_compilable() -> None:
    data = _data(ModelType.BINARY)
    unsupported_model = fit_quietly(Pipeline([("features", _preprocessor()), ("model", GaussianNB())]), data.X, data.y)
    with pytest.raises(NotCompilable, match="GaussianNB"):
        compile_pipeline(unsupported_model, ModelType.BINARY, 2, list(TYPES))

    regression = _data(ModelType.REGRESSION)
    absolute = Pipeline(
        [("features", _preprocessor()), ("model", HistGradientBoostingRegressor(loss="absolute_error", max_iter=10))]
    )
    with pytest.raises(NotCompilable, match="AbsoluteError"):
        compile_pipeline(fit_quietly(absolute, regression.X, regression.y), ModelType.REGRESSION, 0, list(TYPES))

    hard = VotingClassifier(
        [
            ("a", make_pipeline(_config("linear", ModelType.BINARY), data, RECIPE, 0, 1)),
            ("b", make_pipeline(_config("knn", ModelType.BINARY), data, RECIPE, 0, 1)),
        ],
        voting="hard",
    )
    with pytest.raises(NotCompilable, match="voting='hard'"):
        compile_pipeline(fit_quietly(hard, data.X, data.y), ModelType.BINARY, 2, list(TYPES))

    strict = _fit(_config("linear", ModelType.BINARY), ModelType.BINARY)
    one_hot = strict.named_steps["features"].named_steps["columns"].named_transformers_["categorical"]
    one_hot.named_steps["one_hot"].handle_unknown = "error"  # sklearn would raise on an unseen category
    with pytest.raises(NotCompilable, match="handle_unknown='error'"):
        compile_pipeline(strict, ModelType.BINARY, 2, list(TYPES))


def test_a_column_that_is_not_a_feature_is_refused() -> None:
    pipeline = _fit(_config("linear", ModelType.BINARY), ModelType.BINARY)
    with pytest.raises(NotCompilable, match="not features"):
        compile_pipeline(pipeline, ModelType.BINARY, 2, ["amount", "tenure", "flag", "plan", "city"])


def test_trees_send_missing_values_where_sklearn_does() -> None:
    """The loop's pipelines impute before any tree, but the tree evaluation itself follows sklearn on NaN too:
    HistGradientBoosting's learned missing_go_to_left, and the forests' missing-value support."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 5))
    y = (X[:, 0] + np.where(rng.random(600) < 0.3, 2.0, 0.0) > 0.5).astype(int)
    value = X[:, 0] * 2 + y
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 1][y == 1] = np.nan  # missingness that predicts the class
    held = rng.normal(size=(300, 5))
    held[rng.random(held.shape) < 0.3] = np.nan
    boosting = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
    np.testing.assert_allclose(_compile_boosting(boosting).scores(held, []), boosting.predict_proba(held), atol=1e-12)
    trees = ExtraTreesClassifier(n_estimators=20, random_state=0).fit(X, y)
    np.testing.assert_allclose(_compile_forest(trees, True).scores(held, []), trees.predict_proba(held), atol=1e-12)
    forest = RandomForestRegressor(n_estimators=20, random_state=0).fit(X, value)
    np.testing.assert_allclose(_compile_forest(forest, False).scores(held, []), forest.predict(held), atol=1e-12)
