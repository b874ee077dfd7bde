"""GET /s/{site}/banner.js: the site's prebuilt banner bundle, cached by browsers and revalidated by ETag."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import unknown_site
from gateway.services import Services

CACHE_CONTROL = "public, max-age=300"  # a policy or text change reaches visitors within five minutes


def accepted_encodings(header: str) -> set[str]:
    """The content codings an Accept-Encoding header allows (q=0 refuses one)."""
    accepted = set()
    for item in header.lower().split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
        try:
            if float(q) > 0:
                accepted.add(name.strip())
        except ValueError:
            continue
    return accepted


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" and "x" name the same banner."""
    bare = etag.removeprefix("W/")
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/") == bare for tag in header.split(","))


async def banner_script(request: Request) -> Response:
    services: Services = request.app.state.services
    name = request.path_params["site"]
    bundle = services.banners.get(name)
    if bundle is None:
        raise unknown_site(name)
    headers = {"ETag": bundle.etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding",
               "X-Content-Type-Options": "nosniff"}
    if etag_matches(request.headers.get("if-none-match", ""), bundle.etag):
        return Response(status_code=304, headers=headers)
    accepted = accepted_encodings(request.headers.get("accept-encoding", ""))
    body = bundle.js
    if bundle.brotli is not None and "br" in accepted:
        body, headers["Content-Encoding"] = bundle.brotli, "br"
    elif "gzip" in accepted:
        body, headers["Content-Encoding"] = bundle.gzip, "gzip"
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
