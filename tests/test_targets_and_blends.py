"""Regression targets on the log scale and ensembles blended by weights: a skewed target's transform is chosen by
validation and answers in the target's units; the ensemble's weights are fitted on its members' out-of-fold
predictions; both score the same through the compiled scorer as through the pipeline, and the loop's choices
are the same for the same seed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import VotingRegressor

from mlsvc.prediction.compiled import compile_pipeline
from mlsvc.resources import Attribute, AttributeType, ModelType
from mlsvc.training.candidates import BY_NAME
from mlsvc.training.data import TrainingData, split_holdout
from mlsvc.training.loop import Config, ensemble_weights, fit_quietly, make_pipeline, predict_output, train
from mlsvc.training.metrics import selection_score
from mlsvc.training.recipe import default_recipe
from mlsvc.training.targets import worth_a_log
from tests.test_compiled import FEATURES, RECIPE, TYPES, _assert_close, _columns, _config, _frame, _hostile, _target


def _skewed(n: int = 3000, seed: int = 0) -> TrainingData:
    """Prices of a multiplicative kind: log-normal, the effects of the columns multiplying each other."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(20, 200, n)
    rooms = rng.integers(1, 7, n).astype(float)
    area = rng.choice(["centre", "suburb", "rural"], n)
    log_price = 8 + 0.012 * size + 0.15 * rooms + np.select([area == "centre", area == "suburb"], [0.8, 0.3], 0.0)
    price = np.exp(log_price + rng.normal(0, 0.35, n))
    X = pd.DataFrame({"size": size, "rooms": rooms, "area": pd.Series(area, dtype=object)})
    types = {"size": AttributeType.NUMERIC, "rooms": AttributeType.NUMERIC, "area": AttributeType.CATEGORICAL}
    features = [Attribute(attributeName=c, attributeType=t) for c, t in types.items()]
    return TrainingData(X, price, features, ModelType.REGRESSION, None, None)


def test_a_skewed_target_is_worth_a_log_and_a_symmetric_or_signed_one_is_not() -> None:
    rng = np.random.default_rng(1)
    assert worth_a_log(np.exp(rng.normal(0, 1, 2000)))
    assert not worth_a_log(rng.normal(0, 1, 2000))  # symmetric
    assert not worth_a_log(np.exp(rng.normal(0, 1, 2000)) - 2)  # negative values: log1p does not apply
    assert not worth_a_log(rng.integers(0, 3, 2000).astype(float))  # a few values


def test_a_skewed_regression_picks_its_transform_by_validation_and_answers_in_its_units() -> None:
    data = _skewed()
    fit, held = split_holdout(data, 0.25, 0)
    outcome = train(fit, default_recipe(fit.features), seed=0, budget_s=8, families=["linear"])
    tried = {row["candidate"]: row for row in outcome.leaderboard if row.get("validation_score") is not None}
    on_log = [row for row in tried.values() if row["params"].get("target") == "log1p"]
    as_is = [row for row in tried.values() if row["params"].get("target") is None]
    assert on_log and as_is  # both were validated
    best_log = min(r["validation_score"] for r in on_log)
    best_plain = min(r["validation_score"] for r in as_is)
    assert best_log < best_plain  # on this data the log scale validates better (RMSE, in the target's units) …
    selected = next(row for row in outcome.leaderboard if row.get("selected"))
    assert selected["params"].get("target") == "log1p"  # … and validation chose it
    model = outcome.pipeline.steps[-1][1]
    assert isinstance(model, TransformedTargetRegressor)
    predicted = predict_output(outcome.pipeline, ModelType.REGRESSION, held.X, 0)
    assert predicted.min() > 1000 and abs(np.median(predicted) / np.median(held.y) - 1) < 0.2  # prices, not logs
    rmse = selection_score(ModelType.REGRESSION, held.y, predicted)
    plain_config = Config("linear#0", BY_NAME["linear"], BY_NAME["linear"].defaults(ModelType.REGRESSION))
    as_is_model = fit_quietly(make_pipeline(plain_config, fit, default_recipe(fit.features), 0, 1), fit.X, fit.y)
    plain = selection_score(ModelType.REGRESSION, held.y, predict_output(as_is_model, ModelType.REGRESSION, held.X, 0))
    assert rmse < plain  # and it is better on rows it never saw


