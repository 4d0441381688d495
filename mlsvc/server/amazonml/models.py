"""Amazon ML's MLModel operations over mlsvc's models: train, read, search, rename or re-threshold, delete,
mount on a real-time endpoint, and Predict."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from typing import Any

from mlsvc.datasources.schema import schema_to_json
from mlsvc.errors import MlsvcError
from mlsvc.resources import Model, ModelCreate, ModelType, ModelUpdate, PredictRequest
from mlsvc.server.amazonml.common import (
    COMMON_VARIABLES,
    Answer,
    Call,
    Params,
    every,
    json_member,
    life,
    log_uri,
    operation,
    request_of,
)
from mlsvc.server.amazonml.describe import describe, wants_deleted
from mlsvc.server.amazonml.protocol import AmazonError

AMAZON_TYPES = {t.value for t in (ModelType.BINARY, ModelType.MULTICLASS, ModelType.REGRESSION)}
DEFAULT_THRESHOLD = 0.5

VARIABLES = {
    **COMMON_VARIABLES,
    "Name": lambda m: _name(m),
    "TrainingDataSourceId": lambda m: m.datasource_id,
    "RealtimeEndpointStatus": lambda m: _endpoint(m)["EndpointStatus"],
    "MLModelType": lambda m: m.model_type.value if m.model_type else None,
    "Algorithm": lambda m: _algorithm(m),
}


def _registered_name(model_id: str) -> str:
    """The registered model name of an Amazon ML model: its id (an MLModel stands alone, not as a version of a
    name), made to start with a letter or digit as names must."""
    return model_id if re.match(r"^[A-Za-z0-9]", model_id) else f"ml{model_id}"


@operation("CreateMLModel")
def create(call: Call, params: Params) -> Answer:
    recipe = json_member(params, "Recipe")
    request = request_of(
        ModelCreate,
        {
            "id": params["MLModelId"],
            "name": _registered_name(params["MLModelId"]),
            "display_name": params.get("MLModelName"),
            "datasource_id": params["TrainingDataSourceId"],
            "model_type": params["MLModelType"],
            "recipe": recipe,
            "recipe_uri": params.get("RecipeUri"),
            "parameters": params.get("Parameters"),
            "promote": "never",  # an Amazon ML model is used by its id; no alias moves behind the caller's back
            "wait_for_inputs": True,  # queued behind its datasource, as Amazon ML queued it
        },
    )
    call.service.models.create(request)
    return {"MLModelId": params["MLModelId"]}


def amazon_model(call: Call, model_id: str) -> Model:
    """The model an MLModelId names: one of Amazon ML's types, by id (not a name or alias)."""
    model = call.service.models.get(model_id)
    if model.id != model_id:
        raise AmazonError("ResourceNotFoundException", f"no MLModel has the id '{model_id}' (it names a model)")
    if model.model_type is not None and model.model_type.value not in AMAZON_TYPES:
        raise AmazonError(
            "ResourceNotFoundException",
            f"'{model_id}' is a {model.model_type.value} model, which Amazon ML's API has no type for; "
            "read it at /v1/models",
        )
    return model


def _name(model: Model) -> str:
    return model.display_name or f"{model.name}:{model.version}"


def _algorithm(model: Model) -> str | None:
    """The family that won the search (Amazon ML's models were all SGD; its Algorithm member allows only
    "sgd", so it is left out of MLModel and given in Predict's details and this filter)."""
    winner = next((row for row in model.leaderboard if row.get("selected")), None)
    return None if winner is None else str(winner.get("family") or winner.get("candidate") or "")


def _endpoint(model: Model) -> Answer:
    endpoint = model.endpoint
    if endpoint is None or endpoint.status == "NONE":
        return {"EndpointStatus": "NONE", "PeakRequestsPerSecond": 0}
    return {
        "EndpointStatus": endpoint.status,
        "EndpointUrl": endpoint.url,
        "PeakRequestsPerSecond": endpoint.peak_requests_per_second,
        "CreatedAt": endpoint.created_at,
    }


def shape(call: Call, model: Model, data_uri: str | None = None) -> Answer:
    """A model as Amazon ML's MLModel."""
    binary = model.model_type == ModelType.BINARY
    return {
        "MLModelId": model.id,
        "TrainingDataSourceId": model.datasource_id,
        "Name": _name(model),
        "EndpointInfo": _endpoint(model),
        "TrainingParameters": model.parameters or {},
        "InputDataLocationS3": data_uri,
        "MLModelType": model.model_type.value if model.model_type else None,
        "ScoreThreshold": (DEFAULT_THRESHOLD if model.score_threshold is None else model.score_threshold)
        if binary
        else None,
        "ScoreThresholdLastUpdatedAt": model.score_threshold_updated_at if binary else None,
        **life(model),
    }


def _data_uri(call: Call, model: Model) -> str | None:
    try:
        return call.service.datasources.get(model.datasource_id).data_uri
    except MlsvcError:
        return None


