"""Amazon ML's DataSource operations over mlsvc's datasources: from S3, from RDS (MySQL) and from Redshift
(PostgreSQL), read, search, rename and delete."""

from __future__ import annotations

import json
from typing import Any

from mlsvc.datasources.schema import schema_to_json
from mlsvc.resources import DataSource, DataSourceCreate, DataSourceUpdate
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

# Amazon ML's DataSourceFilterVariable → the datasource's value it compares.
VARIABLES = {
    **COMMON_VARIABLES,
    "DataLocationS3": lambda d: d.data_uri,
}


def _created(call: Call, params: Params, fields: dict[str, Any]) -> Answer:
    request = request_of(
        DataSourceCreate,
        {
            "id": params["DataSourceId"],
            "name": params.get("DataSourceName"),
            "compute_statistics": params.get("ComputeStatistics", False),
            **fields,
        },
    )
    call.service.datasources.create(request)
    return {"DataSourceId": params["DataSourceId"]}


def _spec(spec: Params, schema_uri_member: str) -> dict[str, Any]:
    """The members every DataSpec shares: its schema (inline or at a URI) and its rearrangement."""
    return {
        "schema": json_member(spec, "DataSchema"),
        "schema_uri": spec.get(schema_uri_member),
        "rearrangement": json_member(spec, "DataRearrangement"),
    }


@operation("CreateDataSourceFromS3")
def create_from_s3(call: Call, params: Params) -> Answer:
    spec = params["DataSpec"]
    return _created(call, params, {"data_uri": spec["DataLocationS3"], **_spec(spec, "DataSchemaLocationS3")})


def _from_sql(call: Call, params: Params, spec: Params, engine: str, identifier: str) -> Answer:
    """An RDS or Redshift DataSpec as a native SQL datasource: the query staged under S3StagingLocation."""
    database, credentials = spec["DatabaseInformation"], spec["DatabaseCredentials"]
    sql = {
        "engine": engine,
        "instance": database[identifier],
        "database": database["DatabaseName"],
        "username": credentials["Username"],
        "password": credentials["Password"],
        "query": spec["SelectSqlQuery"],
        "staging_uri": spec["S3StagingLocation"],
    }
    return _created(call, params, {"sql": sql, **_spec(spec, "DataSchemaUri")})


@operation("CreateDataSourceFromRDS")
def create_from_rds(call: Call, params: Params) -> Answer:
    return _from_sql(call, params, params["RDSData"], "mysql", "InstanceIdentifier")


@operation("CreateDataSourceFromRedshift")
def create_from_redshift(call: Call, params: Params) -> Answer:
    return _from_sql(call, params, params["DataSpec"], "postgresql", "ClusterIdentifier")


def shape(call: Call, ds: DataSource) -> Answer:
    """A datasource as Amazon ML's DataSource."""
    answer: Answer = {
        "DataSourceId": ds.id,
        "DataLocationS3": ds.data_uri,
        "DataRearrangement": json.dumps(ds.rearrangement.model_dump(exclude_none=True)) if ds.rearrangement else None,
        "NumberOfFiles": len(ds.files) if ds.files else None,
        "Name": ds.name,
        "ComputeStatistics": ds.compute_statistics,
        **life(ds),
    }
    sql = getattr(ds, "sql", None)
    if sql is not None:
        answer.update(_sql_metadata(sql))
    return answer


def _sql_metadata(sql: Any) -> Answer:
    if sql.engine == "mysql":
        database = {"InstanceIdentifier": sql.instance or sql.host, "DatabaseName": sql.database}
        return {"RDSMetadata": {"Database": database, "DatabaseUserName": sql.username, "SelectSqlQuery": sql.query}}
    database = {"ClusterIdentifier": sql.instance or sql.host, "DatabaseName": sql.database}
    return {
        "RedshiftMetadata": {
            "RedshiftDatabase": database,
            "DatabaseUserName": sql.username,
            "SelectSqlQuery": sql.query,
        }
    }


@operation("GetDataSource")
def get(call: Call, params: Params) -> Answer:
    ds = call.service.datasources.get(params["DataSourceId"])
    answer = {**shape(call, ds), "LogUri": log_uri(call, f"/v1/datasources/{ds.id}")}
    if params.get("Verbose") and ds.data_schema is not None:
        answer["DataSourceSchema"] = schema_to_json(ds.data_schema)
    return answer


@operation("DescribeDataSources")
def search(call: Call, params: Params) -> Answer:
    items = list(every(call.service.datasources.list))
    if wants_deleted(params):
        items = list(every(call.service.datasources.list, "DELETED"))
    page, token = describe(items, params, VARIABLES, key=lambda d: d.id)
    return {"Results": [shape(call, d) for d in page], "NextToken": token}


@operation("UpdateDataSource")
def update(call: Call, params: Params) -> Answer:
    patch = request_of(DataSourceUpdate, {"name": params["DataSourceName"]})
    call.service.datasources.update(params["DataSourceId"], patch)
    return {"DataSourceId": params["DataSourceId"]}


@operation("DeleteDataSource")
def delete(call: Call, params: Params) -> Answer:
    call.service.datasources.delete(params["DataSourceId"])
    return {"DataSourceId": params["DataSourceId"]}
