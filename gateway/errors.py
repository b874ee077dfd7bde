"""Errors as exceptions, mapped to JSON responses in one place (`exception_handlers`)."""
from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from analytics.store import StoreUnavailable
from gateway.logtext import log_path, log_text

log = logging.getLogger("consentgate.errors")


class GatewayError(Exception):
    """A request the gateway refuses: `status`, a short machine `error` and a `detail` saying what to do."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers  # e.g. Retry-After on a 429 or 503
        super().__init__(f"{status} {error}: {detail}")


def bad_request(detail: str) -> GatewayError:
    return GatewayError(400, "bad_request", detail)


def spool_unwritable() -> GatewayError:
    # durability = machine: the last group commit failed (disk full or failing); answering would mean waiting for it.
    return GatewayError(503, "spool_unwritable", "the gateway cannot write its spool to disk right now (disk full or "
                        "failing); nothing was recorded: try again later", {"Retry-After": "30"})


def spool_full(max_bytes: int) -> GatewayError:
    # Never a silent drop: the caller (banner, sendBeacon) may retry; nothing is acknowledged that cannot be kept.
    return GatewayError(503, "spool_full", f"the gateway's spool holds more than {max_bytes} bytes not yet written "
                        "to the store (is the store down?); nothing was recorded: try again later",
                        {"Retry-After": "30"})


def unknown_site(site: str) -> GatewayError:
    return GatewayError(404, "unknown_site", f"no site named {site[:64]!r} is configured on this gateway")


def _json(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def error_body(error: str, detail: str) -> bytes:
    """The JSON body of an error answer, for endpoints that send raw ASGI messages (the collect lane)."""
    return json.dumps({"error": error, "detail": detail}).encode()


async def gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    services = getattr(request.app.state, "services", None)
    if services is not None and exc.status < 500:
        services.metrics.count_rejected(exc.error)
    return _json(exc.status, exc.error, exc.detail, exc.headers)


async def http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    names = {404: "not_found", 405: "method_not_allowed"}
    return _json(exc.status_code, names.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)


async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Reads need the store; writes never get here (they are spooled).
    log.warning("store unavailable for %s: %s", log_path(request.url.path), log_text(exc, 500))
    return _json(503, "store_unavailable", "the statistics store is unreachable right now; try again in a minute",
                 {"Retry-After": "60"})


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Never the request's body or client address in the log: only the path and the error type.
    log.exception("unexpected error on %s %s", log_text(request.method, 20), log_path(request.url.path))
    return _json(500, "internal_error", "the gateway failed unexpectedly; the error was logged")


EXCEPTION_HANDLERS = {
    GatewayError: gateway_error,
    HTTPException: http_exception,
    StoreUnavailable: store_unavailable,
    Exception: unexpected_error,
}
