"""Target transforms for regression: a right-skewed, non-negative target may be learnt as log1p(y) and answered
in its own units (expm1 of the prediction); the search tries both and validation decides."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import skew
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor

LOG1P = "log1p"
# Above this sample skewness a non-negative target's large values dominate squared errors; its log is worth trying.
SKEWED = 0.75
MIN_DISTINCT = 10  # a target of a few values (counts of 0-3, say) is left as it is


def worth_a_log(y: np.ndarray) -> bool:
    """Whether a regression target is non-negative and right-skewed enough for log1p to be tried."""
    values = np.asarray(y, dtype=np.float64)
    if len(values) < 3 or not np.isfinite(values).all() or values.min() < 0:
        return False
    if len(np.unique(values[:10_000])) < MIN_DISTINCT:
        return False
    return bool(skew(values) > SKEWED)


def log1p_target(y: Any) -> Any:
    """The target as it is learnt. Module-level, so that the fitted pipeline refers to it by name."""
    return np.log1p(y)


# exp overflows a double past 709: a model extrapolating on the log scale (a linear one fed a far-off value)
# answers a huge finite number, never an infinity no JSON can hold.
LOG_CAP = 700.0


def expm1_target(y: Any) -> Any:
    """A prediction back in the target's units."""
    return np.expm1(np.minimum(y, LOG_CAP))


def on_log_scale(estimator: BaseEstimator) -> TransformedTargetRegressor:
    """``estimator`` fitted on log1p(y), predicting in y's units."""
    return TransformedTargetRegressor(
        regressor=estimator, func=log1p_target, inverse_func=expm1_target, check_inverse=False
    )


def is_on_log_scale(estimator: Any) -> bool:
    return (
        isinstance(estimator, TransformedTargetRegressor)
        and estimator.func is log1p_target
        and estimator.inverse_func is expm1_target
    )
