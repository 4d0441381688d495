"""The REST API over real HTTP: resources, errors as JSON with 4xx, idempotent creates, pages, patch, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlsvc.server.app import create_app
from tests.inprocess import serving, settings_for
from tests.rest import error
from tests.servers import REPO, wait_done

CHURN = str(REPO / "datasources" / "churn.csv")


def test_health(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}


def test_every_answer_carries_a_request_id(api: httpx.Client) -> None:
    assert api.get("/healthz", headers={"X-Request-Id": "req-abc"}).headers["x-request-id"] == "req-abc"
    assert api.get("/v1/datasources/nope").headers["x-request-id"].startswith("srv-")


def test_datasource_create_is_202_pending_and_completes_with_schema(api: httpx.Client) -> None:
    response = api.post("/v1/datasources", json={"data_uri": CHURN, "tags": {"team": "growth"}})
    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "PENDING" and created["id"].startswith("ds-") and created["name"] == "churn.csv"
    done = wait_done(api, f"/v1/datasources/{created['id']}")
    assert done["status"] == "COMPLETED" and done["progress"] == 1.0
    assert done["row_count"] == 5000 and done["schema"]["targetAttributeName"] == "churned"
    assert done["tags"] == {"team": "growth"}
    schema_file = api.get(f"/v1/datasources/{created['id']}/schema")
    assert schema_file.status_code == 200 and schema_file.json()["rowId"] == "customer_id"


def test_same_id_same_body_returns_the_same_resource_and_a_different_body_is_409(api: httpx.Client) -> None:
    body = {"id": "retry-me", "data_uri": CHURN}
    first = api.post("/v1/datasources", json=body)
    second = api.post("/v1/datasources", json=body)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["created_at"] == second.json()["created_at"]
    message = error(api.post("/v1/datasources", json={**body, "target": "tenure_months"}), 409, "conflict")
    assert "retry-me" in message


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"data_uri": 5}, 422, "validation_error", "data_uri"),
        ({}, 422, "validation_error", "data_uri"),
        ({"data_uri": CHURN, "colour": "red"}, 422, "validation_error", "colour: unknown field"),
        ({"data_uri": CHURN, "id": "no spaces"}, 422, "validation_error", "id"),
        ({"data_uri": "ftp://host/x.csv"}, 400, "unsupported_uri", "ftp"),
        (
            {"data_uri": CHURN, "rearrangement": {"splitting": {"percentBegin": 80, "percentEnd": 20}}},
            422,
            "validation_error",
            "percentBegin",
        ),
    ],
)
def test_bad_datasource_requests_are_4xx_with_a_message(
    api: httpx.Client, body: dict, status: int, code: str, words: str
) -> None:
    assert words in error(api.post("/v1/datasources", json=body), status, code)


def test_malformed_json_is_400(api: httpx.Client) -> None:
    response = api.post("/v1/datasources", content=b'{"data_uri": ', headers={"content-type": "application/json"})
    assert "not valid JSON" in error(response, 400, "invalid_request")


def test_a_body_over_the_limit_is_413(api: httpx.Client) -> None:
    response = api.post("/v1/models/x/predict", content=b"{" + b" " * (11 * 1024 * 1024) + b"}")
    error(response, 413, "payload_too_large")


def test_unknown_ids_are_404(api: httpx.Client) -> None:
    error(api.get("/v1/datasources/nope"), 404, "not_found")
    error(api.get("/v1/models/nope"), 404, "not_found")
    error(api.patch("/v1/datasources/nope", json={"name": "x"}), 404, "not_found")
    error(api.get("/v1/no-such-route"), 404, "not_found")


def test_a_failed_datasource_says_why(api: httpx.Client, tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    created = api.post("/v1/datasources", json={"data_uri": str(path), "target": "churned"}).json()
    done = wait_done(api, f"/v1/datasources/{created['id']}")
    assert done["status"] == "FAILED"
    assert "column 'churned' not found" in done["message"] and "'a', 'b'" in done["message"]


def test_list_pages_filters_patch_and_delete(api: httpx.Client) -> None:
    ids = [
        api.post("/v1/datasources", json={"data_uri": CHURN, "name": f"page-{i}", "tags": {"batch": "p"}}).json()["id"]
        for i in range(5)
    ]
    seen, token = [], None
    while True:
        page = api.get(
            "/v1/datasources", params={"limit": 2, "tag": "batch=p", **({"next_token": token} if token else {})}
        ).json()
        seen += [item["id"] for item in page["items"]]
        token = page["next_token"]
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    assert [i["name"] for i in api.get("/v1/datasources", params={"name_prefix": "page-3"}).json()["items"]] == [
        "page-3"
    ]
    patched = api.patch(f"/v1/datasources/{ids[0]}", json={"name": "renamed", "tags": {"batch": None, "k": "v"}})
    assert patched.status_code == 200 and patched.json()["name"] == "renamed" and patched.json()["tags"] == {"k": "v"}
    deleted = api.delete(f"/v1/datasources/{ids[1]}")
    assert deleted.json()["status"] == "DELETED"
    assert ids[1] not in [i["id"] for i in api.get("/v1/datasources", params={"limit": 1000}).json()["items"]]
    error(api.get("/v1/datasources", params={"limit": 0}), 422, "validation_error")
    error(api.get("/v1/datasources", params={"next_token": "bogus"}), 400, "invalid_request")


def test_a_model_on_an_unknown_or_unfinished_datasource_is_refused(api: httpx.Client, tmp_path: Path) -> None:
    error(api.post("/v1/models", json={"name": "m", "datasource_id": "nope"}), 404, "not_found")
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,x\n")
    created = api.post("/v1/datasources", json={"data_uri": str(path), "target": "zzz"}).json()
    wait_done(api, f"/v1/datasources/{created['id']}")
    message = error(api.post("/v1/models", json={"name": "m", "datasource_id": created["id"]}), 409, "not_ready")
    assert "FAILED" in message
    error(api.post("/v1/models", json={"name": "bad name!", "datasource_id": created["id"]}), 422, "validation_error")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/datasources", {"data_uri": "file:///tmp/%00x.csv"}, 400),
        ("GET", "/v1/models/churn:%C2%B2", None, 404),
        ("GET", "/v1/models/churn:99999999999999999999999", None, 404),
        ("PUT", "/v1/models/churn/aliases/prod", {"version": 99999999999999999999999}, 422),
        ("GET", "/v1/datasources?next_token=" + "W" * 600, None, 422),
        ("PATCH", "/v1/datasources/x", {"tags": {"k" * 200: "v"}}, 422),
        ("POST", "/v1/evaluations", {"id": "ev-x-holdout", "model": "m", "datasource_id": "d"}, 422),
    ],
)
def test_inputs_found_by_fuzzing_get_a_4xx(
    api: httpx.Client, method: str, path: str, body: dict | None, status: int
) -> None:
    response = api.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("recipe", [{"crosses": [None]}, {"crosses": [["a", ["x"]]]}, {"attributes": "x"}])
def test_malformed_recipes_are_422(api: httpx.Client, recipe: dict) -> None:
    ds = api.post("/v1/datasources", json={"data_uri": CHURN, "id": "recipe-ds"}).json()
    wait_done(api, f"/v1/datasources/{ds['id']}")
    message = error(
        api.post("/v1/models", json={"name": "r", "datasource_id": ds["id"], "recipe": recipe}), 422, "validation_error"
    )
    assert "recipe" in message


def test_bodies_sent_as_form_or_chunked(api: httpx.Client) -> None:
    form = api.post(
        "/v1/datasources",
        content=b'{"data_uri": "' + CHURN.encode() + b'"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 202, form.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is applied while reading
        for _ in range(12):
            yield b" " * (1024 * 1024)

    error(api.post("/v1/models/x/predict", content=chunks()), 413, "payload_too_large")


def test_a_model_id_cannot_be_another_models_name(idle_api: httpx.Client, idle_churn: dict[str, Any]) -> None:
    def create(**body: Any) -> httpx.Response:
        return idle_api.post("/v1/models", json={"datasource_id": idle_churn["id"], **body})

    assert create(name="named").status_code == 202
    assert "ambiguous" in error(create(id="named", name="other"), 409, "conflict")
    assert create(id="m-abc", name="third").status_code == 202
    assert "m-abc" in error(create(name="m-abc"), 409, "conflict")


def test_the_threshold_of_a_model_still_training_cannot_be_set(
    idle_api: httpx.Client, idle_churn: dict[str, Any]
) -> None:
    # No worker runs on the idle server: the model stays PENDING for as long as the test needs.
    pending = idle_api.post("/v1/models", json={"name": "held", "datasource_id": idle_churn["id"]}).json()
    assert pending["status"] == "PENDING"
    patch = {"score_threshold": 0.3, "tags": {"team": "a"}}
    message = error(idle_api.patch(f"/v1/models/{pending['id']}", json=patch), 409, "not_ready")
    assert pending["id"] in message and "PENDING" in message
    unchanged = idle_api.get(f"/v1/models/{pending['id']}").json()
    assert unchanged["score_threshold"] is None and unchanged["tags"] == {}  # a refused patch changes nothing
    assert idle_api.patch(f"/v1/models/{pending['id']}", json={"tags": {"team": "a"}}).json()["tags"] == {"team": "a"}


def test_an_unexpected_failure_is_a_500_in_the_error_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(settings_for(tmp_path / "home"))

    def fail(*args: Any) -> Any:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(app.state.service.datasources, "get", fail)
    try:
        with serving(app) as url:
            response = httpx.get(f"{url}/v1/datasources/ds-1", headers={"X-Request-Id": "req-boom"})
            assert httpx.get(f"{url}/healthz").status_code == 200  # the server lives on
            metrics = httpx.get(f"{url}/metrics").text
    finally:
        app.state.service.close()
    message = error(response, 500, "internal")
    assert response.json()["error"]["details"] == {}
    # The caller gets the id to quote; what went wrong stays in the server's log.
    assert "req-boom" in message and "disk" not in message
    assert 'mlsvc_http_requests_total{method="GET",route="/v1/datasources/{datasource_id}",status="500"} 1.0' in metrics
    assert response.headers.get("x-request-id") == "req-boom"
