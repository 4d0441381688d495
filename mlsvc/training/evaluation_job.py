"""The evaluation job: score a labelled datasource with a model and record its metrics and insights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlsvc.prediction.labels import threshold_or_default
from mlsvc.registry import ArtifactRef
from mlsvc.resources import Attribute, ModelType
from mlsvc.training import data as training_data
from mlsvc.training.evaluation import evaluate
from mlsvc.training.loop import predict_output
from mlsvc.training.results import evaluation_fields

if TYPE_CHECKING:
    from mlsvc.jobs.context import JobContext


def run(ctx: JobContext) -> Mapping[str, Any]:
    ev = ctx.resource
    model = ctx.completed("model", ev["model_id"])
    ds = ctx.completed("datasource", ev["datasource_id"])
    model_type = ModelType(model["model_type"])
    features = [Attribute.model_validate(a) for a in model["features"]]
    X, raw_y = training_data.load_labelled(
        ctx.objects,
        ds,
        features,
        model["target"],
        lambda f: ctx.progress(0.05 + 0.6 * f),
        ctx.settings.max_record_bytes,
    )
    if model_type == ModelType.REGRESSION:
        y = training_data.encode_values(raw_y, model["target"])
    else:
        y = training_data.encode_labels(raw_y, model["classes"])
    ctx.progress(0.7, message=f"scoring {len(X)} rows")
    pipeline = ctx.registry.load(ArtifactRef.of(model))
    output = predict_output(pipeline, model_type, X, len(model.get("classes") or []))
    insights = evaluate(model_type, y, output, model.get("classes"), threshold_or_default(model.get("score_threshold")))
    fields = {**evaluation_fields(insights), "model_version": model["version"]}
    overlap = ev.get("training_overlap")
    if overlap:
        fields["message"] = f"{fields.get('message') or ''} Note: {overlap['note']}.".strip()
    return fields
