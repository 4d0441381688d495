"""/v1/evaluations: evaluate a model on a labelled datasource; read, list, update and delete evaluations."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from mlsvc.resources import Evaluation, EvaluationCreate, EvaluationPage, EvaluationUpdate
from mlsvc.server.deps import ListQueryDep, ModelIdFilter, ServiceDep
from mlsvc.server.responses import errors, retried

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Evaluation,
    responses={**retried(Evaluation), **errors(404, 409, 413)},
)
def create_evaluation(body: EvaluationCreate, service: ServiceDep, response: Response) -> Evaluation:
    """Score a COMPLETED datasource that has the model's target with a COMPLETED model."""
    evaluation, created = service.evaluations.create(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return evaluation


@router.get("", response_model=EvaluationPage)
def list_evaluations(service: ServiceDep, query: ListQueryDep, model_id: ModelIdFilter) -> EvaluationPage:
    """A page of evaluations, newest first, filtered by ``model_id``, ``status``, ``name_prefix`` or ``tag``;
    DELETED ones only when ``status=DELETED`` asks for them. Pass ``next_token`` to get the next page."""
    items, token = service.evaluations.list(query, model_id)
    return EvaluationPage(items=items, next_token=token)


@router.get("/{evaluation_id}", response_model=Evaluation, responses=errors(404))
def get_evaluation(evaluation_id: str, service: ServiceDep) -> Evaluation:
    """An evaluation: its status and progress while it runs; then the model's metrics on the datasource, compared
    with a baseline."""
    return service.evaluations.get(evaluation_id)


@router.patch("/{evaluation_id}", response_model=Evaluation, responses=errors(404, 413))
def update_evaluation(evaluation_id: str, body: EvaluationUpdate, service: ServiceDep) -> Evaluation:
    """Rename an evaluation or change its tags (merged in; a tag set to null is removed)."""
    return service.evaluations.update(evaluation_id, body)


@router.delete("/{evaluation_id}", response_model=Evaluation, responses=errors(404))
def delete_evaluation(evaluation_id: str, service: ServiceDep) -> Evaluation:
    """Delete an evaluation (soft: it stays readable as DELETED). A queued one never runs; a running one stops
    within seconds."""
    return service.evaluations.delete(evaluation_id)
