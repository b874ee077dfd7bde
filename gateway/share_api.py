"""Shared links over HTTP: the page a link opens (`/share/{secret}`) and the API that makes, lists and
revokes links (`/api/stats/{site}/shared-links`).

`GET /share/{secret}` of a live link opens a read-only session of the link's site (cookie `cg_share`,
gateway/stats_auth.py) and answers the dashboard itself; a link with a password first answers a password
form (`POST /share/{secret}`: every password sent counts like a failed stats-token check, 10 a minute per
network, counted before it is checked). The page may be framed only by the site's `share_frame_ancestors`
(default: nowhere).
The API needs a stats token (or dashboard login) that may write the site: never a shared link's session.
"""
from __future__ import annotations

import html
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.bodies import optional_str, read_body, read_json_object
from gateway.clientip import is_https
from gateway.config import GatewayConfig, SiteConfig
from gateway.dashboard.routes import SECURITY_HEADERS, STATIC
from gateway.errors import GatewayError, bad_request
from gateway.services import Services
from gateway.shared_links import (MAX_LABEL_LENGTH, MAX_LIVE_LINKS, MAX_PASSWORD_LENGTH, SharedLink, SharedLinks,
                                  check_password)
from gateway.stats_auth import SESSION_MAX_AGE, SHARE_COOKIE, TokenAuth, require_write_access

MAX_SECRET_LENGTH = 100
NO_STORE = {"Cache-Control": "no-store"}
PASSWORD_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>consentgate · shared dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/assets/dashboard.css">
</head>
<body class="login-page">
<main class="login">
  <h1><span class="logo" aria-hidden="true"></span>consentgate</h1>
  <p class="muted">The statistics of {site}, shared with you. This link has a password.</p>
  <form method="post">
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
    <p class="error" role="alert">{error}</p>
    <button type="submit">Open</button>
  </form>
