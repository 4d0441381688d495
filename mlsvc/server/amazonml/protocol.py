"""Amazon ML's wire protocol (JSON 1.1 under ``AmazonML_20141212``): the service model botocore ships, requests
checked against its input shapes, answers shaped to its output shapes, and errors as Amazon wrote them."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.session import get_session

TARGET_PREFIX = "AmazonML_20141212."
CONTENT_TYPE = "application/x-amz-json-1.1"

# Every status Amazon ML answered with: each error is a client error (400) but for the throttle (417) and a
# fault of the service itself (500).
STATUS = {"LimitExceededException": 417, "InternalServerException": 500}

# Patterns the model states that a self-hosted service cannot keep: its data lives in S3 *or* local files
# (file://), and its real-time endpoint is this server, not *.amazonaws.com.
RELAXED = {
    "S3Url": re.compile(r"(s3://([^/]+)(/.*)?|file://.+)"),
    "VipURL": re.compile(r"https?://[^\s/]+/?"),
}


class AmazonError(Exception):
    """An answer in Amazon's error form: ``{"__type": code, "message": …}`` with Amazon's status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS.get(code, 400)

    def body(self) -> bytes:
        return orjson.dumps({"__type": self.code, "message": self.message})


def invalid(message: str) -> AmazonError:
    return AmazonError("InvalidInputException", message)


@cache
def service_model() -> ServiceModel:
    """The ``machinelearning`` 2014-12-12 model from botocore's data: the contract, as every SDK reads it."""
    return get_session().get_service_model("machinelearning")


def operation(target: str | None) -> OperationModel:
    """The operation an ``X-Amz-Target`` header names."""
    if not target:
        raise AmazonError("UnknownOperationException", "the request has no X-Amz-Target header")
    prefix, _, name = target.partition(".")
    if f"{prefix}." != TARGET_PREFIX or name not in service_model().operation_names:
        raise AmazonError("UnknownOperationException", f"unknown operation {target!r}")
    return service_model().operation_model(name)


