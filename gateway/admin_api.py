"""The admin API: the operator's side of the privacy rights, for requests that arrive by e-mail.

`consentgate privacy export|erase|restrict|lift` calls it (the embedded store can be opened by one
process only, so the command goes through the running gateway). Every route needs a Bearer token
from `[gateway] admin_tokens` (at least 32 characters); without any configured, the API answers
404 as if it did not exist. Failed checks count towards the same per-network limit as stats tokens.

    GET    /api/admin/{site}/visitors/{consent_id}              export (JSON)
    DELETE /api/admin/{site}/visitors/{consent_id}              erase (logged as erased by the operator)
    POST   /api/admin/{site}/visitors/{consent_id}/restriction  restrict (GDPR art. 18)
    DELETE /api/admin/{site}/visitors/{consent_id}/restriction  lift the restriction
    GET    /api/admin/backup                                    the store as a tar (`consentgate backup`)
"""
from __future__ import annotations

import hmac
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from gateway.sites import site_named
from gateway.backup import BackupError, backup_response
from gateway.config import GatewayConfig, SiteConfig
from gateway.errors import GatewayError, bad_request
from gateway.privacy import BY_OPERATOR, erase_visitor, export_visitor, set_restriction
from gateway.services import Services

CONSENT_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as the gateway makes them


def _is_admin_token(services: Services, presented: str) -> bool:
    found = False
    for known in services.config.admin_tokens:  # every one compared, in constant time
        found |= hmac.compare_digest(presented.encode(), known.encode())
    return found and bool(presented)


def _admin_services(request: Request) -> Services:
    """The gateway's services, once the request's Bearer token is one of admin_tokens."""
    services: Services = request.app.state.services
    if not services.config.admin_tokens:
        raise GatewayError(404, "not_found", "the admin API is off: set [gateway] admin_tokens to turn it on")
    auth = request.app.state.token_auth
    auth.refuse_if_blocked(request)
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer ") or not _is_admin_token(services, header[len("Bearer "):].strip()):
        auth.count_failure(request)
        raise GatewayError(401, "bad_admin_token",
                           "send 'Authorization: Bearer <token>' with one of the config's [gateway] admin_tokens")
    return services


def _authorized(request: Request) -> tuple[Services, SiteConfig, str]:
    """The site and consent id of an admin request, once its Bearer token is one of admin_tokens."""
    services = _admin_services(request)
    site = site_named(services.config, request.path_params["site"])
    consent_id = request.path_params["consent_id"]
    if not CONSENT_ID.fullmatch(consent_id):
        raise bad_request("a consent id is 32 lowercase hexadecimal characters (the visitor finds it in "
                          "their export or in the banner's 'My data')")
    return services, site, consent_id


async def export_visitor_data(request: Request) -> JSONResponse:
    services, site, consent_id = _authorized(request)
    return JSONResponse(await export_visitor(services, site, consent_id), headers={"Cache-Control": "no-store"})


async def erase_visitor_data(request: Request) -> JSONResponse:
    services, site, consent_id = _authorized(request)
    counts = await erase_visitor(services, request, site, consent_id, BY_OPERATOR)
    return JSONResponse({"erased": True, "consent_id": consent_id, "removed": counts,
                         "kept": "consent records, as proof of consent"})


async def restrict_visitor(request: Request) -> JSONResponse:
    services, site, consent_id = _authorized(request)
    await set_restriction(services, site, consent_id, True, BY_OPERATOR)
    return JSONResponse({"restricted": True, "consent_id": consent_id})


async def lift_restriction(request: Request) -> JSONResponse:
    services, site, consent_id = _authorized(request)
    await set_restriction(services, site, consent_id, False, BY_OPERATOR)
    return JSONResponse({"restricted": False, "consent_id": consent_id})


async def backup_store(request: Request) -> StreamingResponse:
    """GET /api/admin/backup: the store as a tar (gateway/backup.py), for `consentgate backup`."""
    services = _admin_services(request)
    try:
        return await backup_response(services.store, services.writer, services.config.data_dir)
    except BackupError as exc:
        raise GatewayError(409, "backup_unavailable", str(exc)) from None


# ---- the client side: `consentgate privacy ...` ---------------------------------------------------

ADMIN_TOKEN_ENV = "CONSENTGATE_ADMIN_TOKEN"
ACTIONS = {"export": ("GET", ""), "erase": ("DELETE", ""), "restrict": ("POST", "/restriction"),
           "lift": ("DELETE", "/restriction")}


def run_privacy_command(config: GatewayConfig, action: str, site: str, consent_id: str, url: str = "",
                        token: str = "", out: str = "", env: dict[str, str] | None = None) -> int:
    """Sends one privacy request to the running gateway's admin API and prints its answer; the exit code."""
    import json
    import os
    import sys

    import httpx

    env = os.environ if env is None else env
    base = (url or config.public_url).rstrip("/")
    token = token or env.get(ADMIN_TOKEN_ENV, "") or (config.admin_tokens[0] if config.admin_tokens else "")
    if not base:
        print("consentgate privacy: give the gateway's address with --url (or set [gateway] public_url)", file=sys.stderr)
        return 2
    if not token:
        print(f"consentgate privacy: no admin token: set [gateway] admin_tokens, {ADMIN_TOKEN_ENV} or --token",
              file=sys.stderr)
        return 2
    method, suffix = ACTIONS[action]
    try:
        response = httpx.request(method, f"{base}/api/admin/{site}/visitors/{consent_id}{suffix}",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=120)
    except httpx.HTTPError as exc:
        print(f"consentgate privacy: cannot reach the gateway at {base} ({type(exc).__name__}): is it running?",
              file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        body = {"error": "bad_answer", "detail": response.text[:300]}
    if response.status_code != 200:
        print(f"consentgate privacy {action}: HTTP {response.status_code}: {body.get('error')}: {body.get('detail')}",
              file=sys.stderr)
        return 1
    text = json.dumps(body, ensure_ascii=False, indent=2)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)
    return 0
