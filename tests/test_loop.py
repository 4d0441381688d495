"""The train / validate / select loop on real data in memory: types, families, recipes, ensembles, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris

from mlsvc.errors import MlsvcError
from mlsvc.resources import Attribute, AttributeType, ModelType
from mlsvc.training.candidates import BY_NAME
from mlsvc.training.data import TrainingData, _encode_target, split_holdout
from mlsvc.training.loop import Config, Option, Search, Trial, default_budget_s, predict_output, select, train
from mlsvc.training.metrics import selection_score
from mlsvc.training.recipe import default_recipe, merge_recipe


def _data(
    X: pd.DataFrame,
    raw_y: pd.Series,
    types: dict[str, AttributeType],
    target_type: AttributeType,
    model_type: ModelType | None = None,
) -> TrainingData:
    features = [Attribute(attributeName=c, attributeType=types[c]) for c in X.columns]
    return _encode_target(
        X, raw_y.astype(str), Attribute(attributeName="y", attributeType=target_type), model_type, features
    )


def _churnish(n: int = 1500, seed: int = 0, positive_rate: float = 0.3) -> TrainingData:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], n)
    calls = rng.poisson(2, n).astype(float)
    logit = -0.05 * tenure + 0.6 * calls + np.where(plan == "basic", 0.8, 0.0)
    logit += np.log(positive_rate / (1 - positive_rate)) - np.mean(logit)
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    X = pd.DataFrame({"tenure": tenure, "plan": pd.Series(plan, dtype=object), "calls": calls})
    X.loc[rng.random(n) < 0.05, "tenure"] = np.nan
    types = {"tenure": AttributeType.NUMERIC, "plan": AttributeType.CATEGORICAL, "calls": AttributeType.NUMERIC}
    return _data(X, pd.Series(churned), types, AttributeType.BINARY)


@pytest.mark.slow
def test_binary_search_tries_several_families_and_beats_chance() -> None:
    data = _churnish()
    fit, hold = split_holdout(data, 0.2, 0)
    outcome = train(fit, default_recipe(fit.features), seed=0, budget_s=6)
    families = {row["family"] for row in outcome.leaderboard}
    assert {"linear", "hist_gradient_boosting", "random_forest"} <= families
    auc = selection_score(ModelType.BINARY, hold.y, predict_output(outcome.pipeline, ModelType.BINARY, hold.X, 2))
    assert auc > 0.7
    assert outcome.metric == "BinaryAUC" and outcome.refit_s > 0  # the winner was refit on every row


@pytest.mark.slow
def test_multiclass_on_iris_and_regression_on_diabetes() -> None:
    iris = load_iris(as_frame=True)
    X = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    labels = pd.Series(np.array(iris.target_names)[iris.target])
    data = _data(X, labels, dict.fromkeys(X.columns, AttributeType.NUMERIC), AttributeType.CATEGORICAL)
    assert data.model_type == ModelType.MULTICLASS and data.classes == ["setosa", "versicolor", "virginica"]
    outcome = train(data, default_recipe(data.features), seed=0, budget_s=4, families=["linear", "knn"])
    assert outcome.metric == "MulticlassAvgFScore" and outcome.validation_score > 0.85

    diabetes = load_diabetes(as_frame=True)
    data = _data(
        diabetes.data,
        diabetes.target,
        dict.fromkeys(diabetes.data.columns, AttributeType.NUMERIC),
        AttributeType.NUMERIC,
    )
    assert data.model_type == ModelType.REGRESSION
    outcome = train(data, default_recipe(data.features), seed=0, budget_s=4, families=["linear"])
    baseline = float(np.std(data.y))
    assert outcome.metric == "RegressionRMSE" and outcome.validation_score < 0.85 * baseline


def test_same_data_seed_and_budget_give_the_same_leaderboard() -> None:
    data = _churnish(600)

    def board() -> list[tuple[str, float | None]]:
        # A budget the search cannot exhaust, so no wall-clock cut differs between the runs.
        outcome = train(
            data, default_recipe(data.features), seed=3, budget_s=120, families=["linear", "knn"], max_configs=8
        )
        return [(row["candidate"], row["validation_score"]) for row in outcome.leaderboard]

    assert board() == board()


def test_small_and_large_data_are_validated_differently() -> None:
    small = Search(_churnish(500), {}, seed=0, budget_s=1, n_jobs=1, families=None, on_progress=lambda f, m: None)
    assert small.rung_rows()[-1] == 500 and small.validator.folds(500, last=True) == 5
    assert {f.name for f in small.families} >= {"knn", "mlp"}
    big = Search(_churnish(30_000), {}, seed=0, budget_s=1, n_jobs=1, families=None, on_progress=lambda f, m: None)
    assert big.validator.folds(30_000, last=True) == 1  # one holdout above the k-fold limit
    assert "knn" not in {f.name for f in big.families}
    assert big.rung_rows() == [3_333, 9_999, 30_000]  # no near-duplicate last rung


def test_imbalanced_classes_are_stratified_and_weighted() -> None:
    data = _churnish(2000, positive_rate=0.05)
    fit, hold = split_holdout(data, 0.2, 0)
    assert abs(hold.y.mean() - data.y.mean()) < 0.01 and abs(fit.y.mean() - data.y.mean()) < 0.01
    search = Search(
        fit, default_recipe(fit.features), seed=0, budget_s=1, n_jobs=1, families=None, on_progress=lambda f, m: None
    )
    weights = {c.params.get("class_weight") for c in search.configs() if c.family.name != "knn"}
    assert {"balanced", None} <= weights or {"balanced_subsample", None} <= weights


def test_an_ensemble_is_scored_on_the_finalists_out_of_fold_predictions() -> None:
    data = _churnish(600)
    outcome = train(
        data,
        default_recipe(data.features),
        seed=0,
        budget_s=60,
        families=["linear", "extra_trees", "knn"],
        max_configs=6,
    )
    ensembles = [row for row in outcome.leaderboard if row["candidate"] == "ensemble"]
    # every two or three of the three families' best: four ensembles, each scored without a fit of its own
    assert sorted(len(row["params"]["members"]) for row in ensembles) == [2, 2, 2, 3]
    options = [row for row in outcome.leaderboard if row["status"] == "finalist"]
    selected = next(row for row in outcome.leaderboard if row["selected"])
    best = max(row["validation_score"] for row in options)
    assert selected in options
    if selected["validation_score"] != best:
        assert any("slower than" in note for note in outcome.notes)  # passed over for its cost, and told so


def _option(score: float, s_per_row: float, *families: str) -> Option:
    trials = tuple(Trial(Config(f"{f}#0", BY_NAME[f], {}), 0, 1000, score, 0.0, 0.1, 0.01) for f in families)
    return Option(trials, score, s_per_row)


def test_a_model_much_slower_to_predict_must_validate_clearly_better() -> None:
    linear = _option(0.8440, 2e-6, "linear")
    mlp = _option(0.8420, 5e-6, "mlp")
    pair = _option(0.8452, 7e-6, "linear", "mlp")  # 3.5x linear: any gain pays for it
    with_knn = _option(0.8460, 60e-6, "linear", "mlp", "knn")  # 30x linear, 0.09 % better than the pair
    notes: list[str] = []
    assert select([linear, mlp, pair, with_knn], 1.0, notes) is pair
    assert notes and "ensemble of linear#0, mlp#0, knn#0 validated 0.8460" in notes[0] and "linear#0, mlp#0" in notes[0]
    clearly = _option(0.8600, 60e-6, "linear", "mlp", "knn")  # 1.7 % better than the pair: worth its cost
    assert select([linear, mlp, pair, clearly], 1.0) is clearly
    assert select([linear], 1.0) is linear


def test_the_cost_rule_reads_a_lower_rmse_as_better() -> None:
    cheap = _option(10.00, 1e-6, "linear")
    slow_and_close = _option(9.99, 50e-6, "knn")  # 0.1 % lower RMSE
    slow_and_better = _option(9.50, 50e-6, "knn")  # 5 % lower
    assert select([cheap, slow_and_close], -1.0) is cheap
    assert select([cheap, slow_and_better], -1.0) is slow_and_better


@pytest.mark.slow
def test_recipes_crosses_target_encoding_and_text() -> None:
    rng = np.random.default_rng(1)
    n = 1200
    city = pd.Series([f"city{i}" for i in rng.integers(0, 300, n)], dtype=object)
    words = np.array(["great", "slow", "refund", "love", "broken", "fast", "cheap", "support"])
    review = pd.Series([" ".join(rng.choice(words, 5)) for _ in range(n)], dtype=object)
    good = review.str.contains("great|love|fast").to_numpy()
    X = pd.DataFrame(
        {
            "city": city,
            "review": review,
            "amount": rng.normal(size=n),
            "plan": pd.Series(rng.choice(["a", "b"], n), dtype=object),
        }
    )
    y = pd.Series(np.where(good, "yes", "no"))
    types = {
        "city": AttributeType.CATEGORICAL,
        "review": AttributeType.TEXT,
        "amount": AttributeType.NUMERIC,
        "plan": AttributeType.CATEGORICAL,
    }
    data = _data(X, y, types, AttributeType.BINARY)
    recipe = merge_recipe(
        default_recipe(data.features, {"city": 300}), {"crosses": [["plan", "amount"]]}, data.features
    )
    assert recipe["attributes"]["city"] == "target_encode" and recipe["attributes"]["review"] == "tfidf_words_1_2"
    outcome = train(data, recipe, seed=0, budget_s=8, families=["linear", "hist_gradient_boosting"])
    assert outcome.validation_score > 0.9  # the text decides the label


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"attributes": {"nope": "drop"}}, "not a feature"),
        ({"attributes": {"plan": "quantile_bins"}}, "does not apply"),
        ({"crosses": [["plan", "plan"]]}, "two different"),
        ({"colour": 1}, "unknown keys"),
        ({"attributes": {"tenure": "drop", "plan": "drop", "calls": "drop"}}, "drops every attribute"),
    ],
)
def test_bad_recipes_are_refused_with_a_reason(given: dict, words: str) -> None:
    data = _churnish(50)
    with pytest.raises(MlsvcError) as info:
        merge_recipe(default_recipe(data.features), given, data.features)
    assert words in info.value.message


def test_the_default_budget_grows_with_the_data() -> None:
    assert default_budget_s(1000, 10) == 30.0
    assert 30 < default_budget_s(200_000, 20) < 900
    assert default_budget_s(10_000_000, 50) == 900.0


def test_a_value_missing_only_at_prediction_is_scored_by_every_recipe() -> None:
    from mlsvc.training.candidates import BY_NAME
    from mlsvc.training.loop import Config, fit_quietly, make_pipeline

    data = _churnish(400)
    data.X["tenure"] = data.X["tenure"].fillna(10.0)  # no missing tenure when fitting
    recipe = default_recipe(data.features)
    for numeric in ("impute_median_scale", "quantile_bins"):
        config = Config("linear#x", BY_NAME["linear"], {"numeric": numeric, "C": 1.0, "class_weight": None})
        pipeline = fit_quietly(make_pipeline(config, data, recipe, 0, 1), data.X, data.y)
        row = data.X.head(1).copy()
        row["tenure"] = np.nan
        assert predict_output(pipeline, ModelType.BINARY, row, 2).shape == (1,)


def test_a_config_the_budget_kept_off_the_last_rung_still_competes_when_it_validated_better() -> None:
    from mlsvc.training.loop import _final_trials

    def trial(key: str, family: str, rung: int, score: float) -> Trial:
        config = Config(key, BY_NAME[family], BY_NAME[family].defaults(ModelType.REGRESSION))
        return Trial(config, rung, 1000 * 3**rung, score, 0.0, 0.1, 0.01)

    # RMSE: lower is better (sign -1). Boosting stopped at rung 2 with 635; only linear reached rung 3, at 1105.
    trials = [
        trial("linear#0", "linear", 0, 1300.0),
        trial("hist_gradient_boosting#0", "hist_gradient_boosting", 0, 800.0),
        trial("linear#0", "linear", 1, 1200.0),
        trial("hist_gradient_boosting#0", "hist_gradient_boosting", 1, 635.0),
        trial("random_forest#0", "random_forest", 1, 1250.0),
        trial("linear#0", "linear", 2, 1105.0),
    ]
    final = _final_trials(trials, sign=-1.0)
    assert [(t.config.key, t.rung) for t in final] == [("linear#0", 2), ("hist_gradient_boosting#0", 1)]
    at_rung_2 = _final_trials(trials[:5], sign=-1.0)  # nothing reached rung 3: the rung-2 trials, nothing else
    assert [t.config.key for t in at_rung_2] == ["linear#0", "hist_gradient_boosting#0", "random_forest#0"]
    # Two families at the last rung: their validations on the most rows decide, not a lucky smaller holdout.
    both = [*trials, trial("random_forest#0", "random_forest", 2, 1150.0)]
    assert [t.config.key for t in _final_trials(both, sign=-1.0)] == ["linear#0", "random_forest#0"]
