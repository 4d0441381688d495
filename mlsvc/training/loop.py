"""The train / validate / select loop: fit candidates on a split, score them, refit the winner on every row."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from mlsvc.resources import AttributeType, ModelType
from mlsvc.training.data import TrainingData
from mlsvc.training.metrics import HIGHER_IS_BETTER, SELECTION_METRIC, classification_metrics, regression_metrics
from mlsvc.training.recipe import build_preprocessor, default_recipe

HOLDOUT_FRACTION = 0.2


@dataclass
class Candidate:
    """One model family with its parameters."""

    name: str
    make: Callable[[ModelType, int], BaseEstimator]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """The selected pipeline refit on all rows, the holdout metrics and the leaderboard of candidates tried."""

    pipeline: Pipeline
    recipe: dict[str, Any]
    metric: str
    metrics: dict[str, float]
    leaderboard: list[dict[str, Any]]


def _boosting(model_type: ModelType, seed: int) -> BaseEstimator:
    if model_type == ModelType.REGRESSION:
        return HistGradientBoostingRegressor(random_state=seed)
    return HistGradientBoostingClassifier(random_state=seed, class_weight="balanced"
                                          if model_type == ModelType.MULTICLASS else None)


def _linear(model_type: ModelType, seed: int) -> BaseEstimator:
    if model_type == ModelType.REGRESSION:
        return Ridge(alpha=1.0)
    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed)


def candidates_for(data: TrainingData) -> list[Candidate]:
    """The families worth trying on this data. Sparse text features rule out the dense boosted trees."""
    has_text = any(a.attributeType == AttributeType.TEXT for a in data.features)
    if has_text:
        return [Candidate("linear", _linear)]
    return [Candidate("hist_gradient_boosting", _boosting)]


def train(data: TrainingData, seed: int, on_progress: Callable[[float], None]) -> Outcome:
    """Validate each candidate on a holdout, select by the model type's metric, refit the winner on every row."""
    recipe = default_recipe(data.features)
    metric = SELECTION_METRIC[data.model_type]
    X_fit, X_hold, y_fit, y_hold = _split(data, seed)
    leaderboard: list[dict[str, Any]] = []
    candidates = candidates_for(data)
    for i, candidate in enumerate(candidates):
        leaderboard.append(_validate(candidate, data, recipe, seed, X_fit, y_fit, X_hold, y_hold))
        on_progress((i + 1) / (len(candidates) + 1))
    best_i = _best(leaderboard, metric)
    best = candidates[best_i]
    pipeline = _pipeline(best, data, recipe, seed).fit(data.X, data.y)
    leaderboard[best_i]["selected"] = True
    return Outcome(pipeline, recipe, metric, dict(leaderboard[best_i]["metrics"]), leaderboard)


def _split(data: TrainingData, seed: int) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    stratify = data.y if data.model_type != ModelType.REGRESSION and _every_class_twice(data.y) else None
    return train_test_split(data.X, data.y, test_size=HOLDOUT_FRACTION, random_state=seed, stratify=stratify)


def _every_class_twice(y: np.ndarray) -> bool:
    return bool(np.bincount(y).min() >= 2)


def _pipeline(candidate: Candidate, data: TrainingData, recipe: dict[str, Any], seed: int) -> Pipeline:
    estimator = candidate.make(data.model_type, seed)
    if candidate.params:
        estimator.set_params(**candidate.params)
    return Pipeline([("features", build_preprocessor(data.features, recipe)), ("model", estimator)])


def _validate(candidate: Candidate, data: TrainingData, recipe: dict[str, Any], seed: int,
              X_fit: Any, y_fit: np.ndarray, X_hold: Any, y_hold: np.ndarray) -> dict[str, Any]:
    pipeline = _pipeline(candidate, data, recipe, seed)
    started = time.perf_counter()
    pipeline.fit(X_fit, y_fit)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    metrics = score(pipeline, data.model_type, X_hold, y_hold, data.classes)
    predict_s = time.perf_counter() - started
    return {"candidate": candidate.name, "params": pipeline.named_steps["model"].get_params(deep=False)
            | candidate.params, "metrics": metrics, "validation_score": metrics[SELECTION_METRIC[data.model_type]],
            "fit_time_s": round(fit_s, 4), "predict_time_s": round(predict_s, 4), "selected": False}


def score(pipeline: Pipeline, model_type: ModelType, X: Any, y: np.ndarray, classes: list[str] | None
          ) -> dict[str, float]:
    if model_type == ModelType.REGRESSION:
        return regression_metrics(y, pipeline.predict(X))
    proba = _full_proba(pipeline, X, len(classes or []))
    return classification_metrics(model_type, y, proba)


def _full_proba(pipeline: Pipeline, X: Any, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, even one absent from the fitting split."""
    proba = pipeline.predict_proba(X)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((proba.shape[0], n_classes))
    full[:, pipeline.classes_] = proba
    return full


def _best(leaderboard: list[dict[str, Any]], metric: str) -> int:
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    scores = [sign * (row["validation_score"] if np.isfinite(row["validation_score"]) else -np.inf)
              for row in leaderboard]
    return int(np.argmax(scores))
