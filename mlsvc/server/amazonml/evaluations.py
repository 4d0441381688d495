"""Amazon ML's Evaluation operations over mlsvc's evaluations: create, read, search, rename and delete."""

from __future__ import annotations

from mlsvc.resources import Evaluation, EvaluationCreate, EvaluationUpdate
from mlsvc.server.amazonml.common import (
    COMMON_VARIABLES,
    Answer,
    Call,
    Params,
    every,
    life,
    log_uri,
    operation,
    request_of,
)
from mlsvc.server.amazonml.describe import describe, wants_deleted
from mlsvc.server.amazonml.models import amazon_model

VARIABLES = {
    **COMMON_VARIABLES,
    "MLModelId": lambda e: e.model_id,
    "DataSourceId": lambda e: e.datasource_id,
}


@operation("CreateEvaluation")
def create(call: Call, params: Params) -> Answer:
    amazon_model(call, params["MLModelId"])  # by id: a name or an alias is not an MLModelId
    request = request_of(
        EvaluationCreate,
        {
            "id": params["EvaluationId"],
            "name": params.get("EvaluationName"),
            "model": params["MLModelId"],
            "datasource_id": params["EvaluationDataSourceId"],
            "wait_for_inputs": True,  # queued behind its model and datasource, as Amazon ML queued it
        },
    )
    call.service.evaluations.create(request)
    return {"EvaluationId": params["EvaluationId"]}


def shape(evaluation: Evaluation, data_uri: str | None) -> Answer:
    """An evaluation as Amazon ML's: its one metric (BinaryAUC, MulticlassAvgFScore or RegressionRMSE) as text."""
    metrics = None
    if evaluation.metric is not None and evaluation.value is not None:
        metrics = {"Properties": {evaluation.metric: repr(float(evaluation.value))}}
    return {
        "EvaluationId": evaluation.id,
        "MLModelId": evaluation.model_id,
        "EvaluationDataSourceId": evaluation.datasource_id,
        "InputDataLocationS3": data_uri,
        "Name": evaluation.name,
        "PerformanceMetrics": metrics,
        **life(evaluation),
    }


@operation("GetEvaluation")
def get(call: Call, params: Params) -> Answer:
    evaluation = call.service.evaluations.get(params["EvaluationId"])
    uri = call.service.datasources.get(evaluation.datasource_id).data_uri
    return {**shape(evaluation, uri), "LogUri": log_uri(call, f"/v1/evaluations/{evaluation.id}")}


@operation("DescribeEvaluations")
def search(call: Call, params: Params) -> Answer:
    items = list(every(call.service.evaluations.list, "DELETED" if wants_deleted(params) else None))
    uris = {d.id: d.data_uri for d in every(call.service.datasources.list)}
    variables = {**VARIABLES, "DataURI": lambda e: uris.get(e.datasource_id)}
    page, token = describe(items, params, variables, key=lambda e: e.id)
    return {"Results": [shape(e, uris.get(e.datasource_id)) for e in page], "NextToken": token}


@operation("UpdateEvaluation")
def update(call: Call, params: Params) -> Answer:
    patch = request_of(EvaluationUpdate, {"name": params["EvaluationName"]})
    call.service.evaluations.update(params["EvaluationId"], patch)
    return {"EvaluationId": params["EvaluationId"]}


@operation("DeleteEvaluation")
def delete(call: Call, params: Params) -> Answer:
    call.service.evaluations.delete(params["EvaluationId"])
    return {"EvaluationId": params["EvaluationId"]}