def parse_input(op: OperationModel, body: bytes) -> dict[str, Any]:
    """The request's members, checked against the operation's input shape (an empty body is ``{}``)."""
    try:
        params = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise AmazonError("SerializationException", f"the body is not JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise AmazonError("SerializationException", "the body must be a JSON object")
    problems: list[str] = []
    assert op.input_shape is not None
    _check(op.input_shape, params, _lower_first(op.input_shape.name), problems, top=True)
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected: "
        raise invalid(count + "; ".join(problems))
    return params


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _check(shape: Shape, value: Any, where: str, problems: list[str], top: bool = False) -> None:
    """Amazon's own wording for each broken constraint ("Value … at '…' failed to satisfy constraint: …")."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a structure")
            return
        members = shape.members
        for name in value:
            if name not in members:
                problems.append(f"'{name}' at '{where}' is not a member; members are {sorted(members)}")
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(
                    f"Value null at '{_path(where, name, top)}' failed to satisfy constraint: Member must not be null"
                )
        for name, member in members.items():
            if value.get(name) is not None:
                _check(member, value[name], _path(where, name, top), problems)
        return
    if kind == "list":
        if not isinstance(value, list):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a list")
            return
        _length(shape, len(value), where, problems)
        for i, item in enumerate(value):
            _check(shape.member, item, f"{where}.{i + 1}.member", problems)
        return
    if kind == "map":
        if not isinstance(value, dict):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a map")
            return
        for key, item in value.items():
            _check(shape.key, key, f"{where}.key", problems)
            _check(shape.value, item, f"{where}.{key}", problems)
        return
    _scalar(shape, value, where, problems)


def _path(where: str, name: str, top: bool) -> str:
    member = _lower_first(name)
    return member if top else f"{where}.{member}"


def _scalar(shape: Shape, value: Any, where: str, problems: list[str]) -> None:
    kind = shape.type_name
    expected: Any = {
        "string": str,
        "boolean": bool,
        "integer": int,
        "long": int,
        "float": (int, float),
        "double": (int, float),
        "timestamp": (int, float),
    }[kind]
    if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
        shown = "***" if shape.metadata.get("sensitive") else value
        problems.append(f"Value '{shown}' at '{where}' failed to satisfy constraint: Member must be of type {kind}")
        return
    metadata = shape.metadata
    if shape.name in TAG_SHAPES:
        return
    if kind == "string":
        _length(shape, len(value), where, problems)
        enum = shape.enum
        if enum and value not in enum:
            problems.append(
                f"Value '{value}' at '{where}' failed to satisfy constraint: Member must satisfy enum value set: "
                f"[{', '.join(enum)}]"
            )
        if "pattern" in metadata and not _matches(shape.name, metadata["pattern"], value):
            shown = "***" if metadata.get("sensitive") else value
            problems.append(
                f"Value '{shown}' at '{where}' failed to satisfy constraint: Member must satisfy regular expression "
                f"pattern: {metadata['pattern']}"
            )
    elif kind in ("integer", "long"):
        if "min" in metadata and value < metadata["min"]:
            problems.append(
                f"Value '{value}' at '{where}' failed to satisfy constraint: Member must have value "
                f"greater than or equal to {metadata['min']}"
            )
        if "max" in metadata and value > metadata["max"]:
            problems.append(
                f"Value '{value}' at '{where}' failed to satisfy constraint: Member must have value "
                f"less than or equal to {metadata['max']}"
            )


def _length(shape: Shape, length: int, where: str, problems: list[str]) -> None:
    metadata = shape.metadata
    if "min" in metadata and length < metadata["min"]:
        problems.append(
            f"Value at '{where}' failed to satisfy constraint: Member must have length greater than or "
            f"equal to {metadata['min']}"
        )
    if "max" in metadata and length > metadata["max"]:
        problems.append(
            f"Value at '{where}' failed to satisfy constraint: Member must have length less than or "
            f"equal to {metadata['max']}"
        )


_TAG_PUNCTUATION = set("_.:/=+-@")
# Checked by the tag operations, which answer InvalidTagException for them as Amazon ML did.
TAG_SHAPES = ("TagKey", "TagValue")


def tag_text_ok(text: str) -> bool:
    """Letters, separators and numbers of any script, and ``_.:/=+-@`` (the ``\\p{L}\\p{Z}\\p{N}`` of the tag
    pattern, which Python's re does not know)."""
    return all(unicodedata.category(c)[0] in "LZN" or c in _TAG_PUNCTUATION for c in text)


def _matches(shape_name: str, pattern: str, value: str) -> bool:
    if shape_name in TAG_SHAPES:
        return True
    if shape_name in RELAXED:
        return RELAXED[shape_name].fullmatch(value) is not None
    return re.fullmatch(pattern, value, flags=re.DOTALL) is not None


def render_output(op: OperationModel, data: Mapping[str, Any]) -> bytes:
    """The answer with exactly the output shape's members, each of its declared type (None members left out)."""
    if op.output_shape is None:
        return b"{}"
    return orjson.dumps(_shaped(op.output_shape, data, op.output_shape.name))


def _shaped(shape: Shape, value: Any, where: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        members = shape.members
        unknown = set(value) - set(members)
        if unknown:  # a bug of this face: never answer what the model does not declare
            raise AssertionError(f"{where} has no members {sorted(unknown)}")
        shaped = {
            name: _shaped(members[name], item, f"{where}.{name}") for name, item in value.items() if item is not None
        }
        return {name: item for name, item in shaped.items() if item is not None}
    if kind == "list":
        return [_shaped(shape.member, item, where) for item in value]
    if kind == "map":
        return {str(k): _shaped(shape.value, v, where) for k, v in value.items()}
    if kind == "timestamp":
        # Epoch seconds to the millisecond (truncated, as Describe's comparisons read them).
        return (value.timestamp() * 1000 // 1) / 1000 if isinstance(value, datetime) else float(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        number = float(value)
        return None if math.isnan(number) else number
    if kind == "boolean":
        return bool(value)
    return str(value)