@pytest.mark.parametrize("family", ["linear", "hist_gradient_boosting", "random_forest", "knn", "mlp"])
def test_the_compiled_scorer_answers_a_log_scale_model_as_the_pipeline(family: str) -> None:
    X = _frame(1500, 1)
    y = np.exp(_target(X, ModelType.REGRESSION, 2) / 2) * 100  # positive and skewed
    data = TrainingData(X, y, FEATURES, ModelType.REGRESSION, None, None)
    params: dict[str, Any] = {"target": "log1p"}
    if family == "random_forest":
        params["n_estimators"] = 40
    pipeline = fit_quietly(make_pipeline(_config(family, ModelType.REGRESSION, **params), data, RECIPE, 0, 1), X, y)
    assert isinstance(pipeline.steps[-1][1], TransformedTargetRegressor)
    compiled = compile_pipeline(pipeline, ModelType.REGRESSION, 0, list(TYPES))
    held = _hostile(_frame(400, 7), 8)
    _assert_close(compiled.predict(_columns(held), 400), predict_output(pipeline, ModelType.REGRESSION, held, 0))


def test_ensemble_weights_follow_the_out_of_fold_predictions() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 2000)
    good, noisy = y + rng.normal(0, 0.3, 2000), y + rng.normal(0, 1.0, 2000)
    weights, score = ensemble_weights(ModelType.REGRESSION, y, np.asarray([good, noisy]), sign=-1.0)
    assert weights[0] > 0.7 and weights[1] > 0 and sum(weights) == pytest.approx(1.0)
    equal = selection_score(ModelType.REGRESSION, y, (good + noisy) / 2)
    assert score < equal  # RMSE: the fitted blend is better on the rows it was fitted on than the even one
    assert score == pytest.approx(selection_score(ModelType.REGRESSION, y, weights[0] * good + weights[1] * noisy))
    same, _ = ensemble_weights(ModelType.REGRESSION, y, np.asarray([good, good]), sign=-1.0)
    assert same == (0.5, 0.5)  # no evidence, no lean
    labels = (y > 0).astype(int)
    p_good, p_bad = 1 / (1 + np.exp(-3 * good)), rng.uniform(0, 1, 2000)
    weights, _ = ensemble_weights(ModelType.BINARY, labels, np.asarray([p_bad, p_good]), sign=1.0)
    assert weights[1] > weights[0]


def test_a_selected_ensemble_votes_with_the_weights_its_members_out_of_fold_predictions_give() -> None:
    data = _skewed(1500, 3)
    recipe = default_recipe(data.features)
    fixed = [("linear", {"target": "log1p"}), ("hist_gradient_boosting", {"max_iter": 60}), ("knn", {})]
    outcome = train(data, recipe, seed=0, budget_s=20, fixed=fixed)
    ensembles = [row for row in outcome.leaderboard if row["family"] == "soft_voting"]
    assert ensembles and all(len(r["params"]["weights"]) == len(r["params"]["members"]) for r in ensembles)
    if isinstance(outcome.pipeline, VotingRegressor):
        chosen = next(r for r in ensembles if r["selected"])
        assert list(outcome.pipeline.weights) == pytest.approx(chosen["params"]["weights"], abs=1e-4)
        compiled = compile_pipeline(outcome.pipeline, ModelType.REGRESSION, 0, ["size", "rooms", "area"])
        held = _skewed(300, 9).X
        columns = {c: held[c].to_numpy(dtype=object if c == "area" else np.float64) for c in held.columns}
        _assert_close(compiled.predict(columns, 300), predict_output(outcome.pipeline, ModelType.REGRESSION, held, 0))


def test_the_loops_choices_are_the_same_for_the_same_seed() -> None:
    data = _skewed(1200, 5)
    recipe = default_recipe(data.features)
    runs = [train(data, recipe, seed=7, budget_s=60, families=["linear", "knn"], max_configs=8) for _ in range(2)]
    boards = [[(r["candidate"], r["params"], r.get("selected")) for r in run.leaderboard] for run in runs]
    assert boards[0] == boards[1] and runs[0].selected == runs[1].selected
