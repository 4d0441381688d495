"""Amazon ML's tag operations (AddTags, DescribeTags, DeleteTags) over the tags every mlsvc resource carries,
with Amazon's limits: 10 tags a resource, keys of 1–128 and values of 0–256 letters, digits, spaces and
``_.:/=+-@``, and no key in the reserved ``aws:`` namespace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlsvc.resources import BatchPredictionUpdate, DataSourceUpdate, EvaluationUpdate, ModelUpdate
from mlsvc.server.amazonml.common import Answer, Call, Params, operation
from mlsvc.server.amazonml.protocol import AmazonError, tag_text_ok

MAX_TAGS = 10  # "up to a limit of 10" (AddTags in Amazon ML's API reference)


def _collection(call: Call, resource_type: str) -> tuple[Callable[[str], Any], Callable[..., Any], Any]:
    service = call.service
    table: dict[str, tuple[Callable[[str], Any], Callable[..., Any], Any]] = {
        "DataSource": (service.datasources.get, service.datasources.update, DataSourceUpdate),
        "MLModel": (service.models.get, service.models.update, ModelUpdate),
        "Evaluation": (service.evaluations.get, service.evaluations.update, EvaluationUpdate),
        "BatchPrediction": (service.batch_predictions.get, service.batch_predictions.update, BatchPredictionUpdate),
    }
    return table[resource_type]


def _tags_of(call: Call, params: Params) -> dict[str, str]:
    get, _, _ = _collection(call, params["ResourceType"])
    resource = get(params["ResourceId"])
    if resource.id != params["ResourceId"]:  # a model's name or alias is not an Amazon ML id
        raise AmazonError(
            "ResourceNotFoundException", f"no {params['ResourceType']} has the id '{params['ResourceId']}'"
        )
    return dict(resource.tags)


def _change(call: Call, params: Params, changes: Mapping[str, str | None]) -> Answer:
    _, update, patch = _collection(call, params["ResourceType"])
    update(params["ResourceId"], patch(tags=dict(changes)))
    return {"ResourceId": params["ResourceId"], "ResourceType": params["ResourceType"]}


def _check_key(key: str) -> None:
    if not 1 <= len(key) <= 128 or not tag_text_ok(key):
        raise AmazonError(
            "InvalidTagException", f"tag key {key!r} must be 1-128 letters, digits, spaces or _.:/=+-@ characters"
        )
    if key.lower().startswith("aws:"):
        raise AmazonError("InvalidTagException", f"tag key {key!r} is in the reserved 'aws:' namespace")


@operation("AddTags")
def add(call: Call, params: Params) -> Answer:
    given: dict[str, str] = {}
    for tag in params["Tags"]:
        key, value = tag.get("Key"), tag.get("Value") or ""
        if key is None:
            raise AmazonError("InvalidTagException", "every tag needs a Key")
        _check_key(key)
        if len(value) > 256 or not tag_text_ok(value):
            raise AmazonError(
                "InvalidTagException",
                f"the value of tag {key!r} must be at most 256 letters, digits, spaces or _.:/=+-@ characters",
            )
        given[key] = value
    held = _tags_of(call, params)
    total = len(set(held) | set(given))
    if total > MAX_TAGS:
        raise AmazonError(
            "TagLimitExceededException",
            f"{params['ResourceType']} '{params['ResourceId']}' would have {total} tags; a resource holds at most "
            f"{MAX_TAGS}",
        )
    return _change(call, params, given)


@operation("DescribeTags")
def describe_tags(call: Call, params: Params) -> Answer:
    tags = _tags_of(call, params)
    return {
        "ResourceId": params["ResourceId"],
        "ResourceType": params["ResourceType"],
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }


@operation("DeleteTags")
def delete(call: Call, params: Params) -> Answer:
    for key in params["TagKeys"]:
        _check_key(key)
    _tags_of(call, params)
    return _change(call, params, dict.fromkeys(params["TagKeys"]))
