"""Consent decisions: give (POST), read (GET), withdraw (DELETE). Every decision is a `consents` row.

The token travels in the `cg_consent` cookie and, because the banner calls the
gateway cross-site where browsers may withhold cookies, also in the JSON body
(`consent`) or the `X-Consent-Token` header.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.bodies import optional_str, read_json_object
from gateway.clientip import client_ip, is_https, truncate_ip
from gateway.collect.useragent import parse_user_agent
from gateway.config import CATEGORIES, SiteConfig
from gateway.errors import GatewayError, bad_request, unknown_site
from gateway.services import Services
from gateway.tokens import ConsentToken, TokenInvalid

COOKIE = "cg_consent"
METHODS = ("accept_all", "reject_all", "custom", "gpc")


def site_for(request: Request, services: Services) -> SiteConfig:
    """The site named in the path, refusing a foreign Origin (the banner always sends one)."""
    name = request.path_params["site"]
    site = services.config.sites.get(name)
    if site is None:
        raise unknown_site(name)
    origin = request.headers.get("origin", "")
    if origin and origin not in site.origins:
        raise GatewayError(403, "bad_origin", f"origin {origin[:100]!r} is not configured for site {site.name!r}")
    return site


def presented_token(request: Request, body: dict[str, Any] | None = None) -> str:
    if body and isinstance(body.get("consent"), str):
        return body["consent"]
    return request.headers.get("x-consent-token") or request.cookies.get(COOKIE, "")


def current_token(request: Request, services: Services, site: SiteConfig, body: dict[str, Any] | None = None) -> ConsentToken | None:
    """The caller's token if it is valid now for this site and policy and not revoked."""
    raw = presented_token(request, body)
    if not raw:
        return None
    try:
        token = services.signer.loads(raw, site.name, site.policy_version)
    except TokenInvalid:
        return None
    if services.revocations.is_revoked(token.consent_id, token.issued_ms):
        return None
    return token


def own_consent_id(request: Request, services: Services, site: SiteConfig, body: dict[str, Any] | None = None) -> str | None:
    """The consent id a signed token of this site proves, even if expired or for an older policy:
    a visitor keeps their id across decisions and keeps their rights over old data."""
    raw = presented_token(request, body)
    return services.signer.consent_id_of(raw, site.name) if raw else None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _token_json(token: ConsentToken, raw: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "consent_id": token.consent_id,
        "choices": {"necessary": True, **token.choices},
        "policy_version": token.policy_version,
        "expires_at": _iso(token.expires_ms),
    }
    if raw is not None:
        out["token"] = raw
    return out


def set_consent_cookie(response: JSONResponse, request: Request, services: Services, raw: str | None) -> None:
    """Sets the token cookie, or clears it when `raw` is None. Secure whenever the browser used https."""
    secure = is_https(request, services.config.trusted_proxies)
    if raw is None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=secure)
    else:
        response.set_cookie(COOKIE, raw, max_age=services.config.consent_max_age_days * 86400, httponly=True,
                            samesite="lax", secure=secure, path="/")


def _parse_choices(body: dict[str, Any]) -> dict[str, bool]:
    raw = body.get("choices")
    if not isinstance(raw, dict):
        raise bad_request("'choices' must be an object like {\"analytics\": true, \"marketing\": false}")
    choices: dict[str, bool] = {}
    for key, value in raw.items():
        if key == "necessary":
            continue  # always on; accepted so a banner may echo it back
        if key not in CATEGORIES:
            raise bad_request(f"unknown category {key[:40]!r} in 'choices': use {', '.join(CATEGORIES)}")
        if not isinstance(value, bool):
            raise bad_request(f"'choices.{key}' must be true or false, got {type(value).__name__}")
        choices[key] = value
    return {c: choices.get(c, False) for c in CATEGORIES}


def consent_row(services: Services, request: Request, site: SiteConfig, consent_id: str, action: str,
                 method: str, choices: dict[str, bool], language: str, now_ms: int) -> dict[str, Any]:
    ua = parse_user_agent(request.headers.get("user-agent", ""))
    return {
        "kind": "consent",
        "record_id": str(uuid.uuid4()),
        "site": site.name,
        "timestamp": now_ms / 1000,
        "consent_id": consent_id,
        "action": action,
        "method": method,
        **{c: int(choices[c]) for c in CATEGORIES},
        "policy_version": site.policy_version,
        "language": language,
        "ip": truncate_ip(client_ip(request, services.config.trusted_proxies)),
        "browser": ua.browser,
        "os": ua.os,
        "gpc": int(request.headers.get("sec-gpc", "") == "1"),
    }


def record_withdrawal(services: Services, request: Request, site: SiteConfig, consent_id: str, method: str,
                      language: str = "") -> None:
    """Logs a withdrawal (proof, like a grant) and revokes every token of the consent id issued before it."""
    now_ms = int(time.time() * 1000)
    services.spool.append(consent_row(services, request, site, consent_id, "withdraw", method,
                                      {c: False for c in CATEGORIES}, language, now_ms))
    services.revocations.revoke(consent_id, now_ms)
    services.metrics.decisions.labels(site.name, "withdraw", method).inc()


async def give_consent(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    site = site_for(request, services)
    body = await read_json_object(request, services.config.max_body_bytes)
    choices = _parse_choices(body)
    method = optional_str(body, "method", 20, "custom")
    if method not in METHODS:
        raise bad_request(f"'method' must be one of {', '.join(METHODS)}, got {method[:20]!r}")
    if method == "accept_all" and not all(choices.values()):
        raise bad_request("method 'accept_all' needs every category true in 'choices'")
    if method == "reject_all" and any(choices.values()):
        raise bad_request("method 'reject_all' needs every category false in 'choices'")
    language = optional_str(body, "language", 12, site.languages[0] if site.languages else "")
    previous = current_token(request, services, site, body)
    consent_id = own_consent_id(request, services, site, body) or uuid.uuid4().hex
    now_ms = max(int(time.time() * 1000), services.revocations.revoked_at(consent_id) + 1)
    token = services.signer.issue(consent_id, site.name, choices, site.policy_version, now_ms)
    raw = services.signer.dumps(token)
    services.spool.append(consent_row(services, request, site, consent_id, "grant", method, choices, language, now_ms))
    if previous is not None and any(previous.choices[c] and not choices[c] for c in CATEGORIES):
        services.revocations.revoke(consent_id, now_ms - 1)  # the narrower choice wins over the old token
    services.metrics.decisions.labels(site.name, "grant", method).inc()
    response = JSONResponse(_token_json(token, raw))
    set_consent_cookie(response, request, services, raw)
    return response


async def read_consent(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    site = site_for(request, services)
    token = current_token(request, services, site)
    if token is None:
        return JSONResponse({"choices": None, "policy_version": site.policy_version})
    return JSONResponse(_token_json(token))


async def withdraw_consent(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    site = site_for(request, services)
    body = await read_json_object(request, services.config.max_body_bytes, required=False)
    consent_id = own_consent_id(request, services, site, body)
    response = JSONResponse({"withdrawn": consent_id is not None, "consent_id": consent_id})
    if consent_id is not None:
        record_withdrawal(services, request, site, consent_id, "withdraw", optional_str(body, "language", 12, ""))
    set_consent_cookie(response, request, services, None)
    return response
