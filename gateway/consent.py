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

from analytics.records import ConsentRecord
from gateway.banner_versions import UNKNOWN_VERSION, decision_proof
from gateway.bodies import optional_str, read_json_object
from gateway.clientip import client_ip, is_https, truncate_ip
from gateway.collect.useragent import edge_user_agent, parse_user_agent
from gateway.config import CATEGORIES, SiteConfig
from gateway.errors import bad_request, spool_full
from gateway.ratelimit import limit_consent_rate
from gateway.revocations import revocation_at
from gateway.services import Services
from gateway.sites import check_origin, site_named
from gateway.tokens import COOKIE, ConsentToken, TokenInvalid

METHODS = ("accept_all", "reject_all", "custom", "gpc")


def site_for(request: Request, services: Services) -> SiteConfig:
    """The site named in the path, refusing a foreign Origin (the banner always sends one)."""
    site = site_named(services.config, request.path_params["site"])
    # The gateway's own pages (the cookie declaration's "change my choice") call it same-origin.
    check_origin(site, request.headers.get("origin", ""),
                 own=(f"{request.url.scheme}://{request.url.netloc}", services.config.public_url))
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
                 method: str, choices: dict[str, bool], language: str, now_ms: int,
                 proof: dict[str, str] | None = None) -> ConsentRecord:
    ua = parse_user_agent(edge_user_agent(request.headers.get("user-agent", "")))
    proof = proof or {"banner_version": UNKNOWN_VERSION, "page": ""}  # what the visitor saw, and where
    return ConsentRecord(
        record_id=str(uuid.uuid4()),
        site=site.name,
        timestamp=now_ms / 1000,
        consent_id=consent_id,
        action=action,
        method=method,
        preferences=int(choices["preferences"]),
        analytics=int(choices["analytics"]),
        marketing=int(choices["marketing"]),
        policy_version=site.policy_version,
        language=language,
        ip=truncate_ip(client_ip(request, services.config.trusted_proxies)),
        browser=ua.browser,
        os=ua.os,
        gpc=int(request.headers.get("sec-gpc", "") == "1"),
        banner_version=proof["banner_version"],
        page=proof["page"],
    )


def refuse_when_spool_full(services: Services) -> None:
    """A decision that cannot be kept is refused (503), never acknowledged and lost."""
    if services.spool_full():
        raise spool_full(services.config.max_spool_bytes)


async def record_withdrawal(services: Services, request: Request, site: SiteConfig, consent_id: str, method: str,
                            language: str = "") -> int:
    """Logs a withdrawal (proof, like a grant) and revokes every token of the consent id issued up to it;
    returns its time (ms) once the record is on disk (durability = machine)."""
    refuse_when_spool_full(services)
    now_ms = max(int(time.time() * 1000), services.revocations.revoked_at(consent_id) + 1)
    ticket = services.spool.append(consent_row(services, request, site, consent_id, "withdraw", method,
                                               {c: False for c in CATEGORIES}, language, now_ms))
    services.revocations.revoke(consent_id, revocation_at("withdraw", now_ms, first=False))
    services.metrics.decisions.labels(site.name, "withdraw", method).inc()
    await services.commit.wait(ticket)
    return now_ms


async def give_consent(request: Request) -> JSONResponse:
    limit_consent_rate(request)  # 429 past [gateway] consent_rate_per_minute for the client's network
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
    # Only a token valid now continues a consent id: a withdrawn, expired or erased one (it may sit in
    # localStorage, where any script reads it) must not buy a fresh token that reads the visitor's data.
    previous = current_token(request, services, site, body)
    consent_id = previous.consent_id if previous is not None else uuid.uuid4().hex
    now_ms = max(int(time.time() * 1000), services.revocations.revoked_at(consent_id) + 1)
    token = services.signer.issue(consent_id, site.name, choices, site.policy_version, now_ms)
    raw = services.signer.dumps(token)
    refuse_when_spool_full(services)
    proof = decision_proof(services, site, body, language, now_ms)
    ticket = services.spool.append(consent_row(services, request, site, consent_id, "grant", method, choices,
                                               language, now_ms, proof))
    if previous is not None:
        # The new decision supersedes every older token (as the start-up scan of the log does): a narrower
        # choice wins at once, and no old token reads what the visitor does from now on.
        services.revocations.revoke(consent_id, revocation_at("grant", now_ms, first=False))
    services.metrics.decisions.labels(site.name, "grant", method).inc()
    await services.commit.wait(ticket)  # the token goes out only once its proof is on disk
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
    limit_consent_rate(request)  # 429 past [gateway] consent_rate_per_minute for the client's network
    services: Services = request.app.state.services
    site = site_for(request, services)
    body = await read_json_object(request, services.config.max_body_bytes, required=False)
    consent_id = own_consent_id(request, services, site, body)
    valid = current_token(request, services, site, body)
    answer: dict[str, Any] = {"withdrawn": consent_id is not None, "consent_id": consent_id}
    if consent_id is not None:
        at_ms = await record_withdrawal(services, request, site, consent_id, "withdraw",
                                        optional_str(body, "language", 12, ""))
        if valid is not None:
            # The token of the withdrawal itself (nothing granted, issued just after the revocation): with it
            # the visitor can still export and erase their data, and decide again under the same consent id.
            # Only for a token valid until now: a stale one must not buy a fresh token.
            token = services.signer.issue(consent_id, site.name, {}, site.policy_version, at_ms + 1)
            answer.update(_token_json(token, services.signer.dumps(token)))
    response = JSONResponse(answer)
    set_consent_cookie(response, request, services, None)
    return response
