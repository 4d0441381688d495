"""Evaluations: every figure checked against scikit-learn, the baselines, the threshold table and the edge cases."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from mlsvc.client import choose_threshold
from mlsvc.resources import ModelType
from mlsvc.training.evaluation import (
    evaluate,
    evaluate_binary,
    evaluate_multiclass,
    evaluate_regression,
    summary_metrics,
)
from mlsvc.training.metrics import classification_metrics, regression_metrics
from tests.rest import assert_plain_json

CLASSES = ["no", "yes"]
IRIS = ["setosa", "versicolor", "virginica"]


def binary_data(n: int = 3000, rate: float = 0.3, seed: int = 0, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 1)))
    return y, (np.round(scores, 2) if ties else scores)


# ---------------------------------------------------------------------------------------------- binary


@pytest.mark.parametrize("ties", [False, True])
def test_binary_figures_match_sklearn(ties: bool) -> None:
    y, scores = binary_data(ties=ties)
    result = evaluate_binary(y, scores, CLASSES, threshold=0.4)
    assert_plain_json(result)
    assert result["metric"] == "BinaryAUC" and result["positive_label"] == "yes" and result["rows"] == len(y)
    assert result["value"] == result["auc"] == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
    assert result["average_precision"] == pytest.approx(skm.average_precision_score(y, scores), abs=1e-12)
    assert result["base_rate"] == pytest.approx(y.mean())

    predicted = (scores >= 0.4).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, predicted).ravel()
    at = result["at_threshold"]
    assert (at["tp"], at["fp"], at["tn"], at["fn"]) == (tp, fp, tn, fn)
    assert at["threshold"] == 0.4
    assert at["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert at["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert at["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert at["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert at["false_positive_rate"] == pytest.approx(fp / (fp + tn))


def test_agrees_with_the_selection_metrics_of_training() -> None:
    y, scores = binary_data(seed=3)
    summary = summary_metrics(evaluate(ModelType.BINARY, y, scores, CLASSES, 0.5))
    reference = classification_metrics(ModelType.BINARY, y, np.c_[1 - scores, scores], 0.5)
    for name, value in reference.items():
        assert summary[name] == pytest.approx(value)


def test_threshold_table_covers_every_hundredth_and_matches_sklearn() -> None:
    y, scores = binary_data(n=2000, ties=True, seed=1)
    result = evaluate_binary(y, scores, CLASSES, threshold=0.5)
    table = result["thresholds"]
    assert [row["threshold"] for row in table] == [i / 100 for i in range(101)]
    assert json.dumps(table[57]["threshold"]) == "0.57"
    row_05 = next(row for row in table if row["threshold"] == 0.5)
    assert row_05 == {k: v for k, v in result["at_threshold"].items() if k in row_05}
    for row in table[::7]:
        predicted = (scores >= row["threshold"]).astype(int)
        assert row["recall"] == pytest.approx(skm.recall_score(y, predicted))
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
        assert row["f1"] == pytest.approx(skm.f1_score(y, predicted, zero_division=0))
        assert row["predicted_positive_rate"] == pytest.approx(predicted.mean())
        if predicted.any():
            assert row["precision"] == pytest.approx(skm.precision_score(y, predicted))
        else:
            assert row["precision"] is None  # 0 / 0: nothing predicted positive
    assert table[0]["recall"] == 1.0 and table[0]["predicted_positive_rate"] == 1.0
    recalls = [row["recall"] for row in table]
    assert recalls == sorted(recalls, reverse=True)


def test_curves_are_monotone_short_and_span_the_plot() -> None:
    y, scores = binary_data(n=50_000, rate=0.03, seed=2)
    result = evaluate_binary(y, scores, CLASSES)
    roc, pr = result["roc_curve"], result["pr_curve"]
    assert 50 <= len(roc) <= 101 and 50 <= len(pr) <= 101
    assert (roc[0]["fpr"], roc[0]["tpr"], roc[0]["threshold"]) == (0.0, 0.0, None)
    assert (roc[-1]["fpr"], roc[-1]["tpr"]) == (1.0, 1.0)
    for key in ("fpr", "tpr"):
        assert all(a[key] <= b[key] for a, b in pairwise(roc))
    assert all(a["threshold"] > b["threshold"] for a, b in pairwise(roc[1:]))
    assert all(a["recall"] <= b["recall"] for a, b in pairwise(pr))
    assert all(a["threshold"] > b["threshold"] for a, b in pairwise(pr))
    assert pr[-1]["recall"] == 1.0 and pr[-1]["precision"] == pytest.approx(y.mean())
    # every kept point lies on scikit-learn's curve
    fpr, tpr, thresholds = skm.roc_curve(y, scores, drop_intermediate=False)
    at = {t: (f, r) for f, r, t in zip(fpr, tpr, thresholds, strict=True)}
    for point in roc[1:]:
        assert at[point["threshold"]] == pytest.approx((point["fpr"], point["tpr"]))


def test_small_curves_are_complete() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9])
    result = evaluate_binary(y, scores, CLASSES)
    fpr, tpr, thresholds = skm.roc_curve(y, scores, drop_intermediate=False)
    roc = result["roc_curve"]
    assert [p["fpr"] for p in roc] == pytest.approx(fpr) and [p["tpr"] for p in roc] == pytest.approx(tpr)
    assert [p["threshold"] for p in roc][1:] == pytest.approx(thresholds[1:])
    precision, recall, pr_thresholds = skm.precision_recall_curve(y, scores, drop_intermediate=False)
    pr = result["pr_curve"]  # scikit-learn's order reversed, without its closing (recall 0, precision 1) point
    assert [p["precision"] for p in pr] == pytest.approx(precision[-2::-1])
    assert [p["recall"] for p in pr] == pytest.approx(recall[-2::-1])
    assert [p["threshold"] for p in pr] == pytest.approx(pr_thresholds[::-1])


def test_score_histogram_counts_each_class() -> None:
    y, scores = binary_data(seed=4)
    scores[:3] = [0.0, 1.0, 0.05]
    histogram = evaluate_binary(y, scores, CLASSES)["score_histogram"]
    assert histogram["edges"] == pytest.approx(np.linspace(0, 1, 21))
    assert histogram["positive"] == np.histogram(scores[y == 1], bins=20, range=(0, 1))[0].tolist()
    assert histogram["negative"] == np.histogram(scores[y == 0], bins=20, range=(0, 1))[0].tolist()


def test_choose_threshold_finds_the_lowest_threshold_meeting_the_precision_target() -> None:
    y, scores = binary_data(n=5000, rate=0.1, seed=5)
    table = evaluate_binary(y, scores, CLASSES)["thresholds"]
    chosen = choose_threshold(table, min_precision=0.6)
    assert chosen is not None
    predicted = (scores >= chosen).astype(int)
    assert skm.precision_score(y, predicted) >= 0.6
    for row in table:  # no lower threshold reaches the target
        if row["threshold"] < chosen:
            assert row["precision"] is None or row["precision"] < 0.6
    assert choose_threshold(table, min_precision=1.01) is None

    by_recall = choose_threshold(table, min_recall=0.8)
    assert by_recall is not None
    assert skm.recall_score(y, (scores >= by_recall).astype(int)) >= 0.8
    assert all(row["recall"] < 0.8 for row in table if row["threshold"] > by_recall)

    both = choose_threshold(table, min_precision=0.3, min_recall=0.5)
    row = next(r for r in table if r["threshold"] == both)
    assert row["precision"] >= 0.3 and row["recall"] >= 0.5
    with pytest.raises(ValueError):
        choose_threshold(table)


def test_a_constant_score_is_the_baseline() -> None:
    y, _ = binary_data(seed=6)
    result = evaluate_binary(y, np.full(len(y), 0.3), CLASSES)
    assert_plain_json(result)
    assert result["auc"] == result["baseline"]["value"] == 0.5
    assert result["average_precision"] == pytest.approx(result["baseline"]["average_precision"])
    assert result["average_precision"] == pytest.approx(skm.average_precision_score(y, np.full(len(y), 0.3)))
    assert "the same as the baseline" in result["vs_baseline"]
    assert any("same score" in note for note in result["notes"])


def test_the_sentence_compares_with_the_baseline() -> None:
    y, scores = binary_data(seed=7)
    good = evaluate_binary(y, scores, CLASSES)
    assert good["vs_baseline"].startswith(f"AUC {good['auc']:.2f} vs 0.50") and "better than" in good["vs_baseline"]
    assert "worse than" in evaluate_binary(y, 1 - scores, CLASSES)["vs_baseline"]


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_leaves_auc_undefined_with_a_note(label: int) -> None:
    y = np.full(50, label)
    scores = np.linspace(0, 1, 50)
    result = evaluate_binary(y, scores, CLASSES)
    assert_plain_json(result)
    assert result["auc"] is None and result["value"] is None and result["roc_curve"] == []
    assert f"'{CLASSES[label]}'" in result["notes"][0] and "undefined" in result["vs_baseline"]
    assert result["base_rate"] == label
    if label:
        assert result["average_precision"] == 1.0
    else:
        assert result["average_precision"] is None and result["pr_curve"] == []
        assert all(row["recall"] is None for row in result["thresholds"])
    assert "BinaryAUC" not in summary_metrics(result)


@pytest.mark.parametrize(
    ("y", "scores", "message"),
    [
        ([], [], "empty"),
        ([0, 1], [0.5], "rows"),
        ([0, 2], [0.1, 0.2], "0 \\(negative\\) or 1"),
        ([0, 1], [0.1, float("nan")], "missing"),
        ([[0, 1]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_bad_binary_input_is_refused(y: list[Any], scores: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_binary(np.array(y), np.array(scores), CLASSES)


def test_bad_threshold_or_classes_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        evaluate_binary(np.array([0, 1]), np.array([0.2, 0.8]), CLASSES, threshold=1.5)
    with pytest.raises(ValueError, match="two classes"):
        evaluate_binary(np.array([0, 1]), np.array([0.2, 0.8]), ["a"])


# ---------------------------------------------------------------------------------------------- multiclass


def multiclass_data(n: int = 1500, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_multiclass_figures_match_sklearn() -> None:
    y, proba = multiclass_data()
    result = evaluate_multiclass(y, proba, IRIS)
    assert_plain_json(result)
    predicted = proba.argmax(axis=1)
    assert result["metric"] == "MulticlassAvgFScore"
    assert result["value"] == result["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert result["confusion_matrix"] == {"labels": IRIS, "matrix": skm.confusion_matrix(y, predicted).tolist()}
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, predicted)
    for i, label in enumerate(IRIS):
        figures = result["per_class"][label]
        assert figures["precision"] == pytest.approx(precision[i])
        assert figures["recall"] == pytest.approx(recall[i])
        assert figures["f1"] == pytest.approx(f1[i])
        assert figures["support"] == support[i]
    reference = classification_metrics(ModelType.MULTICLASS, y, proba)
    assert summary_metrics(result) | reference == summary_metrics(result)


def test_multiclass_baseline_predicts_the_most_frequent_class() -> None:
    y, proba = multiclass_data(seed=1)
    result = evaluate_multiclass(y, proba, IRIS)
    majority = int(np.bincount(y).argmax())
    constant = np.full(len(y), majority)
    baseline = result["baseline"]
    assert baseline["label"] == IRIS[majority] and IRIS[majority] in baseline["name"]
    assert baseline["value"] == pytest.approx(skm.f1_score(y, constant, average="macro", zero_division=0))
    assert baseline["accuracy"] == pytest.approx(np.mean(y == majority))
    assert result["vs_baseline"].startswith(f"macro F1 {result['macro_f1']:.2f} vs {baseline['value']:.2f}")
    summary = summary_metrics(result)
    assert summary["baseline_MulticlassAvgFScore"] == baseline["value"]
    assert summary["baseline_accuracy"] == baseline["accuracy"]


def test_classes_absent_from_the_labels() -> None:
    labels = ["a", "b", "c", "d"]
    y, proba3 = multiclass_data(n=600, k=3, seed=2)
    proba = np.c_[proba3, np.zeros(len(y))]
    proba[:20, 3] = 1.0  # 'd' is predicted for a few records but never true
    y = np.where(y == 2, 0, y)  # 'c' never appears in the labels
    result = evaluate_multiclass(y, proba, labels)
    assert_plain_json(result)
    predicted = proba.argmax(axis=1)
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro", zero_division=0))
    assert result["macro_f1"] == pytest.approx(
        classification_metrics(ModelType.MULTICLASS, y, proba)["MulticlassAvgFScore"]
    )
    assert result["per_class"]["c"]["support"] == 0 and result["per_class"]["c"]["recall"] is None
    assert result["per_class"]["d"]["f1"] == 0.0 and result["per_class"]["d"]["recall"] is None
    assert "c, d" in result["notes"][0]
    assert len(result["confusion_matrix"]["matrix"]) == 4


def test_multiclass_constant_prediction_and_one_class() -> None:
    y = np.zeros(30, dtype=int)
    proba = np.tile([0.2, 0.5, 0.3], (30, 1))
    result = evaluate_multiclass(y, proba, IRIS)
    assert_plain_json(result)
    assert result["accuracy"] == 0.0 and result["baseline"]["accuracy"] == 1.0
    assert any("one class ('versicolor')" in note for note in result["notes"])


@pytest.mark.parametrize(
    ("y", "proba", "message"),
    [
        ([], np.zeros((0, 3)), "empty"),
        ([0, 1], np.full((2, 2), 0.5), "one column per class"),
        ([0, 3], np.full((2, 3), 0.3), "0..2"),
        ([0, 1], [[0.1, 0.2, np.nan], [0.3, 0.3, 0.4]], "missing"),
    ],
)
def test_bad_multiclass_input_is_refused(y: list[int], proba: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_multiclass(np.array(y), np.array(proba), IRIS)


# ---------------------------------------------------------------------------------------------- regression


def test_regression_figures_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(50, 10, size=2000)
    predicted = y + rng.normal(0, 4, size=2000)
    result = evaluate_regression(y, predicted)
    assert_plain_json(result)
    assert result["metric"] == "RegressionRMSE"
    assert result["value"] == result["rmse"] == pytest.approx(skm.root_mean_squared_error(y, predicted))
    assert result["mae"] == pytest.approx(skm.mean_absolute_error(y, predicted))
    assert result["r2"] == pytest.approx(skm.r2_score(y, predicted))
    assert result["baseline"]["value"] == pytest.approx(np.std(y, ddof=0))
    assert result["baseline"]["mae"] == pytest.approx(skm.mean_absolute_error(y, np.full_like(y, y.mean())))
    assert result["baseline"]["prediction"] == pytest.approx(y.mean())
    histogram = result["residual_histogram"]
    counts, edges = np.histogram(y - predicted, bins=20)
    assert histogram["counts"] == counts.tolist() and histogram["edges"] == pytest.approx(edges)
    assert result["residual_mean"] == pytest.approx(np.mean(y - predicted))
    assert "lower than the baseline" in result["vs_baseline"]
    reference = regression_metrics(y, predicted)
    summary = summary_metrics(result)
    assert {k: summary[k] for k in reference} == pytest.approx(reference)


def test_predicting_the_mean_is_the_baseline() -> None:
    y = np.array([1.0, 2.0, 4.0, 9.0])
    result = evaluate_regression(y, np.full(4, y.mean()))
    assert result["rmse"] == pytest.approx(result["baseline"]["value"]) and result["r2"] == pytest.approx(0.0)
    assert result["mae"] == pytest.approx(result["baseline"]["mae"])
    assert any("same value" in note for note in result["notes"])
    worse = evaluate_regression(y, y[::-1])
    assert "higher than the baseline" in worse["vs_baseline"] and worse["r2"] < 0


def test_constant_target_leaves_r2_undefined() -> None:
    y = np.full(10, 0.1)
    result = evaluate_regression(y, np.linspace(0, 0.2, 10))
    assert_plain_json(result)
    assert result["r2"] is None and result["baseline"]["value"] == 0.0
    assert "constant" in result["notes"][0] and "constant" in result["vs_baseline"]
    assert_plain_json(evaluate_regression(y, y))
    assert "R2" not in summary_metrics(result)


@pytest.mark.parametrize(
    ("y", "predicted", "message"),
    [([], [], "empty"), ([1.0, 2.0], [1.0], "rows"), ([1.0, np.inf], [1.0, 2.0], "infinite")],
)
def test_bad_regression_input_is_refused(y: list[float], predicted: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_regression(np.array(y), np.array(predicted))


# ---------------------------------------------------------------------------------------------- dispatch


def test_evaluate_dispatches_on_the_model_type() -> None:
    y, scores = binary_data(n=500)
    from_vector = evaluate(ModelType.BINARY, y, scores, CLASSES, 0.3)
    from_matrix = evaluate("BINARY", y, np.c_[1 - scores, scores], CLASSES, 0.3)
    assert from_vector == from_matrix and from_vector["at_threshold"]["threshold"] == 0.3
    ym, proba = multiclass_data(n=300)
    assert evaluate(ModelType.MULTICLASS, ym, proba, IRIS) == evaluate_multiclass(ym, proba, IRIS)
    assert evaluate(ModelType.REGRESSION, scores, scores * 2, None)["model_type"] == "REGRESSION"
    with pytest.raises(ValueError, match="class labels"):
        evaluate(ModelType.BINARY, y, scores, None)


def test_summary_metrics_are_flat_floats() -> None:
    y, scores = binary_data(n=500)
    summary = summary_metrics(evaluate_binary(y, scores, CLASSES))
    assert set(summary) >= {
        "BinaryAUC",
        "baseline_BinaryAUC",
        "average_precision",
        "precision",
        "recall",
        "f1",
        "accuracy",
        "false_positive_rate",
        "threshold",
    }
    assert all(type(v) is float for v in summary.values())
    json.dumps(summary, allow_nan=False)
