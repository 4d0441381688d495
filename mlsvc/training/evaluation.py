"""Evaluation insights of a model's predictions on labelled data, with a trivial baseline for comparison.

Pure functions over numpy arrays. Every result is a plain JSON-ready dict (``json.dumps(result,
allow_nan=False)`` works): floats, ints, strings, lists and dicts only; a figure that is undefined
(0 / 0, a single class, a constant target) is ``None``, and ``notes`` says why.

Binary scores are P(positive); a record is predicted positive when its score is ``>= threshold``,
the same rule the scorer applies with a model's ``score_threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlsvc.resources import ModelType
from mlsvc.training.metrics import SELECTION_METRIC

MAX_CURVE_POINTS = 101
HISTOGRAM_BINS = 20
THRESHOLDS = np.arange(101) / 100  # 0.00, 0.01, …, 1.00 (each the nearest double to its decimal)


# ---------------------------------------------------------------------------------------------- shared


def _clean(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made plain, and NaN / ±inf made ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """Element-wise ``numerator / denominator`` as floats, NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _vector(values: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: nothing to evaluate")
    try:
        array = array.astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if dtype is np.float64 and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds {int(np.sum(~np.isfinite(array)))} missing or infinite values")
    return array


def _same_length(y: np.ndarray, other: np.ndarray, name: str) -> None:
    if len(y) != len(other):
        raise ValueError(f"{name} has {len(other)} rows but the labels have {len(y)}")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "undefined" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _gfmt(value: float) -> str:
    return f"{value:.4g}"


def _downsample(*curves: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along the path drawn by ``curves``.

    Each curve is monotone over the points, so any subset keeps the order and the monotonicity;
    the first and last points are always kept.
    """
    m = len(curves[0])
    if m <= max_points:
        return np.arange(m)
    steps = sum(np.abs(np.diff(c)) for c in curves)
    length = np.concatenate([[0.0], np.cumsum(steps)])
    if length[-1] > 0:
        picks = np.searchsorted(length, np.linspace(0.0, length[-1], max_points - 1), side="left")
    else:
        picks = np.linspace(0, m - 1, max_points - 1).round().astype(np.int64)
    return np.unique(np.concatenate([[0], np.minimum(picks, m - 1), [m - 1]]))


# ---------------------------------------------------------------------------------------------- binary


def _check_binary(y: Any, scores: Any, classes: Sequence[str], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    if len(classes) != 2:
        raise ValueError(f"a binary evaluation needs two classes (negative, positive), got {list(classes)}")
    try:
        valid = 0.0 <= float(threshold) <= 1.0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"threshold must be a number between 0 and 1, got {threshold!r}")
    labels = np.asarray(y)
    if labels.ndim == 1 and labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("binary labels must be 0 (negative) or 1 (positive)")
    labels = _vector(labels, "labels", np.int64)
    scores = _vector(scores, "scores")
    _same_length(labels, scores, "scores")
    return labels, scores


def _sort(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores ascending and the labels in the same order: the one sort every binary figure is read from."""
    order = np.argsort(scores)
    return scores[order], y[order]


def _distinct_threshold_counts(s: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when predicting positive at ``score >= c``, for each distinct score c, descending.

    ``s`` and ``labels`` are sorted by score ascending.
    """
    s, labels = s[::-1], labels[::-1]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(labels)[last]
    fps = (last + 1) - tps
    return tps, fps, s[last]


def _threshold_rows(s: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> list[dict[str, Any]]:
    """Confusion counts and rates at each threshold, from the sorted scores and cumulative counts of positives."""
    positives_below = np.concatenate([[0], np.cumsum(labels)])
    n, p = len(s), int(positives_below[-1])
    cut = np.searchsorted(s, thresholds, side="left")  # records below the threshold are predicted negative
    tp = p - positives_below[cut]
    fp = (n - cut) - tp
    fn = p - tp
    tn = (n - p) - fp
    columns = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "accuracy": _ratio(tp + tn, n),
        "false_positive_rate": _ratio(fp, fp + tn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "predicted_positive_rate": _ratio(tp + fp, n),
    }
    rows = []
    for i, t in enumerate(thresholds.tolist()):
        row: dict[str, Any] = {"threshold": t}
        row.update({name: float(col[i]) for name, col in columns.items()})
        row.update(tp=int(tp[i]), fp=int(fp[i]), tn=int(tn[i]), fn=int(fn[i]))
        rows.append(row)
    return rows


def _roc_curve(tps: np.ndarray, fps: np.ndarray, cuts: np.ndarray) -> tuple[list[dict[str, Any]], float]:
    """The ROC points (downsampled) from (0, 0) to (1, 1), and the exact AUC over every point."""
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    thresholds = np.r_[np.inf, cuts]  # the first point predicts nothing positive: threshold None
    auc = float(np.trapezoid(tpr, fpr))
    keep = _downsample(fpr, tpr)
    points = [
        {"fpr": f, "tpr": t, "threshold": h}
        for f, t, h in zip(fpr[keep].tolist(), tpr[keep].tolist(), thresholds[keep].tolist(), strict=True)
    ]
    return points, auc


def _pr_curve(tps: np.ndarray, fps: np.ndarray, cuts: np.ndarray) -> tuple[list[dict[str, Any]], float]:
    """The precision-recall points (downsampled, recall ascending) and the average precision over every point."""
    n = tps[-1] + fps[-1]
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    keep = _downsample(recall, (tps + fps) / n)
    points = [
        {"precision": p, "recall": r, "threshold": h}
        for p, r, h in zip(precision[keep].tolist(), recall[keep].tolist(), cuts[keep].tolist(), strict=True)
    ]
    return points, average_precision


def _score_histogram(y: np.ndarray, scores: np.ndarray) -> dict[str, list[Any]]:
    """Counts of scores per class in 20 equal bins over [0, 1] (the last bin closed; scores clipped to [0, 1])."""
    bins = np.minimum((np.clip(scores, 0.0, 1.0) * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    positive = np.bincount(bins[y == 1], minlength=HISTOGRAM_BINS)
    negative = np.bincount(bins[y == 0], minlength=HISTOGRAM_BINS)
    edges = (np.arange(HISTOGRAM_BINS + 1) / HISTOGRAM_BINS).tolist()
    return {"edges": edges, "positive": positive.tolist(), "negative": negative.tolist()}


def _binary_sentence(auc: float | None, classes: Sequence[str], positives: int) -> str:
    if auc is None:
        only = classes[1] if positives else classes[0]
        return (
            f"AUC is undefined: every label is '{only}', so no model can be compared with the baseline "
            "(0.50 for a model that scores every record alike)."
        )
    verdict = (
        "better than"
        if auc > 0.5
        else "the same as"
        if auc == 0.5
        else "worse than (its scores may rank the classes the wrong way round)"
    )
    return f"AUC {auc:.2f} vs 0.50 for a model that scores every record alike: {verdict} the baseline."


def evaluate_binary(
    y: np.ndarray, scores: np.ndarray, classes: Sequence[str], threshold: float = 0.5
) -> dict[str, Any]:
    """Insights of P(positive) ``scores`` against 0/1 labels ``y``; ``classes`` is [negative, positive] label.

    AUC, average precision, ROC and precision-recall curves (at most 101 points each), the score
    histogram per class, the confusion counts at ``threshold`` and a table of precision / recall /
    accuracy / false-positive rate / F1 at thresholds 0.00, 0.01, …, 1.00 to pick a threshold from
    (see ``mlsvc.client.choose_threshold``). The baseline scores every record alike (AUC 0.5).
    """
    y, scores = _check_binary(y, scores, classes, threshold)
    n, positives = len(y), int(y.sum())
    notes: list[str] = []
    auc: float | None = None
    average_precision: float | None = None
    roc: list[dict[str, Any]] = []
    pr: list[dict[str, Any]] = []
    sorted_scores, sorted_labels = _sort(y, scores)
    tps, fps, cuts = _distinct_threshold_counts(sorted_scores, sorted_labels)
    if positives:
        pr, average_precision = _pr_curve(tps, fps, cuts)
    if 0 < positives < n:
        roc, auc = _roc_curve(tps, fps, cuts)
    else:
        present = classes[1] if positives else classes[0]
        notes.append(
            f"only one class ('{present}') in the labels: AUC and the ROC curve are undefined"
            + ("" if positives else ", and so are recall, average precision and the precision-recall curve")
        )
    if sorted_scores[0] == sorted_scores[-1]:
        notes.append("every record has the same score: the model does not rank records at all")
    table = _threshold_rows(sorted_scores, sorted_labels, np.r_[THRESHOLDS, float(threshold)])
    at_threshold = table.pop()
    return _clean(
        {
            "model_type": ModelType.BINARY.value,
            "metric": SELECTION_METRIC[ModelType.BINARY],
            "value": auc,
            "baseline": {
                "name": "constant score (predicts the base rate)",
                "value": 0.5,
                "average_precision": positives / n,
            },
            "vs_baseline": _binary_sentence(auc, classes, positives),
            "rows": n,
            "positives": positives,
            "negatives": n - positives,
            "positive_label": classes[1],
            "negative_label": classes[0],
            "base_rate": positives / n,
            "auc": auc,
            "average_precision": average_precision,
            "at_threshold": at_threshold,
            "roc_curve": roc,
            "pr_curve": pr,
            "score_histogram": _score_histogram(y, scores),
            "thresholds": [{k: row[k] for k in _TABLE_KEYS} for row in table],
            "notes": notes,
        }
    )


_TABLE_KEYS = ("threshold", "precision", "recall", "accuracy", "false_positive_rate", "f1", "predicted_positive_rate")


# ---------------------------------------------------------------------------------------------- multiclass


def _confusion(y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + predicted, minlength=k * k).reshape(k, k)


def _per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, support),
        "f1": _ratio(2 * tp, support + predicted),
        "support": support,
    }


def _macro_f1(matrix: np.ndarray) -> float:
    """Macro F1 over the classes that appear in the labels or the predictions (as scikit-learn averages)."""
    f1 = _per_class(matrix)["f1"]
    return float(np.nanmean(f1))  # NaN only for a class neither present nor predicted


def _check_multiclass(y: Any, proba: Any, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    labels = _vector(y, "labels", np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(f"probabilities must have one column per class ({len(classes)}), got shape {proba.shape}")
    if len(classes) < 2:
        raise ValueError(f"a multiclass evaluation needs at least two classes, got {list(classes)}")
    _same_length(labels, proba, "probabilities")
    if not np.all(np.isfinite(proba)):
        raise ValueError("probabilities hold missing or infinite values")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"label codes must lie in 0..{len(classes) - 1}")
    return labels, proba


def evaluate_multiclass(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Insights of class probabilities ``proba`` (n × k, columns in ``classes`` order) against class codes ``y``.

    Macro F1 (the selection metric), accuracy, precision / recall / F1 / support per class, and the
    confusion matrix (rows the true class, columns the predicted one). The baseline always predicts
    the most frequent class in ``y``.
    """
    y, proba = _check_multiclass(y, proba, classes)
    k, n = len(classes), len(y)
    predicted = proba.argmax(axis=1)
    matrix = _confusion(y, predicted, k)
    per_class = _per_class(matrix)
    macro_f1, accuracy = _macro_f1(matrix), float(np.trace(matrix) / n)
    majority = int(np.bincount(y, minlength=k).argmax())
    baseline_matrix = _confusion(y, np.full(n, majority), k)
    baseline_f1, baseline_accuracy = _macro_f1(baseline_matrix), float(baseline_matrix[majority, majority] / n)
    notes = []
    absent = [classes[i] for i in range(k) if per_class["support"][i] == 0]
    if absent:
        notes.append(
            f"classes absent from the labels: {', '.join(absent)}; their recall is undefined, and "
            "macro F1 averages only the classes that are in the labels or predicted"
        )
    if len(np.unique(predicted)) == 1:
        notes.append(f"the model predicts one class ('{classes[int(predicted[0])]}') for every record")
    return _clean(
        {
            "model_type": ModelType.MULTICLASS.value,
            "metric": SELECTION_METRIC[ModelType.MULTICLASS],
            "value": macro_f1,
            "baseline": {
                "name": f"always predicts the most frequent class ('{classes[majority]}')",
                "value": baseline_f1,
                "accuracy": baseline_accuracy,
                "label": classes[majority],
            },
            "vs_baseline": (
                f"macro F1 {macro_f1:.2f} vs {baseline_f1:.2f} for always predicting the most frequent "
                f"class ('{classes[majority]}'); accuracy {accuracy:.2f} vs {baseline_accuracy:.2f}."
            ),
            "rows": n,
            "macro_f1": macro_f1,
            "accuracy": accuracy,
            "per_class": {
                label: {name: per_class[name][i] for name in ("precision", "recall", "f1", "support")}
                for i, label in enumerate(classes)
            },
            "confusion_matrix": {"labels": list(classes), "matrix": matrix},
            "notes": notes,
        }
    )


# ---------------------------------------------------------------------------------------------- regression


def _regression_sentence(rmse: float, baseline_rmse: float, mean: float) -> str:
    head = f"RMSE {_gfmt(rmse)} vs {_gfmt(baseline_rmse)} for always predicting the mean ({_gfmt(mean)})"
    if baseline_rmse == 0:
        return head + ": the target is constant, so the mean already predicts it exactly."
    change = 1 - rmse / baseline_rmse
    if change >= 0:
        return head + f": {change:.0%} lower than the baseline."
    return head + f": {-change:.0%} higher than the baseline (worse than predicting the mean)."


SCATTER_POINTS = 500


def evaluate_regression(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Insights of ``predicted`` values against true values ``y``.

    RMSE (the selection metric), MAE, R² and a 20-bin histogram of the residuals (actual − predicted:
    positive where the model predicts too low). The baseline always predicts the mean of ``y``, so
    its RMSE is the standard deviation of ``y`` (ddof 0).
    """
    y = _vector(y, "labels")
    predicted = _vector(predicted, "predictions")
    _same_length(y, predicted, "predictions")
    n = len(y)
    residuals = y - predicted
    constant = bool(np.all(y == y[0]))
    mean = float(y[0]) if constant else float(y.mean())
    rmse, mae = float(np.sqrt(np.mean(residuals**2))), float(np.mean(np.abs(residuals)))
    baseline_rmse, baseline_mae = float(np.sqrt(np.mean((y - mean) ** 2))), float(np.mean(np.abs(y - mean)))
    notes = []
    r2: float | None = None if constant else 1 - float(np.sum(residuals**2) / np.sum((y - mean) ** 2))
    if constant:
        notes.append("the target is constant: R² is undefined")
    if np.all(predicted == predicted[0]):
        notes.append("the model predicts the same value for every record")
    counts, edges = np.histogram(residuals, bins=HISTOGRAM_BINS)
    return _clean(
        {
            "model_type": ModelType.REGRESSION.value,
            "metric": SELECTION_METRIC[ModelType.REGRESSION],
            "value": rmse,
            "baseline": {
                "name": "always predicts the mean of the target",
                "value": baseline_rmse,
                "mae": baseline_mae,
                "prediction": mean,
            },
            "vs_baseline": _regression_sentence(rmse, baseline_rmse, mean),
            "rows": n,
            "rmse": rmse,
            "mae": mae,
            "r2": r2,
            "target_mean": mean,
            "residual_mean": float(residuals.mean()),
            "residual_histogram": {"edges": edges, "counts": counts},
            "predicted_vs_actual": _scatter_sample(y, predicted),
            "notes": notes,
        }
    )


def _scatter_sample(y: np.ndarray, predicted: np.ndarray) -> list[dict[str, float]]:
    """Up to SCATTER_POINTS rows, evenly spaced over the rows as they came (so the same rows every time), for a
    predicted-against-actual chart."""
    if not len(y):
        return []
    index = np.unique(np.linspace(0, len(y) - 1, num=min(len(y), SCATTER_POINTS)).astype(int))
    return [{"actual": float(y[i]), "predicted": float(predicted[i])} for i in index]


# ---------------------------------------------------------------------------------------------- dispatch


def evaluate(
    model_type: ModelType | str,
    y: np.ndarray,
    output: np.ndarray,
    classes: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The evaluation for ``model_type``: ``output`` is P(positive) for BINARY (a two-column probability
    matrix is also taken), the probability matrix for MULTICLASS, the predicted values for REGRESSION."""
    model_type = ModelType(model_type)
    if model_type == ModelType.REGRESSION:
        return evaluate_regression(y, output)
    if classes is None:
        raise ValueError(f"a {model_type.value} evaluation needs the class labels")
    if model_type == ModelType.BINARY:
        scores = np.asarray(output)
        if scores.ndim == 2 and scores.shape[1] == 2:
            scores = scores[:, 1]
        return evaluate_binary(y, scores, classes, threshold)
    return evaluate_multiclass(y, output, classes)


_SUMMARY_KEYS = {
    ModelType.BINARY: {"auc": "BinaryAUC", "average_precision": "average_precision", "base_rate": "base_rate"},
    ModelType.MULTICLASS: {"macro_f1": "MulticlassAvgFScore", "accuracy": "accuracy"},
    ModelType.REGRESSION: {"rmse": "RegressionRMSE", "mae": "MAE", "r2": "R2"},
}
_SUMMARY_BASELINE = {
    ModelType.BINARY: {"value": "baseline_BinaryAUC", "average_precision": "baseline_average_precision"},
    ModelType.MULTICLASS: {"value": "baseline_MulticlassAvgFScore", "accuracy": "baseline_accuracy"},
    ModelType.REGRESSION: {"value": "baseline_RMSE", "mae": "baseline_MAE"},
}
_SUMMARY_AT_THRESHOLD = ("threshold", "precision", "recall", "accuracy", "false_positive_rate", "f1")


def summary_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """The headline figures of an evaluation, flat (the names :mod:`mlsvc.training.metrics` uses).

    A figure that is undefined (None) is left out.
    """
    model_type = ModelType(evaluation["model_type"])
    pairs = [(name, evaluation.get(key)) for key, name in _SUMMARY_KEYS[model_type].items()]
    pairs += [(name, evaluation["baseline"].get(key)) for key, name in _SUMMARY_BASELINE[model_type].items()]
    if model_type == ModelType.BINARY:
        pairs += [(key, evaluation["at_threshold"].get(key)) for key in _SUMMARY_AT_THRESHOLD]
    return {name: float(value) for name, value in pairs if value is not None}
