"""The `consentgate` command: serve, check-config."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.config import SECRET_ENV, ConfigError, GatewayConfig, load_config
from gateway import share_report_cli
from gateway.scan import command as scan_command


def _load_or_exit(path: str) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"consentgate: {len(exc.problems)} problem(s) in {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _setup_logging(level: str) -> None:
    from gateway.logtext import OneLineFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def serve(config: GatewayConfig, host: str, port: int, log_level: str = "info") -> int:
    """Runs the gateway until SIGTERM or SIGINT; 0 once it has stopped cleanly (spool drained or kept, store
    closed), 1 when stopping failed."""
    import signal

    import uvicorn

    from gateway.app import create_app

    _setup_logging(log_level)
    if config.secret_source == "env":
        logging.getLogger("consentgate").info("secret key from %s: the environment wins over any secret_key in the "
                                              "config file", SECRET_ENV)
    app = create_app(config)
    logging.getLogger("consentgate").info("consentgate on http://%s:%d, store %s", host, port,
                                          config.store.split("@")[-1])
    # proxy_headers off: the gateway itself decides which X-Forwarded-For to believe (trusted_proxies).
    # uvicorn's access log off: it would write full client addresses; ours truncates them.
    # http: httptools with a 32 KiB bound on the request head (gateway/http_protocol.py; 431 above it).
    from gateway.http_protocol import GatewayHttpProtocol

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, proxy_headers=False,
                                           log_config=None, loop="uvloop", http=GatewayHttpProtocol,
                                           timeout_graceful_shutdown=30))

    def stop_requested(signum: int, frame: object) -> None:
        # uvicorn shuts down gracefully on these signals, then raises them again with the handlers it
        # found: this one, so a clean stop exits 0 instead of dying by the signal (-15, 130). Before
        # uvicorn installs its own, it asks for a stop all the same.
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_requested)
    server.run()
    lifespan = getattr(server, "lifespan", None)
    if lifespan is not None and (getattr(lifespan, "shutdown_failed", False) or getattr(lifespan, "error_occurred", False)):
        logging.getLogger("consentgate").error("the gateway did not stop cleanly (see the errors above)")
        return 1
    return 0


def serve_workers(config: GatewayConfig, config_path: str, host: str, port: int, workers: int,
                  log_level: str = "info") -> int:
    """Several worker processes on one port (uvicorn's supervisor), each built by gateway/asgi.py."""
    import os

    import uvicorn

    from gateway.asgi import CONFIG_ENV, unclaimed_spools
    from gateway.http_protocol import GatewayHttpProtocol

    if not 1 <= workers <= 64:
        print(f"consentgate serve: --workers must be between 1 and 64, got {workers}", file=sys.stderr)
        return 2
    if config.store.startswith("chdb://"):
        print("consentgate serve: --workers needs a ClickHouse server store (store = \"http(s)://...\"): the embedded "
              "chDB store can be opened by one process only. Run one process per embedded store, or point store at a "
              "ClickHouse server (docs/deploy.md) to run several workers or gateways.", file=sys.stderr)
        return 2
    _setup_logging(log_level)
    for folder in unclaimed_spools(config.data_dir):
        logging.getLogger("consentgate").warning(
            "%s holds spooled records of a worker that is not running: a worker takes it over when %d or more run, "
            "or run one gateway with data_dir = %s to write it out", folder, int(folder.name.split("-")[1]) + 1, folder)
    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    uvicorn.run("gateway.asgi:app_from_env", factory=True, workers=workers, host=host, port=port, access_log=False,
                proxy_headers=False, log_config=None, loop="uvloop", http=GatewayHttpProtocol,
                timeout_graceful_shutdown=30)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="consentgate", description="Cookie consent banner and consent-gated tracking gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the gateway")
    p_serve.add_argument("--config", required=True, help="the TOML config file")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p_serve.add_argument("--workers", type=int, default=1, help="worker processes (a ClickHouse server store only; "
                         "each worker spools into data_dir/worker-<n>)")
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
    p_consents = sub.add_parser("consents", help="the consent log, for auditors")
    p_consents_sub = p_consents.add_subparsers(dest="consents_command", required=True)
    p_cexport = p_consents_sub.add_parser(
        "export", help="every decision of a site and the banner wording it was made on, through the running gateway")
    p_cexport.add_argument("--config", required=True)
    p_cexport.add_argument("--site", required=True)
    p_cexport.add_argument("--from", dest="start", help="first UTC day, YYYY-MM-DD (default: as far back as kept)")
    p_cexport.add_argument("--to", dest="end", help="last UTC day, YYYY-MM-DD (default: today)")
    p_cexport.add_argument("--format", choices=["json", "csv"], default="json")
    p_cexport.add_argument("--out", help="write to this file (default: standard output)")
    p_cexport.add_argument("--url", help="the gateway's base URL (default: public_url from the config, "
                           "else http://127.0.0.1:8000)")
    p_cexport.add_argument("--token", help="a stats token for the site (default: env CONSENTGATE_STATS_TOKEN, "
                           "else one from the config)")
    p_privacy = sub.add_parser("privacy", help="a visitor's rights, for requests by e-mail (through the running "
                               "gateway's admin API)")
    p_privacy_sub = p_privacy.add_subparsers(dest="privacy_command", required=True)
    for action, text in (("export", "print (or --out) everything stored about the visitor, as JSON"),
                         ("erase", "erase the visitor everywhere (the consent log stays as proof)"),
                         ("restrict", "restrict processing (GDPR art. 18): kept, left out of stats and forwarding"),
                         ("lift", "lift a restriction")):
        p_action = p_privacy_sub.add_parser(action, help=text)
        p_action.add_argument("--config", required=True)
        p_action.add_argument("--site", required=True)
        p_action.add_argument("--consent-id", required=True, help="the visitor's consent id (32 hex characters)")
        p_action.add_argument("--url", default="", help="the gateway's address (default: [gateway] public_url)")
        p_action.add_argument("--token", default="", help="an admin token (default: env CONSENTGATE_ADMIN_TOKEN, "
                              "then the config's first admin_tokens entry)")
        p_action.add_argument("--out", default="", help="write the answer to this file")
    p_backup = sub.add_parser("backup", help="copy the store (schema and rows) into a new folder, through the running "
                              "gateway's admin API")
    p_backup.add_argument("--config", required=True)
    p_backup.add_argument("--to", required=True, help="a new or empty folder for the backup")
    p_backup.add_argument("--url", default="", help="the gateway's address (default: [gateway] public_url)")
    p_backup.add_argument("--token", default="", help="an admin token (default: env CONSENTGATE_ADMIN_TOKEN, "
                          "then the config's first admin_tokens entry)")
    p_restore = sub.add_parser("restore", help="load a backup into the config's store, which must be empty "
                               "(gateway stopped); checks every table's rows and checksum")
    p_restore.add_argument("--config", required=True)
    p_restore.add_argument("--from", dest="source", required=True, help="a folder made by consentgate backup")
    scan_command.add_parser(sub)
    share_report_cli.add_parsers(sub)  # share create|list|revoke, report send
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
        config = _load_or_exit(args.config)
        if args.workers != 1:
            raise SystemExit(serve_workers(config, args.config, args.host, args.port, args.workers, args.log_level))
        raise SystemExit(serve(config, args.host, args.port, args.log_level))
    elif args.command == "check-config":
        config = _load_or_exit(args.config)
        print(f"{args.config}: OK, {len(config.sites)} site(s): {', '.join(config.sites)}; store {config.store.split('@')[-1]}"
              + (f"; secret key from {SECRET_ENV} (it wins over the file's secret_key)" if config.secret_source == "env" else ""))
    elif args.command == "sql":
        run_sql(_load_or_exit(args.config), args.query)
    elif args.command == "consents":
        raise SystemExit(export_consents(_load_or_exit(args.config), args))
    elif args.command == "privacy":
        from gateway.admin_api import run_privacy_command

        raise SystemExit(run_privacy_command(_load_or_exit(args.config), args.privacy_command, args.site,
                                             args.consent_id, args.url, args.token, args.out))
    elif args.command in ("backup", "restore"):
        from gateway.backup import run_backup, run_restore

        config = _load_or_exit(args.config)
        raise SystemExit(run_backup(config, args.to, args.url, args.token) if args.command == "backup"
                         else run_restore(config, args.source))
    elif args.command in ("share", "report"):
        config = _load_or_exit(args.config)
        raise SystemExit(share_report_cli.run_share(config, args) if args.command == "share"
                         else share_report_cli.run_report(config, args))
    elif args.command == "scan":
        raise SystemExit(scan_command.main(args))
    elif args.command == "vendors":
        from gateway.forwarding.probe import send_test_hit

        raise SystemExit(send_test_hit(_load_or_exit(args.config), args.site, args.vendor))


