"""Model quality metrics, with Amazon ML's selection metric for each model type."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from mlsvc.resources import ModelType

SELECTION_METRIC = {
    ModelType.BINARY: "BinaryAUC",
    ModelType.MULTICLASS: "MulticlassAvgFScore",
    ModelType.REGRESSION: "RegressionRMSE",
}
HIGHER_IS_BETTER = {"BinaryAUC": True, "MulticlassAvgFScore": True, "RegressionRMSE": False}


def classification_metrics(
    model_type: ModelType, y: np.ndarray, proba: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Metrics of class-probability predictions ``proba`` (one column per class code) against codes ``y``."""
    if model_type == ModelType.BINARY:
        predicted = (proba[:, 1] >= threshold).astype(int)
        auc = float(roc_auc_score(y, proba[:, 1])) if len(np.unique(y)) == 2 else float("nan")
        return {
            "BinaryAUC": auc,
            "accuracy": float(accuracy_score(y, predicted)),
            "f1": float(f1_score(y, predicted, zero_division=0)),
        }
    predicted = proba.argmax(axis=1)
    return {
        "MulticlassAvgFScore": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, predicted)),
    }


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    baseline = np.full_like(y, float(np.mean(y)), dtype=np.float64)
    return {
        "RegressionRMSE": float(root_mean_squared_error(y, predicted)),
        "MAE": float(mean_absolute_error(y, predicted)),
        "R2": float(r2_score(y, predicted)),
        "baseline_RMSE": float(root_mean_squared_error(y, baseline)),
    }


def selection_score(model_type: ModelType, y: np.ndarray, output: np.ndarray) -> float:
    """The selection metric of ``output`` (P(positive), class probabilities or values) against ``y``."""
    if model_type == ModelType.BINARY:
        return float(roc_auc_score(y, output)) if len(np.unique(y)) == 2 else float("nan")
    if model_type == ModelType.MULTICLASS:
        return float(f1_score(y, np.asarray(output).argmax(axis=1), average="macro", zero_division=0))
    return float(root_mean_squared_error(y, output))
