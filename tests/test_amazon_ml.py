"""Amazon ML's API, driven by the unmodified boto3 client and the AWS CLI over a socket against the real server, the
loopback S3 server, the local MariaDB (for RDS) and the local PostgreSQL (for Redshift)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

from tests.servers import CHURN, RunningServer, start_server, stop_server

KEY_ID, SECRET = "AKIDMLSVCTEST0001", "mlsvc-test-secret-key/0001"
FAST = "3"  # seconds of search for each model: what is checked is the API, not the model's quality
WAIT = {"Delay": 1, "MaxAttempts": 240}


@pytest.fixture(scope="module")
def server(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        "MLSVC_AWS_CREDENTIALS": f"{KEY_ID}:{SECRET}",
        "MLSVC_RDS_INSTANCES": "local-mariadb=127.0.0.1:3306",
        "MLSVC_REDSHIFT_CLUSTERS": "local-postgres=127.0.0.1:5432",
    }
    running = start_server(tmp_path_factory.mktemp("amazonml-home"), env)
    yield running
    stop_server(running)


def _client(server: RunningServer, secret: str = SECRET, key_id: str = KEY_ID, **config: Any) -> Any:
    return boto3.client(
        "machinelearning",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **config),
    )


class ShapeChecks:
    """Every raw answer against the service model: no member it does not declare, each of its declared type."""

    def __init__(self, client: Any) -> None:
        self.model = client.meta.service_model
        self.seen: set[str] = set()
        client.meta.events.register("after-call.machinelearning", self._check)

    def _check(self, http_response: Any, model: Any, **_: Any) -> None:
        self.seen.add(model.name)
        if http_response.status_code != 200:
            body = json.loads(http_response.content)
            assert set(body) == {"__type", "message"}, body
            return
        assert http_response.headers["content-type"] == "application/x-amz-json-1.1"
        if model.output_shape is not None:
            _conforms(model.output_shape, json.loads(http_response.content), model.name)


def _conforms(shape: Any, value: Any, where: str) -> None:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), where
        assert set(value) <= set(shape.members), f"{where}: undeclared {set(value) - set(shape.members)}"
        for name in shape.required_members:
            assert name in value, f"{where}: required {name} missing"
        for name, item in value.items():
            _conforms(shape.members[name], item, f"{where}.{name}")
    elif kind == "list":
        assert isinstance(value, list), where
        for item in value:
            _conforms(shape.member, item, where)
    elif kind == "map":
        assert isinstance(value, dict), where
        for item in value.values():
            _conforms(shape.value, item, where)
    elif kind == "string":
        assert isinstance(value, str), where
        if shape.enum:
            assert value in shape.enum, f"{where}: {value!r}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind in ("float", "double", "timestamp"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
    elif kind == "boolean":
        assert isinstance(value, bool), where


@pytest.fixture(scope="module")
def ml(server: RunningServer) -> Any:
    client = _client(server)
    client.shape_checks = ShapeChecks(client)
    return client


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> str:
    name = f"amazonml-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    s3_client.upload_file(str(CHURN), name, "in/churn.csv")
    s3_client.upload_file(str(CHURN) + ".schema", name, "in/churn.csv.schema")
    return name


def _error(call: Any, **params: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    error = caught.value.response
    return error["Error"]["Code"], error["Error"]["Message"], error["ResponseMetadata"]["HTTPStatusCode"]


def _rearrangement(begin: int, end: int) -> str:
    return json.dumps({"splitting": {"percentBegin": begin, "percentEnd": end}})


@pytest.fixture(scope="module")
def trained(ml: Any, bucket: str) -> dict[str, str]:
    """A training and an evaluation datasource from S3 (70 / 30 by rearrangement), and a BINARY model on the first."""
    run = uuid.uuid4().hex[:6]
    ids = {"train": f"ds-train-{run}", "test": f"ds-test-{run}", "model": f"ml-churn-{run}"}
    for key, (begin, end) in (("train", (0, 70)), ("test", (70, 100))):
        ml.create_data_source_from_s3(
            DataSourceId=ids[key],
            DataSourceName=f"churn {key} {run}",
            DataSpec={
                "DataLocationS3": f"s3://{bucket}/in/churn.csv",
                "DataSchemaLocationS3": f"s3://{bucket}/in/churn.csv.schema",
                "DataRearrangement": _rearrangement(begin, end),
            },
            ComputeStatistics=True,
        )
    ml.get_waiter("data_source_available").wait(FilterVariable="Name", Prefix=f"churn train {run}", WaiterConfig=WAIT)
    ml.get_waiter("data_source_available").wait(FilterVariable="Name", EQ=f"churn test {run}", WaiterConfig=WAIT)
    ml.create_ml_model(
        MLModelId=ids["model"],
        MLModelName=f"churn model {run}",
        MLModelType="BINARY",
        TrainingDataSourceId=ids["train"],
        Parameters={"sgd.maxPasses": "10", "sgd.shuffleType": "auto", "mlsvc.timeBudgetSeconds": FAST},
    )
    ml.get_waiter("ml_model_available").wait(FilterVariable="TrainingDataSourceId", EQ=ids["train"], WaiterConfig=WAIT)
    return ids


def test_s3_datasources_read_as_amazon_describes_them(ml: Any, trained: dict[str, str], bucket: str) -> None:
    ds = ml.get_data_source(DataSourceId=trained["train"], Verbose=True)
    assert ds["Status"] == "COMPLETED" and ds["DataLocationS3"] == f"s3://{bucket}/in/churn.csv"
    assert json.loads(ds["DataRearrangement"])["splitting"]["percentEnd"] == 70
    assert ds["ComputeStatistics"] is True and ds["NumberOfFiles"] == 1
    schema = json.loads(ds["DataSourceSchema"])
    assert schema["targetAttributeName"] == "churned" and schema["rowId"] == "customer_id"
    assert ds["CreatedAt"] <= ds["LastUpdatedAt"] and ds["ComputeTime"] >= 0 and ds["FinishedAt"] >= ds["StartedAt"]
    assert "DataSourceSchema" not in ml.get_data_source(DataSourceId=trained["train"])
    assert ds["LogUri"].endswith(f"/v1/datasources/{trained['train']}")


def test_a_model_trains_evaluates_scores_in_batch_and_predicts_on_its_endpoint(
    ml: Any, trained: dict[str, str], bucket: str, s3_client: Any, server: RunningServer
) -> None:
    model = ml.get_ml_model(MLModelId=trained["model"], Verbose=True)
    assert model["Status"] == "COMPLETED" and model["MLModelType"] == "BINARY"
    assert model["TrainingParameters"]["sgd.maxPasses"] == "10" and model["ScoreThreshold"] == 0.5
    assert model["EndpointInfo"]["EndpointStatus"] == "NONE"
    assert model["InputDataLocationS3"] == f"s3://{bucket}/in/churn.csv"
    assert json.loads(model["Schema"])["targetAttributeName"] == "churned"
    assert "outputs" in json.loads(model["Recipe"])  # shown in Amazon ML's recipe language

    evaluation_id = f"ev-{trained['model']}"
    ml.create_evaluation(EvaluationId=evaluation_id, MLModelId=trained["model"], EvaluationDataSourceId=trained["test"])
    ml.get_waiter("evaluation_available").wait(FilterVariable="MLModelId", EQ=trained["model"], WaiterConfig=WAIT)
    evaluation = ml.get_evaluation(EvaluationId=evaluation_id)
    auc = float(evaluation["PerformanceMetrics"]["Properties"]["BinaryAUC"])
    native = httpx.get(f"{server.url}/v1/evaluations/{evaluation_id}").json()
    assert auc == pytest.approx(native["value"]) and auc > 0.6

    batch_id = f"bp-{trained['model']}"
    ml.create_batch_prediction(
        BatchPredictionId=batch_id,
        MLModelId=trained["model"],
        BatchPredictionDataSourceId=trained["test"],
        OutputUri=f"s3://{bucket}/out/",
    )
    ml.get_waiter("batch_prediction_available").wait(FilterVariable="MLModelId", EQ=trained["model"], WaiterConfig=WAIT)
    batch = ml.get_batch_prediction(BatchPredictionId=batch_id)
    assert batch["TotalRecordCount"] == 1500 and batch["InvalidRecordCount"] == 0
    manifest = s3_client.get_object(Bucket=bucket, Key=f"out/batch-prediction/{batch_id}.manifest")["Body"].read()
    [(source, result)] = json.loads(manifest).items()
    assert source == f"s3://{bucket}/in/churn.csv" and "/batch-prediction/result/" in result
    key = result.removeprefix(f"s3://{bucket}/")
    rows = gzip.decompress(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()).decode().splitlines()
    assert rows[0].split(",")[-2:] == ["bestAnswer", "score"] and len(rows) == 1501

    record = {"tenure_months": "2", "contract": "month-to-month", "monthly_charges": "99.5", "region": "02139"}
    code, message, status = _error(ml.predict, MLModelId=trained["model"], Record=record, PredictEndpoint=server.url)
    assert (code, status) == ("PredictorNotMountedException", 400) and "CreateRealtimeEndpoint" in message
    mounted = ml.create_realtime_endpoint(MLModelId=trained["model"])["RealtimeEndpointInfo"]
    assert mounted["EndpointStatus"] == "READY" and mounted["EndpointUrl"] == server.url
    assert mounted["PeakRequestsPerSecond"] == 200
    answer = ml.predict(MLModelId=trained["model"], Record=record, PredictEndpoint=mounted["EndpointUrl"])["Prediction"]
    rest = httpx.post(f"{server.url}/v1/models/{trained['model']}/predict", json={"record": record}).json()
    [expected] = rest["predictions"]
    assert answer["predictedLabel"] == expected["predicted_label"]
    assert answer["predictedScores"] == {answer["predictedLabel"]: pytest.approx(expected["predicted_scores"]["yes"])}
    assert answer["details"]["PredictiveModelType"] == "BINARY"
    assert ml.get_ml_model(MLModelId=trained["model"])["EndpointInfo"]["EndpointStatus"] == "READY"
    gone = ml.delete_realtime_endpoint(MLModelId=trained["model"])["RealtimeEndpointInfo"]
    assert gone["EndpointStatus"] == "NONE"
    assert _error(ml.predict, MLModelId=trained["model"], Record=record, PredictEndpoint=server.url)[0] == (
        "PredictorNotMountedException"
    )


def test_updates_rename_and_rethreshold(ml: Any, trained: dict[str, str], server: RunningServer) -> None:
    updated = ml.update_ml_model(MLModelId=trained["model"], MLModelName="renamed", ScoreThreshold=0.7)
    assert updated["MLModelId"] == trained["model"]
    model = ml.get_ml_model(MLModelId=trained["model"])
    assert model["Name"] == "renamed" and model["ScoreThreshold"] == 0.7 and model["ScoreThresholdLastUpdatedAt"]
    assert httpx.get(f"{server.url}/v1/models/{trained['model']}").json()["score_threshold"] == 0.7
    ml.update_data_source(DataSourceId=trained["test"], DataSourceName="the test rows")
    assert ml.get_data_source(DataSourceId=trained["test"])["Name"] == "the test rows"


def test_tags_follow_amazons_rules(ml: Any, trained: dict[str, str], server: RunningServer) -> None:
    target = {"ResourceId": trained["model"], "ResourceType": "MLModel"}
    ml.add_tags(Tags=[{"Key": "team", "Value": "growth"}, {"Key": "stage", "Value": "trial run"}], **target)
    assert ml.describe_tags(**target)["Tags"] == [
        {"Key": "stage", "Value": "trial run"},
        {"Key": "team", "Value": "growth"},
    ]
    assert httpx.get(f"{server.url}/v1/models/{trained['model']}").json()["tags"]["team"] == "growth"
    ml.delete_tags(TagKeys=["stage"], **target)
    assert [t["Key"] for t in ml.describe_tags(**target)["Tags"]] == ["team"]
    assert _error(ml.add_tags, Tags=[{"Key": "aws:owner", "Value": "x"}], **target)[0] == "InvalidTagException"
    assert _error(ml.add_tags, Tags=[{"Key": "semi;colon", "Value": "x"}], **target)[0] == "InvalidTagException"
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(100)]
    assert _error(ml.add_tags, Tags=many, **target)[0] == "TagLimitExceededException"
    ds_target = {"ResourceId": trained["train"], "ResourceType": "DataSource"}
    ml.add_tags(Tags=[{"Key": "source", "Value": "s3"}], **ds_target)
    assert ml.describe_tags(**ds_target)["Tags"] == [{"Key": "source", "Value": "s3"}]
    assert _error(ml.describe_tags, ResourceId="nope", ResourceType="Evaluation")[0] == "ResourceNotFoundException"


def test_describe_filters_sorts_and_pages(ml: Any, trained: dict[str, str], bucket: str) -> None:
    run = uuid.uuid4().hex[:6]
    made = [f"ds-page-{run}-{i}" for i in range(3)]
    for ds_id in made:
        ml.create_data_source_from_s3(
            DataSourceId=ds_id,
            DataSourceName=f"page {run} {ds_id[-1]}",
            DataSpec={"DataLocationS3": f"s3://{bucket}/in/churn.csv"},
            ComputeStatistics=False,
        )
        time.sleep(0.01)  # distinct creation times, so the order by CreatedAt is the order made
    search = {"FilterVariable": "Name", "Prefix": f"page {run}"}
    every = ml.describe_data_sources(**search)["Results"]
    assert [d["DataSourceId"] for d in every] == made  # sorted by the variable, ascending by default
    assert [d["DataSourceId"] for d in ml.describe_data_sources(SortOrder="dsc", **search)["Results"]] == made[::-1]
    pages, token = [], None
    while True:
        page = ml.describe_data_sources(Limit=1, **search, **({"NextToken": token} if token else {}))
        pages += [d["DataSourceId"] for d in page["Results"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert pages == made
    paginated = ml.get_paginator("describe_data_sources").paginate(PaginationConfig={"PageSize": 2}, **search)
    assert [d["DataSourceId"] for p in paginated for d in p["Results"]] == made
    first = every[0]["CreatedAt"]
    later = ml.describe_data_sources(FilterVariable="CreatedAt", GT=str(first.timestamp()))["Results"]
    assert made[0] not in {d["DataSourceId"] for d in later} and set(made[1:]) <= {d["DataSourceId"] for d in later}
    named = ml.describe_data_sources(FilterVariable="Name", EQ=f"page {run} 1")["Results"]
    assert [d["DataSourceId"] for d in named] == [made[1]]
    others = ml.describe_data_sources(FilterVariable="Name", NE=f"page {run} 1", Prefix=f"page {run}")["Results"]
    assert [d["DataSourceId"] for d in others] == [made[0], made[2]]
    at = ml.describe_data_sources(FilterVariable="DataLocationS3", EQ=f"s3://{bucket}/in/churn.csv")["Results"]
    assert set(made) <= {d["DataSourceId"] for d in at}
    models = ml.describe_ml_models(FilterVariable="MLModelType", EQ="BINARY")["Results"]
    assert trained["model"] in {m["MLModelId"] for m in models}
    by_data = ml.describe_ml_models(FilterVariable="TrainingDataURI", EQ=f"s3://{bucket}/in/churn.csv")["Results"]
    assert trained["model"] in {m["MLModelId"] for m in by_data}
    assert ml.describe_evaluations(FilterVariable="DataSourceId", EQ="no-such-ds")["Results"] == []
    assert ml.describe_batch_predictions(FilterVariable="Status", EQ="FAILED", Limit=5)["Results"] == []
    code, message, _ = _error(ml.describe_data_sources, NextToken="not-a-token")
    assert code == "InvalidInputException" and "NextToken" in message


def test_creates_are_idempotent_and_unknown_ids_are_not_found(ml: Any, trained: dict[str, str], bucket: str) -> None:
    spec = {"DataLocationS3": f"s3://{bucket}/in/churn.csv", "DataRearrangement": _rearrangement(0, 70)}
    again = ml.create_data_source_from_s3(
        DataSourceId=trained["train"],
        DataSourceName=ml.get_data_source(DataSourceId=trained["train"])["Name"],
        DataSpec={**spec, "DataSchemaLocationS3": f"s3://{bucket}/in/churn.csv.schema"},
        ComputeStatistics=True,
    )
    assert again["DataSourceId"] == trained["train"]
    code, message, status = _error(
        ml.create_data_source_from_s3, DataSourceId=trained["train"], DataSpec=spec, ComputeStatistics=True
    )
    assert (code, status) == ("IdempotentParameterMismatchException", 400) and trained["train"] in message
    code, _, _ = _error(
        ml.create_ml_model, MLModelId=trained["model"], MLModelType="REGRESSION", TrainingDataSourceId=trained["train"]
    )
    assert code == "IdempotentParameterMismatchException"
    for call, member in (
        (ml.get_data_source, "DataSourceId"),
        (ml.get_ml_model, "MLModelId"),
        (ml.get_evaluation, "EvaluationId"),
        (ml.get_batch_prediction, "BatchPredictionId"),
        (ml.delete_data_source, "DataSourceId"),
        (ml.delete_ml_model, "MLModelId"),
        (ml.delete_evaluation, "EvaluationId"),
        (ml.delete_batch_prediction, "BatchPredictionId"),
        (ml.create_realtime_endpoint, "MLModelId"),
        (ml.delete_realtime_endpoint, "MLModelId"),
    ):
        code, message, status = _error(call, **{member: "no-such-id"})
        assert (code, status) == ("ResourceNotFoundException", 400) and "no-such-id" in message
    for call, members in (
        (ml.update_data_source, {"DataSourceId": "no-such-id", "DataSourceName": "x"}),
        (ml.update_ml_model, {"MLModelId": "no-such-id", "MLModelName": "x"}),
        (ml.update_evaluation, {"EvaluationId": "no-such-id", "EvaluationName": "x"}),
        (ml.update_batch_prediction, {"BatchPredictionId": "no-such-id", "BatchPredictionName": "x"}),
    ):
        assert _error(call, **members)[0] == "ResourceNotFoundException"


def test_bad_input_is_refused_with_amazons_messages(server: RunningServer, trained: dict[str, str]) -> None:
    raw = _client(server, parameter_validation=False)  # what a hand-written caller could send
    code, message, status = _error(
        raw.create_ml_model, MLModelId="bad id!", MLModelType="CLUSTERING", TrainingDataSourceId=trained["train"]
    )
    assert (code, status) == ("InvalidInputException", 400)
    assert "2 validation errors detected" in message and "Member must satisfy enum value set" in message
    assert "mLModelId" in message and "regular expression pattern" in message
    code, message, _ = _error(raw.get_ml_model)
    assert code == "InvalidInputException" and "Value null at 'mLModelId'" in message
    code, message, _ = _error(raw.describe_data_sources, Limit=1000)
    assert code == "InvalidInputException" and "less than or equal to 100" in message
    code, message, _ = _error(
        raw.create_ml_model,
        MLModelId=f"ml-bad-{uuid.uuid4().hex[:6]}",
        MLModelType="BINARY",
        TrainingDataSourceId=trained["train"],
        Parameters={"sgd.maxPasses": "20000"},
    )
    assert code == "InvalidInputException" and "sgd.maxPasses is an integer from 1 to 10000" in message
    code, message, _ = _error(
        raw.create_data_source_from_s3,
        DataSourceId=f"ds-bad-{uuid.uuid4().hex[:6]}",
        DataSpec={"DataLocationS3": "s3://b/x.csv", "DataSchema": "{not json"},
    )
    assert code == "InvalidInputException" and "DataSchema is not valid JSON" in message
    code, message, _ = _error(
        raw.create_evaluation,
        EvaluationId=f"ev-bad-{uuid.uuid4().hex[:6]}",
        MLModelId=trained["model"],
        EvaluationDataSourceId="no-such-ds",
    )
    assert code == "ResourceNotFoundException" and "no-such-ds" in message
    answer = httpx.post(server.url + "/", content=b"{}", headers={"X-Amz-Target": "AmazonML_20141212.Nope"})
    # Unsigned, on a server with credentials: refused before the target is looked at (a signed unknown target is
    # UnknownOperationException, in test_unknown_operations_and_empty_names_are_the_callers_errors).
    assert answer.status_code == 400 and answer.json()["__type"] == "MissingAuthenticationTokenException"


def test_signatures_are_verified(server: RunningServer) -> None:
    assert _client(server).describe_ml_models(Limit=1)["ResponseMetadata"]["HTTPStatusCode"] == 200
    code, message, status = _error(_client(server, secret="wrong-secret").describe_ml_models)
    assert (code, status) == ("InvalidSignatureException", 400) and "signature we calculated" in message
    code, _, _ = _error(_client(server, key_id="AKIDUNKNOWN").describe_ml_models)
    assert code == "UnrecognizedClientException"
    code, _, _ = _error(_client(server, signature_version=UNSIGNED).describe_ml_models)
    assert code == "MissingAuthenticationTokenException"
    tampered = httpx.post(
        server.url + "/",
        content=b"{}",
        headers={
            "X-Amz-Target": "AmazonML_20141212.DescribeMLModels",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/machinelearning/aws4_request, "
            "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64,
            "X-Amz-Date": "20260101T000000Z",
        },
    )
    assert tampered.status_code == 400 and tampered.json()["__type"] == "InvalidSignatureException"
    assert "expired" in tampered.json()["message"].lower()
    replayed = httpx.post(
        server.url + "/",
        content=b"{}",
        headers={
            "X-Amz-Target": "AmazonML_20141212.DeleteDataSource",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/machinelearning/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
            "X-Amz-Date": "20260101T000000Z",
        },
    )
    assert replayed.status_code == 400 and "'x-amz-target' must be a 'SignedHeader'" in replayed.json()["message"]


def test_deletes_leave_deleted_resources_readable(ml: Any, bucket: str) -> None:
    ds_id = f"ds-del-{uuid.uuid4().hex[:6]}"
    ml.create_data_source_from_s3(DataSourceId=ds_id, DataSpec={"DataLocationS3": f"s3://{bucket}/in/churn.csv"})
    assert ml.delete_data_source(DataSourceId=ds_id)["DataSourceId"] == ds_id
    assert ml.get_data_source(DataSourceId=ds_id)["Status"] == "DELETED"
    deleted = ml.describe_data_sources(FilterVariable="Status", EQ="DELETED")["Results"]
    assert ds_id in {d["DataSourceId"] for d in deleted}
    assert ds_id not in {d["DataSourceId"] for d in ml.describe_data_sources()["Results"]}


def _aws(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """`aws machinelearning …` as a person types it, with --endpoint-url the only change."""
    aws = Path(sys.executable).with_name("aws")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    env.pop("AWS_ENDPOINT_URL", None)  # the S3 server's, for the tests' boto3 clients: the CLI must name mlsvc's
    return subprocess.run(
        [str(aws), "machinelearning", *args, "--endpoint-url", server.url, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _aws_json(server: RunningServer, *args: str) -> Any:
    done = _aws(server, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


def test_the_aws_cli_drives_it(server: RunningServer, trained: dict[str, str], bucket: str) -> None:
    ds_id = f"ds-cli-{uuid.uuid4().hex[:6]}"
    spec = json.dumps(
        {"DataLocationS3": f"s3://{bucket}/in/churn.csv", "DataSchemaLocationS3": f"s3://{bucket}/in/churn.csv.schema"}
    )
    made = _aws_json(
        server, "create-data-source-from-s3", "--data-source-id", ds_id, "--data-spec", spec, "--compute-statistics"
    )
    assert made == {"DataSourceId": ds_id}
    found = _aws_json(
        server, "describe-data-sources", "--filter-variable", "DataLocationS3", "--eq", f"s3://{bucket}/in/churn.csv"
    )
    assert ds_id in {d["DataSourceId"] for d in found["Results"]}
    deadline = time.monotonic() + 120
    while _aws_json(server, "get-data-source", "--data-source-id", ds_id)["Status"] != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(1)
    verbose = _aws_json(server, "get-data-source", "--data-source-id", ds_id, "--verbose")
    assert json.loads(verbose["DataSourceSchema"])["targetAttributeName"] == "churned"
    model = _aws_json(server, "get-ml-model", "--ml-model-id", trained["model"])
    assert model["MLModelType"] == "BINARY"
    _aws_json(
        server, "add-tags", "--resource-id", ds_id, "--resource-type", "DataSource", "--tags", "Key=owner,Value=cli"
    )
    tags = _aws_json(server, "describe-tags", "--resource-id", ds_id, "--resource-type", "DataSource")
    assert tags["Tags"] == [{"Key": "owner", "Value": "cli"}]
    endpoint = _aws_json(server, "create-realtime-endpoint", "--ml-model-id", trained["model"])
    url = endpoint["RealtimeEndpointInfo"]["EndpointUrl"]
    answer = _aws_json(
        server,
        "predict",
        "--ml-model-id",
        trained["model"],
        "--record",
        "tenure_months=40,contract=two-year",
        "--predict-endpoint",
        url,
    )
    assert answer["Prediction"]["predictedLabel"] in ("yes", "no")
    _aws_json(server, "delete-realtime-endpoint", "--ml-model-id", trained["model"])
    assert _aws_json(server, "delete-data-source", "--data-source-id", ds_id) == {"DataSourceId": ds_id}
    missing = _aws(server, "get-ml-model", "--ml-model-id", "no-such-model")
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
    refused = _aws(server, "describe-ml-models", "--no-sign-request")
    assert refused.returncode != 0 and "MissingAuthenticationTokenException" in refused.stderr


@pytest.mark.parametrize(
    ("model_type", "target", "metric"),
    [("REGRESSION", "monthly_charges", "RegressionRMSE"), ("MULTICLASS", "contract", "MulticlassAvgFScore")],
)
def test_regression_and_multiclass_models_evaluate_and_predict(
    ml: Any, bucket: str, server: RunningServer, model_type: str, target: str, metric: str
) -> None:
    run = uuid.uuid4().hex[:6]
    schema = json.loads(Path(str(CHURN) + ".schema").read_text())
    schema["targetAttributeName"] = target
    ds_id, model_id, evaluation_id = f"ds-{model_type.lower()}-{run}", f"ml-{model_type.lower()}-{run}", f"ev-{run}"
    spec = {"DataLocationS3": f"s3://{bucket}/in/churn.csv", "DataSchema": json.dumps(schema)}
    ml.create_data_source_from_s3(DataSourceId=ds_id, DataSpec=spec, ComputeStatistics=True)
    ml.get_waiter("data_source_available").wait(
        FilterVariable="DataLocationS3", EQ=spec["DataLocationS3"], WaiterConfig=WAIT
    )
    ml.create_ml_model(
        MLModelId=model_id,
        MLModelType=model_type,
        TrainingDataSourceId=ds_id,
        Parameters={"mlsvc.timeBudgetSeconds": FAST},
    )
    ml.get_waiter("ml_model_available").wait(FilterVariable="MLModelType", EQ=model_type, WaiterConfig=WAIT)
    ml.create_evaluation(EvaluationId=evaluation_id, MLModelId=model_id, EvaluationDataSourceId=ds_id)
    ml.get_waiter("evaluation_available").wait(FilterVariable="DataSourceId", EQ=ds_id, WaiterConfig=WAIT)
    [name] = ml.get_evaluation(EvaluationId=evaluation_id)["PerformanceMetrics"]["Properties"]
    assert name == metric
    url = ml.create_realtime_endpoint(MLModelId=model_id)["RealtimeEndpointInfo"]["EndpointUrl"]
    record = {"tenure_months": "12", "contract": "one-year", "monthly_charges": "70", "internet_service": "fiber"}
    record.pop(target)
    prediction = ml.predict(MLModelId=model_id, Record=record, PredictEndpoint=url)["Prediction"]
    [native] = httpx.post(f"{server.url}/v1/models/{model_id}/predict", json={"record": record}).json()["predictions"]
    assert prediction["details"]["PredictiveModelType"] == model_type
    if model_type == "REGRESSION":
        assert "predictedLabel" not in prediction
        assert prediction["predictedValue"] == pytest.approx(native["predicted_value"], rel=1e-6)
    else:
        assert prediction["predictedLabel"] == native["predicted_label"]
        assert prediction["predictedScores"] == pytest.approx(native["predicted_scores"], rel=1e-6)
        assert set(prediction["predictedScores"]) == {"month-to-month", "one-year", "two-year"}


RECIPE = {
    "groups": {"PLAN": "group(contract, payment_method)"},
    "assignments": {"tenure_bins": "quantile_bin(tenure_months, 5)"},
    "outputs": [
        "ALL_BINARY",
        "normalize(monthly_charges)",
        "tenure_bins",
        "cartesian(tenure_bins, contract) // the contract matters more early on",
        "PLAN",
    ],
}


def test_models_take_amazons_recipe_language_inline_and_from_s3(
    ml: Any, trained: dict[str, str], bucket: str, s3_client: Any, server: RunningServer
) -> None:
    run = uuid.uuid4().hex[:6]
    s3_client.put_object(Bucket=bucket, Key=f"recipes/{run}.json", Body=json.dumps(RECIPE).encode())
    given = {"Recipe": json.dumps(RECIPE)}, {"RecipeUri": f"s3://{bucket}/recipes/{run}.json"}
    for i, source in enumerate(given):
        ml.create_ml_model(
            MLModelId=f"ml-recipe-{run}-{i}",
            MLModelType="BINARY",
            TrainingDataSourceId=trained["train"],
            Parameters={"mlsvc.timeBudgetSeconds": FAST},
            **source,
        )
    ml.get_waiter("ml_model_available").wait(FilterVariable="Name", Prefix=f"ml-recipe-{run}", WaiterConfig=WAIT)
    for i in range(2):
        model = ml.get_ml_model(MLModelId=f"ml-recipe-{run}-{i}", Verbose=True)
        assert model["Status"] == "COMPLETED"
        assert json.loads(model["Recipe"])["outputs"][:3] == RECIPE["outputs"][:3]
    rest = httpx.get(f"{server.url}/v1/models/ml-recipe-{run}-0").json()
    assert rest["recipe"]["assignments"] == RECIPE["assignments"]
    code, message, _ = _error(
        ml.create_ml_model,
        MLModelId=f"ml-recipe-{run}-bad",
        MLModelType="BINARY",
        TrainingDataSourceId=trained["train"],
        Recipe=json.dumps({"outputs": ["quantile_bin(contract, 5)"]}),
    )
    assert code == "InvalidInputException" and "quantile_bin" in message


def test_steps_queue_behind_their_inputs_as_amazons_did(ml: Any, bucket: str, s3_client: Any) -> None:
    """Amazon ML's own samples create the datasources, the model and the evaluation one after another, with no
    wait: each step waits for its inputs, and fails with the reason when one fails."""
    run = uuid.uuid4().hex[:6]
    spec = {
        "DataLocationS3": f"s3://{bucket}/in/churn.csv",
        "DataSchemaLocationS3": f"s3://{bucket}/in/churn.csv.schema",
    }
    ml.create_data_source_from_s3(DataSourceId=f"ds-q-{run}", DataSpec=spec, ComputeStatistics=True)
    ml.create_ml_model(
        MLModelId=f"ml-q-{run}",
        MLModelType="BINARY",
        TrainingDataSourceId=f"ds-q-{run}",
        Parameters={"mlsvc.timeBudgetSeconds": FAST},
    )
    ml.create_evaluation(EvaluationId=f"ev-q-{run}", MLModelId=f"ml-q-{run}", EvaluationDataSourceId=f"ds-q-{run}")
    ml.create_batch_prediction(
        BatchPredictionId=f"bp-q-{run}",
        MLModelId=f"ml-q-{run}",
        BatchPredictionDataSourceId=f"ds-q-{run}",
        OutputUri=f"s3://{bucket}/queued/",
    )
    waiting = ml.get_batch_prediction(BatchPredictionId=f"bp-q-{run}")
    assert waiting["Status"] == "PENDING"
    ml.get_waiter("batch_prediction_available").wait(FilterVariable="MLModelId", EQ=f"ml-q-{run}", WaiterConfig=WAIT)
    assert ml.get_evaluation(EvaluationId=f"ev-q-{run}")["Status"] in ("PENDING", "INPROGRESS", "COMPLETED")
    ml.get_waiter("evaluation_available").wait(FilterVariable="MLModelId", EQ=f"ml-q-{run}", WaiterConfig=WAIT)
    assert ml.get_batch_prediction(BatchPredictionId=f"bp-q-{run}")["TotalRecordCount"] == 5000

    schema = json.loads(Path(str(CHURN) + ".schema").read_text())
    schema["attributes"].append({"attributeName": "not_in_the_file", "attributeType": "NUMERIC"})
    broken = {"DataLocationS3": f"s3://{bucket}/in/churn.csv", "DataSchema": json.dumps(schema)}
    ml.create_data_source_from_s3(DataSourceId=f"ds-bad-{run}", DataSpec=broken)
    ml.create_ml_model(MLModelId=f"ml-bad-{run}", MLModelType="BINARY", TrainingDataSourceId=f"ds-bad-{run}")
    with pytest.raises(WaiterError, match="failure state"):  # the model FAILED
        ml.get_waiter("ml_model_available").wait(FilterVariable="Name", Prefix=f"ml-bad-{run}", WaiterConfig=WAIT)
    failed = ml.get_ml_model(MLModelId=f"ml-bad-{run}")
    assert failed["Status"] == "FAILED" and f"ds-bad-{run}" in failed["Message"]


def test_retried_creates_answer_the_same_resource_and_changed_ones_are_refused(
    ml: Any, trained: dict[str, str], bucket: str, server: RunningServer
) -> None:
    run = uuid.uuid4().hex[:6]
    creates = [
        (
            ml.create_ml_model,
            {
                "MLModelId": f"ml-retry-{run}",
                "MLModelType": "BINARY",
                "TrainingDataSourceId": trained["train"],
                "Parameters": {"mlsvc.timeBudgetSeconds": FAST},
            },
            {"MLModelName": "another name"},
        ),
        (
            ml.create_evaluation,
            {
                "EvaluationId": f"ev-retry-{run}",
                "MLModelId": trained["model"],
                "EvaluationDataSourceId": trained["test"],
            },
            {"EvaluationDataSourceId": trained["train"]},
        ),
        (
            ml.create_batch_prediction,
            {
                "BatchPredictionId": f"bp-retry-{run}",
                "MLModelId": trained["model"],
                "BatchPredictionDataSourceId": trained["test"],
                "OutputUri": f"s3://{bucket}/retry/",
            },
            {"OutputUri": f"s3://{bucket}/elsewhere/"},
        ),
    ]
    for create, params, changed in creates:
        first = create(**params)
        again = create(**params)
        [member] = [k for k in first if k.endswith("Id")]
        assert again[member] == first[member] == params[member]
        code, message, status = _error(create, **{**params, **changed})
        assert (code, status) == ("IdempotentParameterMismatchException", 400) and params[member] in message
    native_name = httpx.get(f"{server.url}/v1/models/{trained['model']}").json()["name"]
    taken = {"MLModelId": native_name, "MLModelType": "BINARY", "TrainingDataSourceId": trained["train"]}
    httpx.post(
        f"{server.url}/v1/models",
        json={
            "name": f"native-{run}",
            "datasource_id": trained["train"],
            "time_budget_s": 2,
            "candidates": [{"family": "linear"}],
        },
    ).raise_for_status()
    code, message, _ = _error(ml.create_ml_model, **{**taken, "MLModelId": f"native-{run}"})
    assert code == "InvalidInputException" and "is the name of a model" in message


def test_unknown_operations_and_empty_names_are_the_callers_errors(
    server: RunningServer, trained: dict[str, str]
) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=b"{}",
        headers={"X-Amz-Target": "AmazonML_20141212.TrainEverything", "Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(Credentials(KEY_ID, SECRET), "machinelearning", "us-east-1").add_auth(request)
    answer = httpx.post(request.url, content=request.body, headers=dict(request.headers))
    assert answer.status_code == 400 and answer.json()["__type"] == "UnknownOperationException"
    raw = _client(server, parameter_validation=False)
    for call, members in (
        (raw.update_data_source, {"DataSourceId": trained["train"], "DataSourceName": ""}),
        (raw.update_evaluation, {"EvaluationId": f"ev-{trained['model']}", "EvaluationName": ""}),
    ):
        code, _, status = _error(call, **members)
        assert (code, status) == ("InvalidInputException", 400)
    code, message, status = _error(raw.describe_data_sources, FilterVariable="CreatedAt", GT="1e400")
    assert (code, status) == ("InvalidInputException", 400) and "epoch seconds or ISO 8601" in message


SQL_USER, SQL_PASSWORD = "mlsvc_aml", "amazon-ml-pass-1"  # Amazon ML's passwords are 8 characters at least


@pytest.fixture(scope="module")
def sql_tables() -> Iterator[str]:
    """The churn example's rows as a table in the local MariaDB (read by a user with a password, as RDS wants)
    and in the local PostgreSQL (standing in for Redshift)."""
    import pandas as pd
    from sqlalchemy import create_engine, text

    table = f"aml_churn_{uuid.uuid4().hex[:8]}"
    frame = pd.read_csv(CHURN, dtype=str, keep_default_na=False).head(1200)
    engines = [
        create_engine("mysql+pymysql://root@127.0.0.1:3306/test"),
        create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    ]
    with engines[0].begin() as conn:
        conn.execute(text(f"CREATE USER IF NOT EXISTS '{SQL_USER}'@'%' IDENTIFIED BY '{SQL_PASSWORD}'"))
        conn.execute(text(f"GRANT SELECT ON test.* TO '{SQL_USER}'@'%'"))
    for engine in engines:
        frame.to_sql(table, engine, index=False)
    yield table
    for engine in engines:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_rds_and_redshift_queries_become_datasources(
    ml: Any, sql_tables: str, bucket: str, s3_client: Any, server: RunningServer
) -> None:
    run = uuid.uuid4().hex[:6]
    query = f"SELECT customer_id, tenure_months, contract, monthly_charges, churned FROM {sql_tables}"
    roles = {"ResourceRole": "DataPipelineDefaultResourceRole", "ServiceRole": "DataPipelineDefaultRole"}
    ml.create_data_source_from_rds(
        DataSourceId=f"ds-rds-{run}",
        DataSourceName=f"rds {run}",
        RDSData={
            "DatabaseInformation": {"InstanceIdentifier": "local-mariadb", "DatabaseName": "test"},
            "SelectSqlQuery": query,
            "DatabaseCredentials": {"Username": SQL_USER, "Password": SQL_PASSWORD},
            "S3StagingLocation": f"s3://{bucket}/staging/rds/",
            "SubnetId": "subnet-0",
            "SecurityGroupIds": ["sg-0"],
            **roles,
        },
        RoleARN="arn:aws:iam::000000000000:role/mlsvc",
        ComputeStatistics=True,
    )
    ml.create_data_source_from_redshift(
        DataSourceId=f"ds-redshift-{run}",
        DataSourceName=f"redshift {run}",
        DataSpec={
            "DatabaseInformation": {"DatabaseName": "test", "ClusterIdentifier": "local-postgres"},
            "SelectSqlQuery": query,
            "DatabaseCredentials": {"Username": "postgres", "Password": "any-password"},
            "S3StagingLocation": f"s3://{bucket}/staging/redshift/",
            "DataSchema": json.dumps(
                {
                    "version": "1.0",
                    "targetAttributeName": "churned",
                    "dataFormat": "CSV",
                    "dataFileContainsHeader": True,
                    "attributes": [
                        {"attributeName": "customer_id", "attributeType": "CATEGORICAL"},
                        {"attributeName": "tenure_months", "attributeType": "NUMERIC"},
                        {"attributeName": "contract", "attributeType": "CATEGORICAL"},
                        {"attributeName": "monthly_charges", "attributeType": "NUMERIC"},
                        {"attributeName": "churned", "attributeType": "BINARY"},
                    ],
                }
            ),
        },
        RoleARN="arn:aws:iam::000000000000:role/mlsvc",
        ComputeStatistics=True,
    )
    rds_again = {
        "DataSourceId": f"ds-rds-{run}",
        "DataSourceName": f"rds {run}",
        "RDSData": {
            "DatabaseInformation": {"InstanceIdentifier": "local-mariadb", "DatabaseName": "test"},
            "SelectSqlQuery": query,
            "DatabaseCredentials": {"Username": SQL_USER, "Password": SQL_PASSWORD},
            "S3StagingLocation": f"s3://{bucket}/staging/rds/",
            "SubnetId": "subnet-0",
            "SecurityGroupIds": ["sg-0"],
            **roles,
        },
        "RoleARN": "arn:aws:iam::000000000000:role/mlsvc",
        "ComputeStatistics": True,
    }
    assert ml.create_data_source_from_rds(**rds_again)["DataSourceId"] == f"ds-rds-{run}"  # a retry: the same one
    changed = {**rds_again, "RDSData": {**rds_again["RDSData"], "SelectSqlQuery": query + " WHERE 1 = 1"}}
    assert _error(ml.create_data_source_from_rds, **changed)[0] == "IdempotentParameterMismatchException"
    ml.get_waiter("data_source_available").wait(FilterVariable="Name", Prefix=f"rds {run}", WaiterConfig=WAIT)
    ml.get_waiter("data_source_available").wait(FilterVariable="Name", Prefix=f"redshift {run}", WaiterConfig=WAIT)
    code, _, _ = _error(
        ml.create_data_source_from_redshift,
        DataSourceId=f"ds-redshift-{run}",
        DataSpec={
            "DatabaseInformation": {"DatabaseName": "test", "ClusterIdentifier": "local-postgres"},
            "SelectSqlQuery": query + " LIMIT 10",
            "DatabaseCredentials": {"Username": "postgres", "Password": "any-password"},
            "S3StagingLocation": f"s3://{bucket}/staging/redshift/",
        },
        RoleARN="arn:aws:iam::000000000000:role/mlsvc",
    )
    assert code == "IdempotentParameterMismatchException"
    rds = ml.get_data_source(DataSourceId=f"ds-rds-{run}", Verbose=True)
    assert rds["RDSMetadata"]["Database"] == {"InstanceIdentifier": "local-mariadb", "DatabaseName": "test"}
    assert rds["RDSMetadata"]["DatabaseUserName"] == SQL_USER and rds["RDSMetadata"]["SelectSqlQuery"] == query
    assert rds["DataLocationS3"].startswith(f"s3://{bucket}/staging/rds/")
    redshift = ml.get_data_source(DataSourceId=f"ds-redshift-{run}", Verbose=True)
    assert redshift["RedshiftMetadata"]["RedshiftDatabase"]["ClusterIdentifier"] == "local-postgres"
    assert json.loads(redshift["DataSourceSchema"])["targetAttributeName"] == "churned"
    for ds in (rds, redshift):
        staged = ds["DataLocationS3"].removeprefix(f"s3://{bucket}/")
        lines = s3_client.get_object(Bucket=bucket, Key=staged)["Body"].read().decode().splitlines()
        assert lines[0] == "customer_id,tenure_months,contract,monthly_charges,churned" and len(lines) == 1201
    native = httpx.get(f"{server.url}/v1/datasources/ds-rds-{run}").json()
    assert native["row_count"] == 1200 and native["sql"]["engine"] == "mysql"
    assert SQL_PASSWORD not in json.dumps(native) and SQL_PASSWORD not in server.log_text()
    code, message, _ = _error(
        ml.create_data_source_from_rds,
        DataSourceId=f"ds-rds-nowhere-{run}",
        RDSData={
            "DatabaseInformation": {"InstanceIdentifier": "not-configured", "DatabaseName": "test"},
            "SelectSqlQuery": query,
            "DatabaseCredentials": {"Username": SQL_USER, "Password": SQL_PASSWORD},
            "S3StagingLocation": f"s3://{bucket}/staging/rds/",
            "SubnetId": "subnet-0",
            "SecurityGroupIds": ["sg-0"],
            **roles,
        },
        RoleARN="arn:aws:iam::000000000000:role/mlsvc",
    )
    assert code == "InvalidInputException" and "local-mariadb" in message


def test_evaluations_batches_and_models_are_renamed_and_deleted_by_id(ml: Any, trained: dict[str, str]) -> None:
    evaluation_id, batch_id = f"ev-{trained['model']}", f"bp-{trained['model']}"
    ml.update_evaluation(EvaluationId=evaluation_id, EvaluationName="holdout of the 30 %")
    assert ml.get_evaluation(EvaluationId=evaluation_id)["Name"] == "holdout of the 30 %"
    ml.update_batch_prediction(BatchPredictionId=batch_id, BatchPredictionName="scores for the 30 %")
    assert ml.get_batch_prediction(BatchPredictionId=batch_id)["Name"] == "scores for the 30 %"
    ml.add_tags(Tags=[{"Key": "kept", "Value": "yes"}], ResourceId=batch_id, ResourceType="BatchPrediction")
    ml.add_tags(Tags=[{"Key": "kept", "Value": "yes"}], ResourceId=evaluation_id, ResourceType="Evaluation")
    assert ml.delete_evaluation(EvaluationId=evaluation_id)["EvaluationId"] == evaluation_id
    assert ml.delete_batch_prediction(BatchPredictionId=batch_id)["BatchPredictionId"] == batch_id
    assert ml.delete_ml_model(MLModelId=trained["model"])["MLModelId"] == trained["model"]
    assert ml.get_evaluation(EvaluationId=evaluation_id)["Status"] == "DELETED"
    assert ml.get_batch_prediction(BatchPredictionId=batch_id)["Status"] == "DELETED"
    assert ml.get_ml_model(MLModelId=trained["model"])["Status"] == "DELETED"


def test_every_operation_was_driven_through_boto3(ml: Any) -> None:
    every = set(ml.meta.service_model.operation_names)
    assert len(every) == 28
    assert every - ml.shape_checks.seen == set()


def test_the_start_up_lines_say_how_the_api_authenticates(server: RunningServer, mlsvc_server: RunningServer) -> None:
    assert f"amazon ml api    AWS SigV4 for access key id {KEY_ID}" in server.log_text()
    assert SECRET not in server.log_text()
    assert "amazon ml api    open: no MLSVC_AWS_CREDENTIALS" in mlsvc_server.log_text()
    open_client = _client(mlsvc_server, key_id="ANYONE", secret="anything")
    assert open_client.describe_data_sources(Limit=1)["ResponseMetadata"]["HTTPStatusCode"] == 200
