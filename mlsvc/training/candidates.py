"""Candidate model families: how each is built, its good defaults, and the space its hyperparameters are drawn from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor

from mlsvc.resources import ModelType

# k-NN and the MLP pay off on small tables and cost too much on large ones.
SMALL_DATA_ROWS = 20_000

Params = dict[str, Any]


@dataclass(frozen=True)
class Family:
    """One kind of model: ``build`` makes an estimator from parameters, ``sample`` draws parameters."""

    name: str
    build: Callable[[ModelType, Params, int, int], BaseEstimator]
    defaults: Callable[[ModelType], Params]
    sample: Callable[[np.random.Generator, ModelType], Params]
    dense_input: bool
    linear: bool = False
    small_data_only: bool = False
    # How many sampled configurations to try after the defaults, relative to the other families.
    weight: int = 2
    # Seconds per fitted row relative to the linear family's with the defaults, roughly (measured on 1,000 and 4,000
    # rows of the churn and fraud examples): what a family's first fit is guessed to cost before it has been timed.
    relative_cost: float = 1.0
    # Parameters a caller may set that neither the defaults nor the search ever change.
    options: tuple[str, ...] = ()

    def parameter_names(self) -> set[str]:
        """Every parameter a caller's candidate may give this family."""
        kinds = (ModelType.BINARY, ModelType.MULTICLASS, ModelType.REGRESSION)
        # "target": "log1p" learns a regression target on the log scale (mlsvc.training.targets).
        return {name for kind in kinds for name in self.defaults(kind)} | set(self.options) | {"target"}


def _pick(rng: np.random.Generator, options: list[Any]) -> Any:
    """One of ``options``, as the plain Python value (numpy's choice would turn None and numbers into arrays)."""
    return options[int(rng.integers(len(options)))]


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _class_weight(model_type: ModelType, params: Params) -> Any:
    return None if model_type == ModelType.REGRESSION else params.get("class_weight")


# --- regularised linear: Amazon ML's own model, logistic or ridge regression ---


def _linear_build(model_type: ModelType, p: Params, seed: int, n_jobs: int) -> BaseEstimator:
    if model_type == ModelType.REGRESSION:
        return Ridge(alpha=p["alpha"])
    return LogisticRegression(C=p["C"], class_weight=p.get("class_weight"), max_iter=3000, random_state=seed)


def _linear_defaults(model_type: ModelType) -> Params:
    base: Params = {"numeric": "impute_median_scale"}
    return base | ({"alpha": 1.0} if model_type == ModelType.REGRESSION else {"C": 1.0, "class_weight": None})


def _linear_sample(rng: np.random.Generator, model_type: ModelType) -> Params:
    numeric = _pick(rng, ["impute_median_scale", "quantile_bins"])
    if model_type == ModelType.REGRESSION:
        return {"numeric": numeric, "alpha": _loguniform(rng, 1e-3, 1e3)}
    return {"numeric": numeric, "C": _loguniform(rng, 1e-3, 1e2), "class_weight": _pick(rng, [None, "balanced"])}


# --- histogram gradient boosting ---


def _boosting_build(model_type: ModelType, p: Params, seed: int, n_jobs: int) -> BaseEstimator:
    common = {
        "learning_rate": p["learning_rate"],
        "max_leaf_nodes": p["max_leaf_nodes"],
        "min_samples_leaf": p["min_samples_leaf"],
        "l2_regularization": p["l2_regularization"],
        "max_iter": p["max_iter"],
        "early_stopping": p.get("early_stopping", True),
        "validation_fraction": 0.1,
        "n_iter_no_change": 15,
        "random_state": seed,
    }
    if model_type == ModelType.REGRESSION:
        return HistGradientBoostingRegressor(**common)
    return HistGradientBoostingClassifier(class_weight=p.get("class_weight"), **common)


def _boosting_defaults(model_type: ModelType) -> Params:
    base = {
        "learning_rate": 0.1,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "l2_regularization": 0.0,
        "max_iter": 300,
    }
    return base if model_type == ModelType.REGRESSION else base | {"class_weight": None}


def _boosting_sample(rng: np.random.Generator, model_type: ModelType) -> Params:
    params = {
        "learning_rate": _loguniform(rng, 0.02, 0.3),
        "max_leaf_nodes": _pick(rng, [7, 15, 31, 63]),
        "min_samples_leaf": _pick(rng, [5, 10, 20, 50, 100]),
        "l2_regularization": _pick(rng, [0.0, 0.1, 1.0, 10.0]),
        "max_iter": 500,
    }
    if model_type != ModelType.REGRESSION:
        params["class_weight"] = _pick(rng, [None, "balanced"])
    return params


# --- random forest and extra trees ---


