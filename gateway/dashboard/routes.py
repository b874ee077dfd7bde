"""Dashboard routes: the page, log in / log out with a stats token, and its static assets.

Login and logout are form posts: they refuse another origin's page (CSRF; the session cookie
is SameSite=Strict as well) and redirect only to /dashboard, whatever the request says.
Logout ends a shared link's session in the browser too (cookie `cg_share`): otherwise /dashboard
would open that session again, and "Log out" would leave the browser logged in.

The chart library (Chart.js) is the npm package that scripts/setup installs into
node_modules/ from the committed package-lock.json; the gateway serves it itself, so
the page makes no request to another origin (the Content-Security-Policy says so too).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from gateway.bodies import read_body
from gateway.clientip import is_https
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.services import Services
from gateway.stats_auth import (MAX_FAILURES, SESSION_COOKIE, SESSION_MAX_AGE, SHARE_COOKIE, TokenAuth,
                                refuse_foreign_origin, session_access)

STATIC = Path(__file__).resolve().parent / "static"
ROOT = Path(__file__).resolve().parents[2]
CHARTJS_ENV = "CONSENTGATE_CHARTJS"
CHARTJS = Path("node_modules/chart.js/dist/chart.umd.min.js")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with the login form,
    # and the login's CSRF check could not tell the dashboard's own form from a sandboxed attacker's.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LOGIN_FAILED = "That token is not one of this gateway's stats tokens. Check it and try again."
LOGIN_BLOCKED = (f"More than {MAX_FAILURES} failed logins from your network in a minute. "
                 "Wait {seconds} seconds, then try again.")


def chartjs_path() -> Path:
    return Path(os.environ.get(CHARTJS_ENV, "") or ROOT / CHARTJS)


def _login_page(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    html = (STATIC / "login.html").read_text(encoding="utf-8").replace("{error}", error)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _set_session_cookie(response: Response, request: Request, config: GatewayConfig, value: str | None) -> None:
    """Secure whenever the consent cookie would be: the browser spoke https, itself or to a trusted proxy."""
    secure = is_https(request, config.trusted_proxies)
    if value is None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure)
    else:
        response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_MAX_AGE, httponly=True, samesite="strict",
                            secure=secure, path="/")


def _clear_share_cookie(response: Response, request: Request, config: GatewayConfig) -> None:
    """Ends a shared link's session in this browser. The deletion carries the attributes the cookie was set
    with (gateway/share_api.py): over https a Partitioned cookie, which only a partitioned Set-Cookie removes."""
    if is_https(request, config.trusted_proxies):
        response.delete_cookie(SHARE_COOKIE, path="/", httponly=True, samesite="none", secure=True)
        name, header = response.raw_headers[-1]
        response.raw_headers[-1] = (name, header + b"; Partitioned")
    else:
        response.delete_cookie(SHARE_COOKIE, path="/", httponly=True, samesite="lax")


async def dashboard(request: Request) -> Response:
    if await session_access(request) is None:
        return _login_page()
    return HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


async def login(request: Request) -> Response:
    services: Services = request.app.state.services
    auth: TokenAuth = request.app.state.token_auth
    refuse_foreign_origin(request, services.config)
    body = await read_body(request.receive, request.headers.get("content-length", ""), 4096)
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    token = (fields.get("token") or [""])[0].strip()
    wait = auth.blocked_for(request)
    if wait:  # also for the right token: otherwise the 11th guess would still tell right from wrong
        return _login_page(LOGIN_BLOCKED.format(seconds=wait), 429, {"Retry-After": str(wait)})
    if auth.access_for(token) is None:
        if token:  # an empty form is no guess
            auth.count_failure(request)
        return _login_page(LOGIN_FAILED, 401)
    response = RedirectResponse("/dashboard", status_code=303)  # never a `next` or the Referer: no open redirect
    _set_session_cookie(response, request, services.config, auth.new_session(token))
    return response


async def logout(request: Request) -> Response:
    services: Services = request.app.state.services
    auth: TokenAuth = request.app.state.token_auth
    refuse_foreign_origin(request, services.config)
    auth.end_session(request)
    response = RedirectResponse("/dashboard", status_code=303)
    _set_session_cookie(response, request, services.config, None)
    if SHARE_COOKIE in request.cookies:  # else /dashboard would open the shared link's session again
        _clear_share_cookie(response, request, services.config)
    return response


ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "chart.umd.min.js": "text/javascript"}


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        raise GatewayError(404, "not_found", f"no dashboard asset named {name[:60]!r}")
    path = chartjs_path() if name == "chart.umd.min.js" else STATIC / name
    if not path.is_file():
        raise GatewayError(404, "not_found", f"{path} is missing: run scripts/setup (it installs Chart.js with npm ci), "
                           f"or point {CHARTJS_ENV} at chart.umd.min.js")
    return FileResponse(path, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=3600",
                                                                "X-Content-Type-Options": "nosniff"})
