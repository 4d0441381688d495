"""/v1/datasources: create, read, list, update and delete datasources."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from mlsvc.datasources.schema import schema_to_json
from mlsvc.resources import DataSource, DataSourceCreate, DataSourcePage, DataSourceUpdate, Schema
from mlsvc.server.deps import ListQueryDep, ServiceDep
from mlsvc.server.responses import errors, retried

router = APIRouter(prefix="/v1/datasources", tags=["datasources"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DataSource,
    responses={**retried(DataSource), **errors(409, 413)},
)
def create_datasource(body: DataSourceCreate, service: ServiceDep, response: Response) -> DataSource:
    """Register a CSV (one file or a prefix of files); a job infers the schema and computes statistics."""
    ds, created = service.datasources.create(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return ds


@router.get("", response_model=DataSourcePage)
def list_datasources(service: ServiceDep, query: ListQueryDep) -> DataSourcePage:
    """A page of datasources, newest first, filtered by ``status``, ``name_prefix`` or ``tag``; DELETED ones only
    when ``status=DELETED`` asks for them. Pass ``next_token`` from one page to get the next."""
    items, token = service.datasources.list(query)
    return DataSourcePage(items=items, next_token=token)


@router.get("/{datasource_id}", response_model=DataSource, responses=errors(404))
def get_datasource(datasource_id: str, service: ServiceDep) -> DataSource:
    """A datasource: its status, progress and message while its job runs; then its schema, row counts and
    statistics per attribute."""
    return service.datasources.get(datasource_id)


@router.get("/{datasource_id}/schema", response_model=Schema, responses=errors(404, 409))
def download_schema(datasource_id: str, service: ServiceDep) -> Response:
    """The datasource's schema as an Amazon ML ``.schema`` file (JSON, offered as a download)."""
    text = schema_to_json(service.datasources.schema(datasource_id))
    return Response(
        text,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{datasource_id}.schema"'},
    )


@router.patch("/{datasource_id}", response_model=DataSource, responses=errors(404, 413))
def update_datasource(datasource_id: str, body: DataSourceUpdate, service: ServiceDep) -> DataSource:
    """Rename a datasource or change its tags (merged in; a tag set to null is removed)."""
    return service.datasources.update(datasource_id, body)


@router.delete("/{datasource_id}", response_model=DataSource, responses=errors(404))
def delete_datasource(datasource_id: str, service: ServiceDep) -> DataSource:
    """Delete a datasource (soft: it stays readable as DELETED; deleting again changes nothing). Its job, if still
    queued, is cancelled; a running one stops within seconds and publishes nothing."""
    return service.datasources.delete(datasource_id)
