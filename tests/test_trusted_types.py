"""Every model the loops can produce saves in skops' format and needs no type beyond mlsvc's trusted list; a file
with any other type is refused before it is read as a model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import VotingClassifier, VotingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlsvc.config import Settings
from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.recommendation.loop import _families as recommender_families
from mlsvc.recommendation.loop import train_recommender
from mlsvc.registry import ArtifactRef
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.registry.trusted import TRUSTED_TYPES
from mlsvc.resources import Attribute, AttributeType, ModelType
from mlsvc.training.candidates import FAMILIES
from mlsvc.training.data import TrainingData
from mlsvc.training.loop import Config, make_pipeline

ROWS = 120


def _data(model_type: ModelType) -> TrainingData:
    """A small table with every attribute type, so that every recipe transform is in the pipeline."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "amount": rng.normal(size=ROWS),
            "binned": rng.normal(size=ROWS),
            "flag": rng.integers(0, 2, ROWS).astype(float),
            "plan": rng.choice(["a", "b", "c"], ROWS).astype(object),
            "city": np.array([f"city{i % 60}" for i in range(ROWS)], dtype=object),
            "note": rng.choice(["late payment", "on time", "called support", "upgraded plan"], ROWS).astype(object),
        }
    )
    features = [
        Attribute(attributeName="amount", attributeType=AttributeType.NUMERIC),
        Attribute(attributeName="binned", attributeType=AttributeType.NUMERIC),
        Attribute(attributeName="flag", attributeType=AttributeType.BINARY),
        Attribute(attributeName="plan", attributeType=AttributeType.CATEGORICAL),
        Attribute(attributeName="city", attributeType=AttributeType.CATEGORICAL),
        Attribute(attributeName="note", attributeType=AttributeType.TEXT),
    ]
    if model_type == ModelType.REGRESSION:
        y = X["amount"].to_numpy() * 2 + rng.normal(size=ROWS)
        classes = None
    else:
        n = 2 if model_type == ModelType.BINARY else 3
        y = rng.integers(0, n, ROWS).astype(float)
        classes = [str(i) for i in range(n)]
    return TrainingData(X, y, features, model_type, classes, "1" if model_type == ModelType.BINARY else None)


RECIPE = {
    "attributes": {
        "amount": "impute_median_scale",
        "binned": "quantile_bins",
        "flag": "impute_most_frequent",
        "plan": "one_hot_rare_grouped",
        "city": "target_encode",
        "note": "tfidf_words_1_2",
    },
    "crosses": [["plan", "binned"]],
}
# The same attributes through every output of Amazon ML's recipe language.
AMAZON_RECIPE = {
    "groups": {"CATS": "group(ALL_CATEGORICAL, ALL_BINARY)"},
    "assignments": {"words": "lowercase(no_punct(note))"},
    "outputs": [
        "amount",
        "normalize(amount)",
        "quantile_bin(binned, 10)",
        "CATS",
        "words",
        "ngram(words, 2)",
        "osb(note, 3)",
        "cartesian(plan, quantile_bin(binned, 5))",
        "cartesian(words, flag)",
    ],
}


def _fitted(model_type: ModelType, recipe: dict[str, Any] = RECIPE) -> list[Any]:
    data = _data(model_type)
    pipelines = []
    for family in FAMILIES:
        config = Config(f"{family.name}#0", family, family.defaults(model_type))
        pipelines.append(make_pipeline(config, data, recipe, 0, 1).fit(data.X, data.y))
    voting = VotingRegressor if model_type == ModelType.REGRESSION else VotingClassifier
    members = [(f"m{i}", p) for i, p in enumerate(pipelines[:3])]
    kwargs = {} if model_type == ModelType.REGRESSION else {"voting": "soft"}
    pipelines.append(voting(members, **kwargs).fit(data.X, data.y))
    return pipelines


@pytest.mark.parametrize("model_type", [ModelType.BINARY, ModelType.MULTICLASS, ModelType.REGRESSION])
def test_every_family_and_transform_needs_only_trusted_types(model_type: ModelType) -> None:
    for fitted in _fitted(model_type):
        untrusted = set(sio.get_untrusted_types(data=sio.dumps(fitted)))
        assert untrusted <= set(TRUSTED_TYPES), (type(fitted).__name__, sorted(untrusted - set(TRUSTED_TYPES)))


@pytest.mark.parametrize("model_type", [ModelType.BINARY, ModelType.REGRESSION])
def test_every_family_on_an_amazon_recipe_needs_only_trusted_types_and_loads_the_same(model_type: ModelType) -> None:
    X = _data(model_type).X
    for fitted in _fitted(model_type, AMAZON_RECIPE):
        saved = sio.dumps(fitted)
        untrusted = set(sio.get_untrusted_types(data=saved))
        assert untrusted <= set(TRUSTED_TYPES), (type(fitted).__name__, sorted(untrusted - set(TRUSTED_TYPES)))
        assert np.array_equal(sio.loads(saved, trusted=list(TRUSTED_TYPES)).predict(X), fitted.predict(X))


def test_every_recommender_family_needs_only_trusted_types_and_answers_the_same() -> None:
    rng = np.random.default_rng(0)
    interactions = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 80, 2000)],
            "item_id": [f"i{i}" for i in rng.zipf(1.5, 2000) % 90],
            "timestamp": np.arange(2000).astype(str),
        }
    )
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(90)], "category": [f"c{i % 5}" for i in range(90)]})
    for family in recommender_families(None):
        model = train_recommender(interactions, budget_s=2, families=[family], items_frame=items).model
        saved = sio.dumps(model)
        assert set(sio.get_untrusted_types(data=saved)) <= set(TRUSTED_TYPES), family
        loaded = sio.loads(saved, trusted=list(TRUSTED_TYPES))
        users = list(model.users_[:10])
        assert loaded.recommend_batch(users) == model.recommend_batch(users), family
        assert loaded.similar_items("i1") == model.similar_items("i1"), family


def test_a_file_with_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    refused: list[list[str]] = []
    registry = MlflowRegistry(Settings.from_env(), on_refused=lambda ref, found: refused.append(found))
    path = tmp_path / "model.skops"
    sio.dump(Pipeline([("run", FunctionTransformer(os.system))]), path)
    ref = ArtifactRef("models:/x/1", "model x:1 (ml-x)", {}, None)
    with pytest.raises(MlsvcError) as caught:
        registry._read(ref, path)
    assert caught.value.code == ErrorCode.ARTIFACT_INTEGRITY
    assert "posix.system" in caught.value.message or "os.system" in caught.value.message
    assert refused


def test_a_log_scale_regression_and_a_weighted_ensemble_need_only_trusted_types_and_load_the_same() -> None:
    data = _data(ModelType.REGRESSION)
    y = np.exp(data.y)  # positive, so log1p applies
    pipelines = [
        make_pipeline(
            Config(f"{f.name}#0", f, f.defaults(ModelType.REGRESSION) | {"target": "log1p"}), data, RECIPE, 0, 1
        )
        for f in FAMILIES[:3]
    ]
    weighted = VotingRegressor([(f"m{i}", p) for i, p in enumerate(pipelines)], weights=[0.6, 0.3, 0.1])
    for fitted in (pipelines[0].fit(data.X, y), weighted.fit(data.X, y)):
        saved = sio.dumps(fitted)
        untrusted = set(sio.get_untrusted_types(data=saved))
        assert untrusted <= set(TRUSTED_TYPES), sorted(untrusted - set(TRUSTED_TYPES))
        assert np.array_equal(sio.loads(saved, trusted=list(TRUSTED_TYPES)).predict(data.X), fitted.predict(data.X))