def _forest_build(kind: str) -> Callable[[ModelType, Params, int, int], BaseEstimator]:
    def build(model_type: ModelType, p: Params, seed: int, n_jobs: int) -> BaseEstimator:
        common = {
            "n_estimators": p["n_estimators"],
            "max_features": p["max_features"],
            "min_samples_leaf": p["min_samples_leaf"],
            "random_state": seed,
            "n_jobs": n_jobs,
        }
        if model_type == ModelType.REGRESSION:
            return (RandomForestRegressor if kind == "rf" else ExtraTreesRegressor)(**common)
        cls = RandomForestClassifier if kind == "rf" else ExtraTreesClassifier
        return cls(class_weight=p.get("class_weight"), **common)

    return build


def _forest_defaults(model_type: ModelType) -> Params:
    base: Params = {"n_estimators": 200, "max_features": "sqrt", "min_samples_leaf": 2}
    return base if model_type == ModelType.REGRESSION else base | {"class_weight": None}


def _forest_sample(rng: np.random.Generator, model_type: ModelType) -> Params:
    params: Params = {
        "n_estimators": _pick(rng, [100, 200, 300]),
        "max_features": _pick(rng, ["sqrt", 0.3, 0.6]),
        "min_samples_leaf": _pick(rng, [1, 2, 5, 10]),
    }
    if model_type != ModelType.REGRESSION:
        params["class_weight"] = _pick(rng, [None, "balanced_subsample"])
    return params


# --- k nearest neighbours and a small MLP, for small tables ---


def _knn_build(model_type: ModelType, p: Params, seed: int, n_jobs: int) -> BaseEstimator:
    cls = KNeighborsRegressor if model_type == ModelType.REGRESSION else KNeighborsClassifier
    # Brute force finds the same neighbours as a KD or ball tree, fast enough on the tables k-NN is tried on, and
    # leaves no tree in the saved model (which skops would have to trust, with its distance metric, to load it).
    # "l2", not the default "euclidean": euclidean is |x|² - 2x·y + |y|² through BLAS in blocks of rows, so a record
    # equal to a training row is at 0 or ~6e-8 from it depending on the rows scored with it, and with distance
    # weights its score then moves (1.0 against 0.99999919 in a batch); "l2" measures each pair on its own.
    return cls(n_neighbors=p["n_neighbors"], weights=p["weights"], algorithm="brute", metric="l2", n_jobs=n_jobs)


def _knn_defaults(model_type: ModelType) -> Params:
    return {"n_neighbors": 25, "weights": "distance"}


def _knn_sample(rng: np.random.Generator, model_type: ModelType) -> Params:
    return {"n_neighbors": _pick(rng, [5, 10, 25, 50, 100]), "weights": _pick(rng, ["uniform", "distance"])}


def _mlp_build(model_type: ModelType, p: Params, seed: int, n_jobs: int) -> BaseEstimator:
    cls = MLPRegressor if model_type == ModelType.REGRESSION else MLPClassifier
    return cls(
        hidden_layer_sizes=tuple(p["hidden"]),
        alpha=p["alpha"],
        learning_rate_init=p["learning_rate_init"],
        early_stopping=True,
        max_iter=300,
        random_state=seed,
    )


def _mlp_defaults(model_type: ModelType) -> Params:
    return {"hidden": [64], "alpha": 1e-3, "learning_rate_init": 1e-3}


def _mlp_sample(rng: np.random.Generator, model_type: ModelType) -> Params:
    hidden = [[32], [64], [128], [64, 32]][int(rng.integers(4))]
    return {"hidden": hidden, "alpha": _loguniform(rng, 1e-5, 1e-1), "learning_rate_init": _loguniform(rng, 3e-4, 1e-2)}


FAMILIES: list[Family] = [
    Family("linear", _linear_build, _linear_defaults, _linear_sample, dense_input=False, linear=True, weight=2),
    Family(
        "hist_gradient_boosting",
        _boosting_build,
        _boosting_defaults,
        _boosting_sample,
        dense_input=True,
        weight=4,
        relative_cost=3.0,
        options=("early_stopping",),
    ),
    Family(
        "random_forest", _forest_build("rf"), _forest_defaults, _forest_sample, dense_input=True, relative_cost=15.0
    ),
    Family(
        "extra_trees",
        _forest_build("et"),
        _forest_defaults,
        _forest_sample,
        dense_input=True,
        weight=1,
        relative_cost=10.0,
    ),
    Family(
        "knn",
        _knn_build,
        _knn_defaults,
        _knn_sample,
        dense_input=True,
        small_data_only=True,
        weight=1,
        relative_cost=0.7,
    ),
    Family(
        "mlp",
        _mlp_build,
        _mlp_defaults,
        _mlp_sample,
        dense_input=True,
        small_data_only=True,
        weight=1,
        relative_cost=4.0,
    ),
]
BY_NAME = {f.name: f for f in FAMILIES}


def families_for(n_rows: int, allowed: list[str] | None = None) -> list[Family]:
    """The families worth trying on a table of ``n_rows`` (or the caller's choice)."""
    chosen = [f for f in FAMILIES if allowed is None or f.name in allowed]
    return [f for f in chosen if not f.small_data_only or n_rows <= SMALL_DATA_ROWS or allowed is not None]
