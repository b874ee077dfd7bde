"""`consentgate share create|list|revoke` and `consentgate report send`: through the running gateway's
HTTP API (the embedded store can be opened by one process only, and that process is the gateway).

share: a stats token of the site (--token, env CONSENTGATE_STATS_TOKEN, else the config's).
report send: an admin token (--token, env CONSENTGATE_ADMIN_TOKEN, else the config's first admin_tokens).
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

import httpx

from gateway.config import GatewayConfig
from gateway.gateway_client import GatewayRequestFailed, gateway_url, stats_token

SHARE_PASSWORD_ENV = "CONSENTGATE_SHARE_PASSWORD"


def add_parsers(sub: Any) -> None:
    p_share = sub.add_parser("share", help="read-only links to one site's dashboard, without a login")
    p_share_sub = p_share.add_subparsers(dest="share_command", required=True)
    for action, text in (("create", "make a link (its address is shown once)"), ("list", "the site's live links"),
                         ("revoke", "end a link and every session opened with it")):
        p = p_share_sub.add_parser(action, help=text)
        p.add_argument("--config", required=True)
        p.add_argument("--site", required=True)
        p.add_argument("--url", default="", help="the gateway's address (default: [gateway] public_url)")
        p.add_argument("--token", default="", help="a stats token of the site (default: env CONSENTGATE_STATS_TOKEN, "
                       "then one from the config)")
        if action == "create":
            p.add_argument("--password", action="store_true", help=f"ask for a password the link needs (or take it "
                           f"from env {SHARE_PASSWORD_ENV}); never on the command line")
            p.add_argument("--label", default="", help="a note, e.g. who the link is for")
        if action == "revoke":
            p.add_argument("link_id", help="the link's id (consentgate share list)")
    p_report = sub.add_parser("report", help="e-mail reports")
    p_report_sub = p_report.add_subparsers(dest="report_command", required=True)
    p_send = p_report_sub.add_parser("send", help="send a site's report of the last closed week or month now")
    p_send.add_argument("--config", required=True)
    p_send.add_argument("--site", required=True)
    p_send.add_argument("--to", required=True, action="append", help="an address (repeat for more)")
    p_send.add_argument("--period", choices=["week", "month"], default="week")
    p_send.add_argument("--url", default="", help="the gateway's address (default: [gateway] public_url)")
    p_send.add_argument("--token", default="", help="an admin token (default: env CONSENTGATE_ADMIN_TOKEN, then "
                        "the config's first admin_tokens entry)")


def _call(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        response = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    except httpx.HTTPError as exc:
        raise GatewayRequestFailed(f"cannot reach the gateway at {url.split('/api/')[0]} ({type(exc).__name__}): is it "
                                   "running? pass --url, or set public_url in the config") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": "bad_answer", "detail": response.text[:300]}
    if response.status_code >= 300:
        raise GatewayRequestFailed(f"HTTP {response.status_code}: {answer.get('error')}: {answer.get('detail')}")
    return answer


def _password() -> str:
    password = os.environ.get(SHARE_PASSWORD_ENV, "")
    if password:
        return password
    if sys.stdin.isatty():
        password = getpass.getpass("Password for the link: ")
        if password != getpass.getpass("Again: "):
            raise GatewayRequestFailed("the two passwords differ: nothing was made")
        return password
    return sys.stdin.readline().rstrip("\n")


def run_share(config: GatewayConfig, args: argparse.Namespace) -> int:
    base = f"{gateway_url(config, args.url)}/api/stats/{args.site}/shared-links"
    try:
        token = stats_token(config, args.site, args.token)
        if args.share_command == "create":
            body = {"label": args.label, **({"password": _password()} if args.password else {})}
            link = _call("POST", base, token, body)
            print(link["url"])
            print(f"link {link['link_id']}{' (password)' if link['password'] else ''}: the address is shown once; "
                  f"revoke it with: consentgate share revoke --config {args.config} --site {args.site} "
                  f"{link['link_id']}", file=sys.stderr)
        elif args.share_command == "list":
            for link in _call("GET", base, token)["links"]:
                print(json.dumps(link, ensure_ascii=False))
        else:
            _call("DELETE", f"{base}/{args.link_id}", token)
            print(f"revoked {args.link_id}", file=sys.stderr)
    except GatewayRequestFailed as exc:
        print(f"consentgate share {args.share_command}: {exc}", file=sys.stderr)
        return 1
    return 0


def run_report(config: GatewayConfig, args: argparse.Namespace) -> int:
    from gateway.admin_api import ADMIN_TOKEN_ENV

    token = args.token or os.environ.get(ADMIN_TOKEN_ENV, "") or (config.admin_tokens[0] if config.admin_tokens else "")
    if not token:
        print(f"consentgate report send: no admin token: set [gateway] admin_tokens, {ADMIN_TOKEN_ENV} or --token",
              file=sys.stderr)
        return 2
    try:
        sent = _call("POST", f"{gateway_url(config, args.url)}/api/admin/{args.site}/reports/send", token,
                     {"to": args.to, "period": args.period})
    except GatewayRequestFailed as exc:
        print(f"consentgate report send: {exc}", file=sys.stderr)
        return 1
    print(f"sent the {args.site} report of {sent['from']} to {sent['to']} to {', '.join(sent['recipients'])}",
          file=sys.stderr)
    return 0
