"""`consentgate demo`: a populated gateway and a demo web page, for a first look in a minute.

One process: it writes a config into the demo folder, opens the embedded store,
generates past traffic inside ClickHouse (progress on stderr), then serves the
gateway and, on a second port (another origin, as a real site would be), a small
demo site whose pages embed the banner. Consenting there and clicking around shows
up in the dashboard's realtime count.
"""
from __future__ import annotations

import asyncio
import html
import logging
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from analytics.stats_traffic import generate_traffic
from analytics.store import Store
from gateway.config import GatewayConfig, load_config

DEMO_SITE = "demo"
DEMO_TOKEN = "consentgate-demo-stats-token"  # public, like the demo: never reuse it
DEMO_PAGES = {  # path -> (title, text)
    "/": ("Clientbox", "Customer portals for small firms. This is the demo site of consentgate."),
    "/pricing": ("Pricing", "Starter, Team and Firm plans. Every plan includes the portal and e-signing."),
    "/features": ("Features", "Secure file exchange, e-signing, reminders and a portal in your own style."),
    "/blog/cookie-consent-guide": ("A cookie consent guide", "What a fair banner looks like and why 'reject' sits next to 'accept'."),
    "/signup": ("Sign up", "Start a free trial: no card needed."),
    "/contact": ("Contact", "Write to hello@clientbox.example or call us during office hours."),
}


def write_demo_config(folder: Path, port: int, site_port: int) -> Path:
    """The demo's config file; its secret is made once and kept, so consent tokens survive a restart."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "consentgate.toml"
    secret_file = folder / "secret_key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    path.write_text(f"""# Written by `consentgate demo`; the next demo run writes it again.
[gateway]
secret_key = "{secret_file.read_text().strip()}"
store = "chdb://{(folder / 'store').resolve()}"
stats_tokens = ["{DEMO_TOKEN}"]
flush_interval = 0.5

[sites.{DEMO_SITE}]
origins = ["http://127.0.0.1:{site_port}", "http://localhost:{site_port}"]
policy_url = "http://127.0.0.1:{site_port}/privacy"
controller = "Clientbox (demo)"
languages = ["en", "nl"]
timezone = "Europe/Amsterdam"
""")
    return path


def demo_site(gateway_url: str) -> Starlette:
    """The example site: a few pages that embed the banner from the gateway's origin."""
    nav = "".join(f'<a href="{p}">{html.escape(t)}</a>' for p, (t, _) in DEMO_PAGES.items())

    async def page(request: Request) -> HTMLResponse:
        title, text = DEMO_PAGES.get(request.url.path, ("Not found", "No such page on the demo site."))
        return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · demo site</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:1rem 1.25rem;color:#1e293b}}
nav{{display:flex;flex-wrap:wrap;gap:.75rem;padding:.75rem 0;border-bottom:1px solid #e2e8f0}}a{{color:#4f46e5}}
.hint{{background:#eef2ff;padding:.75rem 1rem;border-radius:.5rem}}</style>
<script src="{gateway_url}/s/{DEMO_SITE}/banner.js" defer></script>
</head><body><nav>{nav}</nav><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>
<p class="hint">Accept analytics in the banner, click around, then watch the realtime count on the
<a href="{gateway_url}/dashboard" target="_blank" rel="noopener">dashboard</a> (token <code>{DEMO_TOKEN}</code>).</p>
</body></html>""", status_code=200 if request.url.path in DEMO_PAGES else 404)

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET"])])


def _progress(started: float) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total)
        rate = done / max(time.monotonic() - started, 1e-6)
        sys.stderr.write(f"\r  generating traffic [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done:,}/{total:,} events, {rate:,.0f}/s")
        sys.stderr.flush()
        if done >= total:
            sys.stderr.write("\n")
    return show


def prepare_store(config: GatewayConfig, store: Store, events: int, days: int, reset: bool) -> None:
    store.migrate()
    site = config.sites[DEMO_SITE]
    if reset:
        for table in ("events", "consents", "forwards"):
            store.command(f"TRUNCATE TABLE {{db}}.{table}")
    have = store.query_value("SELECT count() FROM {db}.events WHERE site = {s:String}", {"s": DEMO_SITE}) or 0
    if have:
        print(f"  the demo store already holds {have:,} events: keeping them (--reset starts over)", file=sys.stderr)
        return
    print(f"  generating {events:,} events of past traffic over {days} days in ClickHouse ...", file=sys.stderr)
    generate_traffic(store, DEMO_SITE, events, days, tz=site.timezone, hostname="www.clientbox.example",
                     progress=_progress(time.monotonic()), chunk=max(50_000, events // 20))


def run_demo(folder: Path, host: str, port: int, site_port: int, events: int, days: int, reset: bool) -> None:
    import uvicorn

    from gateway.app import create_app

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(write_demo_config(folder, port, site_port))
    app = create_app(config)
    started = time.monotonic()
    prepare_store(config, app.state.services.store, events, days, reset)
    gateway_url = f"http://{host}:{port}"
    print(f"""
  ready in {time.monotonic() - started:.1f} s
  dashboard  {gateway_url}/dashboard   (stats token: {DEMO_TOKEN})
  demo site  http://{host}:{site_port}/   (accept analytics, click around, see it in realtime)
  API        {gateway_url}/api/stats/openapi.json
  data       {folder.resolve()}   (Ctrl+C stops; run again to keep the data, --reset to start over)
""", file=sys.stderr)
    servers = [
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, proxy_headers=False, log_config=None,
                                      timeout_graceful_shutdown=10)),
        uvicorn.Server(uvicorn.Config(demo_site(gateway_url), host=host, port=site_port, access_log=False,
                                      log_config=None, lifespan="off")),
    ]

    async def serve_both() -> None:
        # uvicorn's Ctrl+C handler stops one server; stopping one stops the other.
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*pending)

    asyncio.run(serve_both())
