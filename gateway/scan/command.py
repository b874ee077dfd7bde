"""`consentgate scan URL`: run the crawl, judge it, write the reports, answer with an exit status for CI."""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from gateway.scan.model import SCHEMA_VERSION, Report

if TYPE_CHECKING:
    from gateway.scan.crawl import CrawlResult

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
INSTALL_HINT = ("consentgate scan needs Playwright (to drive Chromium): pip install 'consentgate[scan]' "
                "(or pip install playwright), and Debian's browser: apt-get install chromium")


class UsageError(Exception):
    """Wrong input to the command: told to the user with what to do, exit 2."""


@dataclass(frozen=True)
class ScanArgs:
    url: str
    config: str | None = None
    site: str | None = None
    pages: int = 20
    wait_ms: int = 3000
    timeout_ms: int = 30000
    json_path: str | None = None
    html_path: str | None = None
    suggest_config: bool = False
    chromium: str = "/usr/bin/chromium"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("consentgate")
    except PackageNotFoundError:
        return "unknown"


def check_args(args: ScanArgs) -> None:
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"expected an http(s) URL to scan, like https://www.example.com/, got {args.url!r}")
    if args.pages < 0 or args.wait_ms < 0 or args.timeout_ms < 1000:
        raise UsageError("--pages and --wait must be >= 0, --timeout at least 1 (seconds)")
    if args.site is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", args.site):
        raise UsageError(f"--site: a site name holds only letters, digits, '-' and '_', got {args.site!r}")


