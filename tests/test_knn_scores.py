"""k-NN scores as the batch job computes them: a record's score is its own, whatever else is scored with it.

A record equal to a training row is at distance 0 from it, and distance weighting then gives the identical
training rows all the weight (scikit-learn's rule). Brute-force euclidean distances computed as
|x|² − 2x·y + |y|² leave ±1e-15 where they should be 0, how much depending on where the row falls in BLAS's
blocks: the row then lands at ~6e-8 instead, and one weight of 1.7e7 against the others' ~1 moves the score by
~1e-6 (or by a whole class where identical rows disagree). So the batch of churn repeated 12 times scored its row
46536, the last of a 5,577-row slice, 0.999999190012195 where the pipeline over the whole file said 1.0 (CI's
AVX2 kernels; a k-NN was the churn model its 3 s search chose that time).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsvc.datasources.values import coerce_frame
from mlsvc.prediction.scorer import ModelCard, Scorer
from mlsvc.resources import AttributeType, ModelType, Schema
from mlsvc.training.candidates import BY_NAME
from mlsvc.training.data import TrainingData
from mlsvc.training.loop import Config, fit_quietly, make_pipeline
from mlsvc.training.recipe import default_recipe
from tests.servers import CHURN

SCHEMA = Schema.model_validate_json(CHURN.with_name("churn.csv.schema").read_text())
FEATURES = SCHEMA.feature_attributes()
# How many others a record is scored after: none (a real-time request), a small file's, and the 200 before the
# last row of a 5,577-row slice (a chunk of 46,537 rows cut in slices of 8,192). scikit-learn computes distances
# for 256 records at a time, so a slice's last 201 rows are scored as a call of 201 would score them, and 201 is
# not a whole number of BLAS's blocks: on AVX2 kernels its last row is computed apart, as CI's row 46536 was.
COMPANIONS = (0, 6, 200)
SAMPLE = 25  # training rows checked at each place: a tenth of churn's rows show the error on common kernels


def _typed() -> pd.DataFrame:
    raw = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
    typed, _ = coerce_frame(raw[[a.attributeName for a in FEATURES]], SCHEMA)
    return typed


def _scorer(model_type: ModelType) -> tuple[Scorer, pd.DataFrame, np.ndarray]:
    """The training loop's default k-NN (25 neighbours, distance weights) on the churn example with its default
    recipe, as the batch job scores it; and the rows and targets it was fitted on (churned, or tenure for a
    regression)."""
    frame = _typed()
    raw = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
    if model_type == ModelType.BINARY:
        y, classes = (raw["churned"] == "yes").to_numpy(dtype=np.int64), ["no", "yes"]
    else:
        y, classes = frame.pop("tenure_months").to_numpy(dtype=float), None
    features = [a for a in FEATURES if a.attributeName in frame.columns]
    data = TrainingData(frame, y, features, model_type, classes, None)
    config = Config("knn#0", BY_NAME["knn"], BY_NAME["knn"].defaults(model_type))
    assert config.params["weights"] == "distance"
    pipeline = fit_quietly(make_pipeline(config, data, default_recipe(features), 0, 1), frame, y)
    scorer = Scorer(ModelCard("ml-knn", 1, model_type, features, classes, None), pipeline)
    assert scorer.path == "compiled"
    return scorer, frame, y


def _scores(scorer: Scorer, frame: pd.DataFrame) -> np.ndarray:
    """The rows scored in one call, as one slice of a batch: typed columns through the compiled path."""
    text = (AttributeType.CATEGORICAL, AttributeType.TEXT)
    columns = {
        a.attributeName: frame[a.attributeName].to_numpy(dtype=object if a.attributeType in text else np.float64)
        for a in scorer.card.features
    }
    return scorer.outputs(columns, len(frame))


@pytest.fixture(scope="module", params=[ModelType.BINARY, ModelType.REGRESSION], ids=["binary", "regression"])
def fitted(request: pytest.FixtureRequest) -> tuple[Scorer, pd.DataFrame, np.ndarray]:
    return _scorer(request.param)


def test_a_record_equal_to_training_rows_scores_as_those_rows(fitted: tuple[Scorer, pd.DataFrame, np.ndarray]) -> None:
    scorer, frame, y = fitted
    # The training rows as the model sees them: rows whose features are identical are one point.
    features = np.asarray(scorer.pipeline[:-1].transform(frame))
    _, point = np.unique(features, axis=0, return_inverse=True)
    point = point.reshape(-1)
    shares = np.bincount(point, weights=y) / np.bincount(point)
    np.testing.assert_array_equal(_scores(scorer, frame), shares[point])


def test_a_records_score_does_not_depend_on_the_records_scored_with_it(
    fitted: tuple[Scorer, pd.DataFrame, np.ndarray],
) -> None:
    scorer, frame, _ = fitted
    together = _scores(scorer, frame)
    rng = np.random.default_rng(3)
    for others in COMPANIONS:
        rows = rng.choice(len(frame), SAMPLE, replace=False)
        # Each row last after ``others`` others, as a slice's last row is.
        alone = [_scores(scorer, frame.iloc[[*rng.choice(len(frame), others), row]])[-1] for row in rows]
        np.testing.assert_array_equal(alone, together[rows], err_msg=f"scored after {others} others")