@operation("GetMLModel")
def get(call: Call, params: Params) -> Answer:
    model = amazon_model(call, params["MLModelId"])
    answer = {**shape(call, model, _data_uri(call, model)), "LogUri": log_uri(call, f"/v1/models/{model.id}")}
    if params.get("Verbose"):
        answer.update(_verbose(call, model))
    return answer


def _verbose(call: Call, model: Model) -> Answer:
    """The recipe (in Amazon ML's language) and the schema the model was trained with."""
    answer: Answer = {}
    recipe = call.service.models.amazon_recipe(model)
    if recipe is not None:
        answer["Recipe"] = json.dumps(recipe, indent=2)
    try:
        schema = call.service.datasources.schema(model.datasource_id)
    except MlsvcError:
        return answer
    answer["Schema"] = schema_to_json(schema)
    return answer


@operation("DescribeMLModels")
def search(call: Call, params: Params) -> Answer:
    status = "DELETED" if wants_deleted(params) else None
    items = [
        m for m in every(call.service.models.list, status) if m.model_type is None or m.model_type.value in AMAZON_TYPES
    ]
    uris = {d.id: d.data_uri for d in every(call.service.datasources.list)}
    variables = {**VARIABLES, "TrainingDataURI": lambda m: uris.get(m.datasource_id)}
    page, token = describe(items, params, variables, key=lambda m: m.id)
    return {"Results": [shape(call, m, uris.get(m.datasource_id)) for m in page], "NextToken": token}


@operation("UpdateMLModel")
def update(call: Call, params: Params) -> Answer:
    model = amazon_model(call, params["MLModelId"])
    patch = request_of(
        ModelUpdate, {"display_name": params.get("MLModelName"), "score_threshold": params.get("ScoreThreshold")}
    )
    call.service.models.update(model.id, patch)
    return {"MLModelId": model.id}


@operation("DeleteMLModel")
def delete(call: Call, params: Params) -> Answer:
    model = amazon_model(call, params["MLModelId"])
    # Amazon ML has no aliases: deleting by id removes any an mlsvc user gave it (the message says which).
    if model.endpoint is not None and model.endpoint.status != "NONE":
        call.service.models.unmount(model.id)  # a deleted model is served by no endpoint
    call.service.models.delete(model.id, force=True)
    return {"MLModelId": model.id}


@operation("CreateRealtimeEndpoint")
def create_endpoint(call: Call, params: Params) -> Answer:
    model = amazon_model(call, params["MLModelId"])
    mounted = call.service.models.mount(model.id, call.base_url)
    return {"MLModelId": model.id, "RealtimeEndpointInfo": _endpoint(mounted)}


@operation("DeleteRealtimeEndpoint")
def delete_endpoint(call: Call, params: Params) -> Answer:
    model = amazon_model(call, params["MLModelId"])
    unmounted = call.service.models.unmount(model.id)
    return {"MLModelId": model.id, "RealtimeEndpointInfo": _endpoint(unmounted)}


class _PeakRate:
    """Predict calls of each model in the last second of this process; beyond the endpoint's peak the caller is
    throttled (LimitExceededException), as Amazon ML's endpoints were."""

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, model_id: str, peak: int) -> bool:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(model_id, deque())
            while calls and now - calls[0] > 1.0:
                calls.popleft()
            if peak and len(calls) >= peak:
                return False
            calls.append(now)
            return True


PEAK_RATE = _PeakRate()


@operation("Predict")
def predict(call: Call, params: Params) -> Answer:
    model = amazon_model(call, params["MLModelId"])
    endpoint = model.endpoint
    if endpoint is None or endpoint.status != "READY":
        raise AmazonError(
            "PredictorNotMountedException",
            f"MLModel '{model.id}' has no real-time endpoint: call CreateRealtimeEndpoint first",
        )
    if not PEAK_RATE.admit(model.id, endpoint.peak_requests_per_second):
        raise AmazonError(
            "LimitExceededException",
            f"MLModel '{model.id}' answers at most {endpoint.peak_requests_per_second} predictions a second",
        )
    outcome = call.service.predictions.predict(model.id, PredictRequest.model_validate({"record": params["Record"]}))
    [prediction] = outcome.answer["predictions"]
    return {"Prediction": _prediction(model, prediction)}


def _prediction(model: Model, prediction: dict[str, Any]) -> Answer:
    """mlsvc's prediction as Amazon ML's: BINARY answers the label and its raw score (P of the positive class)
    under that label; MULTICLASS a score per class; REGRESSION the value."""
    details = {
        "PredictiveModelType": model.model_type.value if model.model_type else "",
        "Algorithm": _algorithm(model) or "sgd",
    }
    if model.model_type == ModelType.REGRESSION:
        return {"predictedValue": prediction["predicted_value"], "details": details}
    label, scores = prediction["predicted_label"], prediction["predicted_scores"] or {}
    if model.model_type == ModelType.BINARY:
        positive = (model.classes or ["0", "1"])[1]
        return {"predictedLabel": label, "predictedScores": {label: scores.get(positive, 0.0)}, "details": details}
    return {"predictedLabel": label, "predictedScores": scores, "details": details}
