"""/v1/evaluations: evaluate a model on a labelled datasource; read, list, update and delete evaluations."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from mlsvc.resources import Evaluation, EvaluationCreate, EvaluationPage, EvaluationUpdate
from mlsvc.server.deps import Limit, NamePrefix, NextToken, ServiceDep, StatusFilter, TagFilter

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=Evaluation)
def create_evaluation(body: EvaluationCreate, service: ServiceDep, response: Response) -> Evaluation:
    """Score a COMPLETED datasource that has the model's target with a COMPLETED model."""
    evaluation, created = service.create_evaluation(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return evaluation


@router.get("", response_model=EvaluationPage)
def list_evaluations(
    service: ServiceDep,
    limit: Limit = 100,
    next_token: NextToken = None,
    status: StatusFilter = None,
    name_prefix: NamePrefix = None,
    tag: TagFilter = None,
    model_id: str | None = Query(None, max_length=64),
) -> EvaluationPage:
    items, token = service.list_evaluations(
        status=status, name_prefix=name_prefix, tag=tag, model_id=model_id, limit=limit, next_token=next_token
    )
    return EvaluationPage(items=items, next_token=token)


@router.get("/{evaluation_id}", response_model=Evaluation)
def get_evaluation(evaluation_id: str, service: ServiceDep) -> Evaluation:
    return service.get_evaluation(evaluation_id)


@router.patch("/{evaluation_id}", response_model=Evaluation)
def update_evaluation(evaluation_id: str, body: EvaluationUpdate, service: ServiceDep) -> Evaluation:
    return service.update_evaluation(evaluation_id, body)


@router.delete("/{evaluation_id}", response_model=Evaluation)
def delete_evaluation(evaluation_id: str, service: ServiceDep) -> Evaluation:
    return service.delete_evaluation(evaluation_id)