def _load_site(args: ScanArgs) -> tuple[str | None, list]:
    """The config's site to judge by (named, the only one, or the one whose origins hold the URL)
    and its declared cookies. Without --config: no site, the built-in list only."""
    import os
    import secrets

    from gateway.config import SECRET_ENV, ConfigError, load_config
    from gateway.scan.classify import declared_cookies

    if args.config is None:
        return args.site, []
    try:
        # The scan reads only the cookie declaration: a throwaway secret, so that a CI job without the
        # gateway's real secret (or with a placeholder in the file) can still scan.
        config = load_config(args.config, env={**os.environ, SECRET_ENV: secrets.token_urlsafe(32)})
    except ConfigError as exc:
        raise UsageError(f"{len(exc.problems)} problem(s) in {args.config}: " + "; ".join(exc.problems)) from None
    if args.site is not None:
        if args.site not in config.sites:
            raise UsageError(f"--site {args.site}: not in {args.config}; its sites are: {', '.join(config.sites)}")
        name = args.site
    else:
        parts = urlsplit(args.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        matching = [n for n, s in config.sites.items() if origin in s.origins]
        candidates = matching or list(config.sites)
        if len(candidates) != 1:
            raise UsageError(f"{args.config} has several sites ({', '.join(config.sites)}): name one with --site")
        name = candidates[0]
    return name, declared_cookies(config.sites[name])


def verdict_of(findings: int, errors: int) -> dict:
    if errors:
        return {"status": "error", "exit_code": EXIT_ERROR, "findings": findings, "errors": errors}
    status, code = ("findings", EXIT_FINDINGS) if findings else ("clean", EXIT_CLEAN)
    return {"status": status, "exit_code": code, "findings": findings, "errors": errors}


def build_report(args: ScanArgs, site: str | None, started: str, crawl_result: "CrawlResult | None",
                 errors: list) -> Report:
    from gateway.scan.findings import findings as judge

    phases = crawl_result.phases if crawl_result else []
    found = judge(phases)
    return {
        "schema_version": SCHEMA_VERSION, "tool": "consentgate scan", "tool_version": _version(),
        "url": args.url,
        "origin": crawl_result.origin if crawl_result else f"{urlsplit(args.url).scheme}://{urlsplit(args.url).netloc}",
        "site": site, "config": args.config, "started_at": started, "finished_at": _now(),
        "browser": crawl_result.browser if crawl_result else "",
        "options": {"pages": args.pages, "wait_ms": args.wait_ms, "timeout_ms": args.timeout_ms},
        "banner": crawl_result.banner if crawl_result else None,
        "verdict": verdict_of(len(found), len(errors)),
        "phases": phases, "findings": found, "errors": errors,
    }


def print_summary(report: Report, out: TextIO) -> None:
    print(f"consentgate scan {report['url']}: banner on the first visit: {report['banner'] or 'none'}", file=out)
    for phase in report["phases"]:
        if phase["status"] != "done":
            print(f"  {phase['name']}: {phase['status']}: {phase['note']}", file=out)
            continue
        count = sum(f["phase"] == phase["name"] for f in report["findings"])
        print(f"  {phase['name']}: {len(phase['pages'])} page(s), {len(phase['cookies'])} cookie(s), "
              f"{len(phase['storage'])} storage key(s), {len(phase['requests'])} other site(s); {count} finding(s)",
              file=out)
    for finding in report["findings"]:
        print(f"  FINDING [{finding['phase']}] {finding['problem']}", file=out)
    for error in report["errors"]:
        print(f"  ERROR [{error['phase'] or 'scan'}] {error['message']}", file=out)
    verdict = report["verdict"]
    print(f"verdict: {verdict['status']} ({verdict['findings']} finding(s), {verdict['errors']} error(s)); "
          f"exit {verdict['exit_code']}", file=out)


def run_scan(args: ScanArgs) -> int:
    """The whole command; returns its exit status."""
    try:
        check_args(args)
        site, declared = _load_site(args)
    except UsageError as exc:
        print(f"consentgate scan: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        import playwright.sync_api  # noqa: F401 - only to say how to install it when it is missing
    except ImportError:
        print(f"consentgate scan: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_ERROR
    from gateway.scan.classify import Classifier
    from gateway.scan.crawl import CrawlOptions, ScanFailed, crawl
    from gateway.scan.report_html import render_html
    from gateway.scan.suggest import site_name_for, suggest_config

    started = _now()
    options = CrawlOptions(args.url, args.pages, args.wait_ms, args.timeout_ms, args.chromium)
    try:
        result = crawl(options, Classifier(declared))
        errors = result.errors
    except ScanFailed as exc:
        result, errors = None, [{"phase": None, "page": args.url, "message": str(exc)}]
    except Exception as exc:  # noqa: BLE001 - exit 1 means findings; a crash must not look like one
        first_line = (str(exc).splitlines() or [""])[0][:300]
        result, errors = None, [{"phase": None, "page": args.url, "message": f"the scan stopped: {type(exc).__name__}: {first_line}"}]
    report = build_report(args, site, started, result, errors)
    # With --suggest-config the TOML alone goes to stdout (to redirect into a file); the summary to stderr.
    print_summary(report, sys.stderr if args.suggest_config else sys.stdout)
    try:
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if args.html_path:
            Path(args.html_path).write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        print(f"consentgate scan: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.suggest_config and result is not None:
        print(suggest_config(report, site or site_name_for(urlsplit(report["origin"]).hostname or "")), end="")
    return report["verdict"]["exit_code"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `scan` subcommand's arguments (gateway/cli.py calls this)."""
    p = sub.add_parser("scan", help="crawl a site like a first-time visitor (no consent, after Reject, after Accept) "
                       "and report cookies, storage and trackers set without consent; exit 0 clean, 1 findings, 2 error")
    p.add_argument("url", help="the start page, e.g. https://www.example.com/")
    p.add_argument("--config", help="the gateway's config: its cookie declaration says what is necessary")
    p.add_argument("--site", help="the site in the config (default: the one whose origins hold the URL)")
    p.add_argument("--pages", type=int, default=20, help="same-origin pages to visit besides the start URL (default 20)")
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the JSON report (docs/scan.md: schema)")
    p.add_argument("--html", dest="html_path", metavar="FILE", help="write the HTML report")
    p.add_argument("--suggest-config", action="store_true",
                   help="print [[sites.NAME.cookie]] TOML of the cookies seen (the summary goes to stderr)")
    p.add_argument("--wait", type=int, default=3000, metavar="MS",
                   help="the longest wait for a page to go quiet after loading, in ms (default 3000)")
    p.add_argument("--timeout", type=int, default=30, metavar="S", help="the longest wait for a page to load (default 30 s)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable (default /usr/bin/chromium)")


def main(args: argparse.Namespace) -> int:
    return run_scan(ScanArgs(args.url, args.config, args.site, args.pages, args.wait, args.timeout * 1000,
                             args.json_path, args.html_path, args.suggest_config, args.chromium))
