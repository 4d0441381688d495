"""Console pages of batch predictions (the list, live, each job's progress and outputs, and the form that starts
one), with the create → train → predict flow of ``flow`` and the recommendation views it includes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from mlsvc.errors import MlsvcError
from mlsvc.resources import BatchPrediction, Status
from mlsvc.server.console import flow
from mlsvc.server.console.pages import PAGE_SIZE, error_page, here, render, service_of, signed_in_page
from mlsvc.service import ListQuery

router = APIRouter(prefix="/console", dependencies=[Depends(signed_in_page)])
RUNNING = (Status.PENDING, Status.INPROGRESS)


@router.get("/batch-predictions", response_class=HTMLResponse)
def batch_predictions(
    request: Request,
    next_token: str | None = Query(None, max_length=512),
    status: Status | None = None,
    model: str = Query("", max_length=200),
) -> HTMLResponse:
    """A page of batch jobs, newest first, following the running ones; below, the form that starts another."""
    service = service_of(request)
    try:
        items, token = service.batch_predictions.list(
            ListQuery(status=status.value if status else None, limit=PAGE_SIZE, next_token=next_token)
        )
    except MlsvcError as exc:  # a stale or edited next_token
        return error_page(request, exc, "batch")
    models, _ = service.models.list(ListQuery(status=Status.COMPLETED.value, limit=PAGE_SIZE))
    datasources, _ = service.datasources.list(ListQuery(status=Status.COMPLETED.value, limit=PAGE_SIZE))
    return render(
        request,
        "batch_list.html",
        title="Batch predictions",
        section="batch",
        items=items,
        next_token=token,
        paged=bool(next_token),
        status=status.value if status else "",
        statuses=[s.value for s in Status],
        live=any(bp.status in RUNNING for bp in items),
        self_url=here(request),
        models=[m for m in models if m.version is not None],
        datasources=datasources,
        chosen_model=model,
    )


@router.get("/batch-predictions/{batch_id}", response_class=HTMLResponse)
def batch_prediction(request: Request, batch_id: str) -> HTMLResponse:
    """One batch job: its progress while it runs; then rows scored, invalid rows, and where its files are."""
    try:
        batch = service_of(request).batch_predictions.get(batch_id)
    except MlsvcError as exc:
        return error_page(request, exc, "batch")
    return render(
        request,
        "batch_detail.html",
        title=batch.name,
        section="batch",
        bp=batch,
        live=batch.status in RUNNING,
        duration=_duration(batch),
    )


def _duration(batch: BatchPrediction) -> str:
    if batch.started_at is None or batch.finished_at is None:
        return ""
    return f"{(batch.finished_at - batch.started_at).total_seconds():.1f} s"


router.include_router(flow.router)