def export_consents(config: GatewayConfig, args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.gateway_client import GatewayRequestFailed, download, gateway_url, stats_token

    if args.site not in config.sites:
        print(f"consentgate consents export: no site {args.site!r} in the config (sites: {', '.join(config.sites)})",
              file=sys.stderr)
        return 2
    params = {"format": args.format, **({"from": args.start} if args.start else {}), **({"to": args.end} if args.end else {})}
    try:
        url = f"{gateway_url(config, args.url)}/api/consents/{args.site}"
        written = download(url, params, stats_token(config, args.site, args.token), Path(args.out) if args.out else None)
    except GatewayRequestFailed as exc:
        print(f"consentgate consents export: {exc}", file=sys.stderr)
        return 1
    if args.out:
        print(f"wrote {written} bytes to {args.out}", file=sys.stderr)
    return 0


def _store_in_use(error: str) -> bool:
    # chDB reports another process's lock on its own stderr; the exception only says the engine did not open.
    return "lock" in error.lower() or "open the chdb engine" in error


def run_sql(config: GatewayConfig, query: str) -> None:
    import json

    from analytics.store import Store

    try:
        with Store(config.store, config.retention_days) as store:  # closed before exit: chDB must stop first
            rows = store.query_dicts(query, {})
    except Exception as exc:  # noqa: BLE001 - shown to the operator, with the likely cause
        hint = (" (is the gateway running? the embedded store can be opened by one process only: "
                "stop it, or query through the HTTP API)") if _store_in_use(str(exc)) else ""
        print(f"consentgate sql: {str(exc).splitlines()[0][:300]}{hint}", file=sys.stderr)
        raise SystemExit(1) from None
    for row in rows:
        print(json.dumps(row, default=str, ensure_ascii=False))


if __name__ == "__main__":
    main()
