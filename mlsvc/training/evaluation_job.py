"""The evaluation job: score a labelled datasource with a model and record its metrics and insights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.registry.mlflow_registry import MlflowRegistry
from mlsvc.resources import Attribute, ModelType
from mlsvc.training import data as training_data
from mlsvc.training.evaluation import evaluate
from mlsvc.training.job import DEFAULT_THRESHOLD, evaluation_fields
from mlsvc.training.loop import predict_output

if TYPE_CHECKING:
    from mlsvc.jobs.worker import JobContext


def run(ctx: JobContext) -> Mapping[str, Any]:
    ev = ctx.resource
    model = ctx.store.get("model", ev["model_id"])
    ds = ctx.store.get("datasource", ev["datasource_id"])
    for kind, resource in (("model", model), ("datasource", ds)):
        if resource["status"] != "COMPLETED":
            raise MlsvcError(ErrorCode.NOT_READY, f"{kind} '{resource['id']}' is {resource['status']}, not COMPLETED")
    model_type = ModelType(model["model_type"])
    features = [Attribute.model_validate(a) for a in model["features"]]
    X, raw_y = training_data.load_labelled(
        ctx.storage, ds, features, model["target"], lambda f: ctx.progress(0.05 + 0.6 * f)
    )
    if model_type == ModelType.REGRESSION:
        y = training_data.encode_values(raw_y, model["target"])
    else:
        y = training_data.encode_labels(raw_y, model["classes"])
    ctx.progress(0.7, message=f"scoring {len(X)} rows")
    pipeline = MlflowRegistry(ctx.settings).load(model["model_uri"])
    output = predict_output(pipeline, model_type, X, len(model.get("classes") or []))
    threshold = DEFAULT_THRESHOLD if model.get("score_threshold") is None else model["score_threshold"]
    insights = evaluate(model_type, y, output, model.get("classes"), threshold)
    return {**evaluation_fields(insights), "model_version": model["version"]}
