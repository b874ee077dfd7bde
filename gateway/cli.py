"""The `consentgate` command: serve, check-config."""
from __future__ import annotations

import argparse
import logging
import sys

from gateway.config import ConfigError, GatewayConfig, load_config


def _load_or_exit(path: str) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"consentgate: {len(exc.problems)} problem(s) in {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(config: GatewayConfig, host: str, port: int, log_level: str = "info") -> None:
    import uvicorn

    from gateway.app import create_app

    _setup_logging(log_level)
    app = create_app(config)
    logging.getLogger("consentgate").info("consentgate on http://%s:%d, store %s", host, port,
                                          config.store.split("@")[-1])
    # proxy_headers off: the gateway itself decides which X-Forwarded-For to believe (trusted_proxies).
    # uvicorn's access log off: it would write full client addresses; ours truncates them.
    uvicorn.run(app, host=host, port=port, access_log=False, proxy_headers=False, log_config=None,
                loop="uvloop", http="httptools", timeout_graceful_shutdown=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="consentgate", description="Cookie consent banner and consent-gated tracking gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the gateway")
    p_serve.add_argument("--config", required=True, help="the TOML config file")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p_check = sub.add_parser("check-config", help="validate a config file and list every problem")
    p_check.add_argument("config")
    p_sql = sub.add_parser("sql", help="run a read-only SQL query on the store and print JSON lines "
                           "(on the embedded store, only while the gateway is stopped)")
    p_sql.add_argument("--config", required=True)
    p_sql.add_argument("query", help="SQL; name tables as {db}.events, {db}.consents, {db}.forwards")
    p_vendors = sub.add_parser("vendors", help="check the vendors hits are forwarded to")
    p_vendors_sub = p_vendors.add_subparsers(dest="vendors_command", required=True)
    p_vtest = p_vendors_sub.add_parser("test", help="send one synthetic hit to a vendor and show its answer")
    p_vtest.add_argument("--config", required=True)
    p_vtest.add_argument("--site", required=True)
    p_vtest.add_argument("--vendor", required=True, help="the vendor's name in the site's [[sites.X.vendors]]")
    p_demo = sub.add_parser("demo", help="run a gateway with generated past traffic and a demo site that embeds the banner")
    p_demo.add_argument("--events", type=int, default=300_000, help="generated events of past traffic (default 300000)")
    p_demo.add_argument("--days", type=int, default=90, help="days of past traffic (default 90)")
    p_demo.add_argument("--dir", default="consentgate-demo", help="folder for the demo's config and store")
    p_demo.add_argument("--host", default="127.0.0.1")
    p_demo.add_argument("--port", type=int, default=8000, help="the gateway's port (dashboard, API, banner)")
    p_demo.add_argument("--site-port", type=int, default=8001, help="the demo site's port")
    p_demo.add_argument("--reset", action="store_true", help="delete the demo store's data and generate it again")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from pathlib import Path

        from gateway.demo import run_demo

        if args.events < 0 or not 1 <= args.days <= 395:
            parser.error("--events must be >= 0 and --days between 1 and 395")
        run_demo(Path(args.dir), args.host, args.port, args.site_port, args.events, args.days, args.reset)
    elif args.command == "serve":
        serve(_load_or_exit(args.config), args.host, args.port, args.log_level)
    elif args.command == "check-config":
        config = _load_or_exit(args.config)
        print(f"{args.config}: OK, {len(config.sites)} site(s): {', '.join(config.sites)}; store {config.store.split('@')[-1]}")
    elif args.command == "sql":
        run_sql(_load_or_exit(args.config), args.query)
    elif args.command == "vendors":
        from gateway.forwarding.probe import send_test_hit

        raise SystemExit(send_test_hit(_load_or_exit(args.config), args.site, args.vendor))


def run_sql(config: GatewayConfig, query: str) -> None:
    import json

    from analytics.store import Store

    store = Store(config.store, config.retention_days)
    try:
        rows = store.query_dicts(query, {})
    except Exception as exc:  # noqa: BLE001 - shown to the operator, with the likely cause
        hint = (" (is the gateway running? the embedded store can be opened by one process only: "
                "stop it, or query through the HTTP API)") if "lock" in str(exc).lower() else ""
        print(f"consentgate sql: {str(exc).splitlines()[0][:300]}{hint}", file=sys.stderr)
        raise SystemExit(1) from None
    for row in rows:
        print(json.dumps(row, default=str, ensure_ascii=False))


if __name__ == "__main__":
    main()