</main>
</body>
</html>
"""
WRONG_PASSWORD = "That is not the password of this link. Check it and try again."


def frame_headers(site: SiteConfig) -> dict[str, str]:
    """The dashboard's security headers, framing allowed only for the site's share_frame_ancestors."""
    ancestors = " ".join(site.share_frame_ancestors) or "'none'"
    csp = SECURITY_HEADERS["Content-Security-Policy"].replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp}
    if not site.share_frame_ancestors:
        headers["X-Frame-Options"] = "DENY"  # for browsers without CSP frame-ancestors
    return headers


def _set_share_cookie(response: Response, request: Request, config: GatewayConfig, value: str) -> None:
    # Over https, SameSite=None and Partitioned (CHIPS): the cookie works inside an allowed site's iframe,
    # in a jar of that embedding site only. Over plain http browsers refuse SameSite=None: Lax, top level only.
    if is_https(request, config.trusted_proxies):
        response.set_cookie(SHARE_COOKIE, value, max_age=SESSION_MAX_AGE, httponly=True, samesite="none",
                            secure=True, path="/")
        # Python before 3.14 cannot write the Partitioned attribute: add it to the header just set.
        name, header = response.raw_headers[-1]
        response.raw_headers[-1] = (name, header + b"; Partitioned")
    else:
        response.set_cookie(SHARE_COOKIE, value, max_age=SESSION_MAX_AGE, httponly=True, samesite="lax", path="/")


async def _live_link(request: Request, give_back: bool) -> tuple[Services, TokenAuth, SharedLink, SiteConfig]:
    """The live link of the path's secret (404 otherwise). Every request is counted as a check before the lookup
    (no await between the limit's test and its count, so a burst cannot pass it together), and past the limit
    refused with a 429, for the right password too: otherwise the 11th guess would still tell right from wrong.
    `give_back`: a live link's count is taken back (opening a link is not a guess; a password sent is)."""
    services: Services = request.app.state.services
    auth: TokenAuth = request.app.state.token_auth
    auth.take_attempt(request)
    secret = request.path_params["secret"]
    link = None
    if len(secret) <= MAX_SECRET_LENGTH:
        link = await run_in_threadpool(SharedLinks(services.store).by_secret, secret)
    site = services.config.sites.get(link.site) if link is not None else None
    if link is None or site is None:
        raise GatewayError(404, "not_found", "no shared link at this address: it was revoked or mistyped; ask the "
                           "site's owner for a new one")
    if give_back:
        auth.give_back_attempt(request)
    return services, auth, link, site


def _password_page(site: SiteConfig, error: str = "", status: int = 200,
                   headers: dict[str, str] | None = None) -> HTMLResponse:
    page = PASSWORD_PAGE.replace("{site}", html.escape(site.name)).replace("{error}", html.escape(error))
    return HTMLResponse(page, status_code=status, headers={**frame_headers(site), **(headers or {})})


async def open_shared_link(request: Request) -> Response:
    services, auth, link, site = await _live_link(request, give_back=True)
    has_session = auth.share_session_link(request) == link.link_id
    if link.has_password and not has_session:
        return _password_page(site)
    response = HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"), headers=frame_headers(site))
    if not has_session:
        _set_share_cookie(response, request, services.config, auth.new_share_session(link.link_id))
    return response


async def unlock_shared_link(request: Request) -> Response:
    # Every password sent is an attempt, counted before the first await: counted after the (slow, threaded)
    # check, a burst of parallel guesses all passed the limit before the first failure was counted.
    services, auth, link, site = await _live_link(request, give_back=False)
    body = await read_body(request.receive, request.headers.get("content-length", ""), 4096)
    password = (parse_qs(body.decode("utf-8", errors="replace")).get("password") or [""])[0]
    if not link.has_password:
        response: Response = RedirectResponse(request.url.path, status_code=303)
    elif not password or not await run_in_threadpool(check_password, password, link.password_hash):
        return _password_page(site, WRONG_PASSWORD, 401)
    else:
        response = RedirectResponse(request.url.path, status_code=303)  # this link's own address, nothing else
    _set_share_cookie(response, request, services.config, auth.new_share_session(link.link_id))
    return response


# ---- the API -------------------------------------------------------------------------------------

async def _writer(request: Request) -> tuple[Services, str]:
    """The services and site, once the caller may change the site's settings (a shared link may not)."""
    services: Services = request.app.state.services
    site = request.path_params["site"]
    await require_write_access(services.config, request, site, "a shared link's session cannot make, list or revoke "
                               "shared links: use a stats token of the site")
    return services, site


def _link_url(request: Request, config: GatewayConfig, secret: str) -> str:
    base = config.public_url or str(request.base_url).rstrip("/")
    return f"{base}/share/{secret}"


async def list_links(request: Request) -> JSONResponse:
    services, site = await _writer(request)
    links = await run_in_threadpool(SharedLinks(services.store).list, site)
    return JSONResponse({"site": site, "links": [link.public() for link in links]}, headers=NO_STORE)


async def create_link(request: Request) -> JSONResponse:
    services, site = await _writer(request)
    body = await read_json_object(request, 4096, required=False)
    unknown = sorted(set(body) - {"password", "label"})
    if unknown:
        raise bad_request(f"unknown field {unknown[0][:40]!r}: send password and/or label")
    password = optional_str(body, "password", MAX_PASSWORD_LENGTH)
    label = optional_str(body, "label", MAX_LABEL_LENGTH)
    if password and len(password) < 8:
        raise bad_request("'password' is shorter than 8 characters: use a longer one, or none")
    links = SharedLinks(services.store)
    if len(await run_in_threadpool(links.list, site)) >= MAX_LIVE_LINKS:
        raise GatewayError(409, "conflict", f"site {site!r} has {MAX_LIVE_LINKS} live shared links, the most it may "
                           f"have: revoke unused ones (GET /api/stats/{site}/shared-links lists them) first")
    link, secret = await run_in_threadpool(links.create, site, password, label)
    return JSONResponse({**link.public(), "url": _link_url(request, services.config, secret),
                         "note": "this address is shown once: the gateway keeps only a hash of it"},
                        status_code=201, headers=NO_STORE)


async def revoke_link(request: Request) -> JSONResponse:
    services, site = await _writer(request)
    link_id = request.path_params["link_id"]
    if len(link_id) > 64 or not await run_in_threadpool(SharedLinks(services.store).revoke, site, link_id):
        raise GatewayError(404, "not_found", f"site {site!r} has no live shared link {link_id[:64]!r}: list them with "
                           f"GET /api/stats/{site}/shared-links")
    return JSONResponse({"revoked": True, "link_id": link_id}, headers=NO_STORE)
