"""Dashboard routes: the page, log in / log out with a stats token, and its static assets.

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
from gateway.errors import GatewayError
from gateway.services import Services
from gateway.stats_auth import SESSION_COOKIE, SESSION_MAX_AGE, has_session, is_stats_token, session_value

STATIC = Path(__file__).resolve().parent / "static"
ROOT = Path(__file__).resolve().parents[2]
CHARTJS_ENV = "CONSENTGATE_CHARTJS"
CHARTJS = Path("node_modules/chart.js/dist/chart.umd.min.js")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOGIN_FAILED = "That token is not one of this gateway's stats tokens. Check it and try again."


def chartjs_path() -> Path:
    return Path(os.environ.get(CHARTJS_ENV, "") or ROOT / CHARTJS)


def _login_page(error: str = "", status: int = 200) -> HTMLResponse:
    html = (STATIC / "login.html").read_text(encoding="utf-8").replace("{error}", error)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


async def dashboard(request: Request) -> Response:
    services: Services = request.app.state.services
    if not has_session(services.config, request):
        return _login_page()
    return HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


async def login(request: Request) -> Response:
    services: Services = request.app.state.services
    body = await read_body(request.receive, request.headers.get("content-length", ""), 4096)
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    token = (fields.get("token") or [""])[0].strip()
    if not is_stats_token(services.config, token):
        return _login_page(LOGIN_FAILED, 401)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(SESSION_COOKIE, session_value(services.config, token), max_age=SESSION_MAX_AGE,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/dashboard", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
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
