"""Reading request bodies: size-limited, UTF-8, JSON objects only."""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from gateway.errors import GatewayError, bad_request


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; text/plain is accepted too, since sendBeacon sends that."""
    body = await read_body(request, limit)
    if not body.strip():
        if required:
            raise bad_request("the body is empty: send a JSON object")
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the body is not valid UTF-8") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad_request(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError):
        raise bad_request("the body is not usable JSON: too deeply nested or a number out of range") from None
    if not isinstance(value, dict):
        raise bad_request(f"the body must be a JSON object, got {type(value).__name__}")
    return value


def optional_str(body: dict[str, Any], key: str, max_length: int, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_request(f"'{key}' must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise bad_request(f"'{key}' is longer than {max_length} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"'{key}' holds an unpaired surrogate (\\ud800-\\udfff): send valid Unicode") from None
    return value
