"""Checks shared by the tests that speak the REST API: the error shape, and resources created and waited for."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.servers import wait_done


def error(response: httpx.Response, status: int, code: str) -> str:
    """Assert that the answer is ``{"error": {"code", "message", "details"}}`` with this status and code; the
    message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["details"], dict)
    message = body["error"]["message"]
    assert isinstance(message, str) and message, body
    return message


def completed(api: httpx.Client, path: str, body: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
    """POST ``body`` to a collection (answered 202), wait for its job, and return the resource, COMPLETED."""
    response = api.post(path, json=body)
    assert response.status_code == 202, response.text
    done = wait_done(api, f"{path}/{response.json()['id']}", timeout)
    assert done["status"] == "COMPLETED", done["message"]
    return done


def assert_plain_json(value: Any) -> None:
    """Only JSON's own types, all the way down, and no NaN or infinity: what can be stored and served as it is."""
    if isinstance(value, dict):
        assert all(type(key) is str for key in value)
        for item in value.values():
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{value!r} is a {type(value)}"
    json.dumps(value, allow_nan=False)
