"""Datasource operations: register a CSV (or a SQL query staged as one) for its job to read, read, list, rename,
tag, delete, and its schema."""

from __future__ import annotations

from typing import Any

from mlsvc.config import Settings
from mlsvc.datasources import sql
from mlsvc.errors import ErrorCode, MlsvcError, did_you_mean
from mlsvc.metadata import MetadataStore, ResourceKind
from mlsvc.resources import DataSource, DataSourceCreate, Schema, Status
from mlsvc.security.uris import UriValidator
from mlsvc.service.common import Collection, name_from_uri, new_id, pending_record


class DataSources(Collection[DataSource]):
    """The operations on datasources."""

    kind: ResourceKind = "datasource"
    shape = DataSource

    def __init__(self, metadata: MetadataStore, uris: UriValidator, max_attempts: int, settings: Settings) -> None:
        super().__init__(metadata, max_attempts)
        self.uris = uris
        self.settings = settings  # which database servers a SQL datasource may reach

    def create(self, req: DataSourceCreate) -> tuple[DataSource, bool]:
        """A PENDING datasource and its job; (the datasource, whether it is new rather than a retry)."""
        body = req.model_dump(mode="json", by_alias=True, exclude={"id"})
        # A retry answers as the first time did, even if the file has gone since.
        if (existing := self.retried(req.id, body)) is not None:
            return existing, False
        resource_id = req.id or new_id("datasource")
        source = self._source(req, resource_id)
        if req.schema_uri:
            self.uris.check_readable(req.schema_uri)
        if req.data_schema is not None:
            _check_roles(req.data_schema, req.target, req.row_id)
        record = pending_record(body, resource_id, **source)
        return self.created(record, body, req.tags, "datasource.create")

    def _source(self, req: DataSourceCreate, resource_id: str) -> dict[str, Any]:
        """The fields that say where the rows are: the CSV's URI and a default name; for a query, its staged CSV's
        URI and its password (not in ``body``, so never in the request's hash: a retry is the same request)."""
        if req.sql is None:
            assert req.data_uri is not None  # DataSourceCreate holds exactly one of them
            data_uri = self.uris.check_readable(req.data_uri)
            return {"data_uri": data_uri, "name": req.name or name_from_uri(data_uri)}
        fields = sql.prepare(self.settings, self.uris, req.sql, resource_id)
        return {**fields, "name": req.name or f"{req.sql.database} query"}

    def delete(self, resource_id: str) -> DataSource:
        """Soft delete; a SQL datasource whose job has not ended loses its password with it (a running job holds it
        already, and stops)."""
        sql.forget_password(self.metadata, resource_id)
        return super().delete(resource_id)

    def schema(self, resource_id: str) -> Schema:
        """The datasource's schema, once its job has settled it."""
        ds = self.get(resource_id)
        if ds.status == Status.DELETED:
            raise MlsvcError(
                ErrorCode.NOT_READY, f"datasource '{resource_id}' is DELETED; its schema is no longer served"
            )
        if ds.data_schema is None:
            raise MlsvcError(
                ErrorCode.NOT_READY,
                f"datasource '{resource_id}' is {ds.status.value}; its schema is known once it is COMPLETED",
            )
        return ds.data_schema


def _check_roles(schema: Schema, target: str | None, row_id: str | None) -> None:
    names = [a.attributeName for a in schema.attributes]
    for role, name in (("target", target), ("row_id", row_id)):
        if name is not None and name not in names:
            raise MlsvcError(
                ErrorCode.VALIDATION_ERROR,
                f"{role} column '{name}' not found{did_you_mean(name, names)}; columns are {names}",
            )
