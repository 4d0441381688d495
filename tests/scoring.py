"""What a served prediction must be: the registered MLflow pipeline's own output on the same records, labelled
as the scores and the model's threshold say."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlsvc.datasources.values import missing_set
from tests.servers import RunningServer

FLAGS = {"1": 1.0, "true": 1.0, "yes": 1.0, "0": 0.0, "false": 0.0, "no": 0.0}


def typed_frame(records: Sequence[Mapping[str, Any]], features: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records whose every value is valid, absent or a missing token of its attribute ("NA", "none"…) as the typed
    columns a pipeline is fitted on: numbers and flags as floats (missing: NaN), everything else as text (missing:
    None)."""
    columns: dict[str, np.ndarray] = {}
    for attribute in features:
        name, kind = attribute["attributeName"], attribute["attributeType"]
        missing = missing_set(attribute.get("missingValues"))
        values = [_present(record.get(name), missing) for record in records]
        if kind == "NUMERIC":
            columns[name] = np.array([np.nan if v is None else float(v) for v in values])
        elif kind == "BINARY":
            columns[name] = np.array([np.nan if v is None else FLAGS[str(v).lower()] for v in values])
        else:
            columns[name] = np.array([None if v is None else str(v) for v in values], dtype=object)
    return pd.DataFrame(columns)


def _present(value: Any, missing: frozenset[str]) -> str | None:
    text = None if value is None else str(value).strip()
    return None if text is None or text.lower() in missing else text


def registered_pipeline(server: RunningServer, model: Mapping[str, Any]) -> Any:
    """The fitted pipeline of the model's version, loaded from the server's MLflow registry (the version whose run
    the model names)."""
    from mlflow import MlflowClient
    from mlflow import sklearn as mlflow_sklearn

    client = MlflowClient(tracking_uri=server.mlflow_uri, registry_uri=server.mlflow_uri)
    # MLflow's number is mlsvc's unless two versions of the name trained at once: its tag says which it is.
    [found] = client.search_model_versions(f"name = '{model['name']}' and run_id = '{model['mlflow_run_id']}'")
    assert found.tags["mlsvc.version"] == str(model["version"])
    return mlflow_sklearn.load_model(client.get_model_version_download_uri(model["name"], found.version))


def pipeline_output(pipeline: Any, model: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Values (REGRESSION), or one probability per class in the order of the model's ``classes``."""
    frame = typed_frame(records, model["features"])
    if model["model_type"] == "REGRESSION":
        return np.asarray(pipeline.predict(frame), dtype=np.float64)
    assert list(pipeline.classes_) == list(range(len(model["classes"])))  # the classes, encoded in their order
    return np.asarray(pipeline.predict_proba(frame), dtype=np.float64)


def implied_label(model: Mapping[str, Any], scores: Mapping[str, float]) -> str:
    """The label a user expects from the scores: BINARY against the model's threshold, else the likeliest."""
    classes = model["classes"]
    if model["model_type"] == "BINARY":
        negative, positive = classes
        return str(positive if scores[positive] >= model["score_threshold"] else negative)
    return str(max(classes, key=lambda c: scores[c]))


def assert_served_as_registered(
    pipeline: Any,
    model: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
) -> None:
    """The served answers equal the registered pipeline's to 1e-9, and each label follows its scores."""
    expected = pipeline_output(pipeline, model, records)
    assert len(predictions) == len(records)
    if model["model_type"] == "REGRESSION":
        served = np.array([p["predicted_value"] for p in predictions])
    else:
        served = np.array([[p["predicted_scores"][c] for c in model["classes"]] for p in predictions])
        assert [p["predicted_label"] for p in predictions] == [
            implied_label(model, p["predicted_scores"]) for p in predictions
        ]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)
