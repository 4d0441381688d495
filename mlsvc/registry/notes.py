"""What MLflow shows of an mlsvc model version besides its files: the version's tags and description, written from
the model's fields, so that the MLflow UI tells what mlsvc tells (its id, status, holdout metric, promotion)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlsvc.registry import MODEL_ID_TAG

STATUS_TAG = "mlsvc.status"
MAX_TAG_CHARS = 5000  # MLflow caps a tag's value (8,000 characters on its SQL stores)


def registered_tags(model: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a version as it is registered, before its job has recorded its result."""
    return {
        MODEL_ID_TAG: str(model["id"]),
        STATUS_TAG: "INPROGRESS",
        "mlsvc.datasource_id": str(model["datasource_id"]),
    }


def completed_tags(
    model: Mapping[str, Any], fields: Mapping[str, Any], evaluation: Mapping[str, Any]
) -> dict[str, str]:
    """The tags of a version once its job has completed: ``fields`` is the job's result, ``evaluation`` its
    holdout evaluation's insights (the model id and datasource were tagged at registration). The status comes
    last: it is written last."""
    promotion = fields.get("promotion") or {}
    tags = {
        "mlsvc.model_type": str(fields.get("model_type")),
        "mlsvc.metric": str(evaluation.get("metric")),
        "mlsvc.metric_value": _figure(evaluation.get("value")),
        "mlsvc.baseline_value": _figure((evaluation.get("baseline") or {}).get("value")),
        "mlsvc.promoted": "true" if promotion.get("promoted") else "false",
        "mlsvc.promotion_reason": str(promotion.get("reason", "")),
        "mlsvc.selected": str((fields.get("metrics") or {}).get("selected", "")),
        "mlsvc.evaluation_id": str(fields.get("evaluation_id", "")),
        STATUS_TAG: "COMPLETED",
    }
    return {key: value[:MAX_TAG_CHARS] for key, value in tags.items()}


def description(model: Mapping[str, Any], fields: Mapping[str, Any], evaluation: Mapping[str, Any]) -> str:
    """A version's description (MLflow renders it as Markdown): what was trained, how it scored on its holdout,
    whether it became production and why, and how to load it."""
    name, version, kind = model["name"], fields["version"], fields.get("model_type")
    target = f" of `{fields['target']}`" if fields.get("target") else ""
    trained, held_out = fields.get("training_rows") or 0, fields.get("holdout_rows") or 0
    if kind == "RECOMMENDATION":
        rows = f"{trained:,} interactions trained on, evaluated on the held-out interactions of {held_out:,} users"
    else:
        rows = f"{trained:,} rows trained on, {held_out:,} held out"
    selected = (fields.get("metrics") or {}).get("selected")
    promotion = fields.get("promotion") or {}
    decision = "promoted to `production`" if promotion.get("promoted") else "not promoted"
    lines = [
        f"mlsvc model `{model['id']}` ({name} v{version}): {kind}{target}, from datasource "
        f"`{model['datasource_id']}`; {rows}" + (f"; selected `{selected}`." if selected else "."),
        "",
        f"**Holdout:** {evaluation.get('vs_baseline', '')}",
        "",
        f"**Promotion:** {decision}: {promotion.get('reason', '')}.",
    ]
    if fields.get("message"):
        lines += ["", str(fields["message"])]
    lines += ["", _loading(name, version, kind)]
    return "\n".join(lines)


def _loading(name: str, version: int, kind: Any) -> str:
    uri = f"models:/{name}/{version}"
    if kind == "RECOMMENDATION":
        answers = "rows with a `user_id` (or an `item_id`) and answers `recommendations` and `cold_start`"
    elif kind == "REGRESSION":
        answers = "raw records and answers `predicted_value` and `warnings`"
    else:
        answers = "raw records and answers `predicted_label`, `predicted_scores` (per class label) and `warnings`"
    return (
        f'`mlflow.pyfunc.load_model("{uri}")` (or `mlflow models serve -m {uri} --env-manager local`) takes '
        f"{answers}, as `POST /v1/models/{name}:{version}/predict` does; it needs the mlsvc package installed."
    )


def _figure(value: Any) -> str:
    return "" if value is None else f"{float(value):.6g}"
