"""The HTML report: one self-contained page for the site owner, what to fix first, then a table per phase.

Everything in it comes from the scanned site (cookie names, storage keys, URLs), so every value is
escaped, URLs are shown as text (never links), and a CSP forbids scripts and loads.
"""
from __future__ import annotations

from html import escape

from gateway.scan.model import PHASE_TITLES, Finding, Phase, Report

STYLE = """
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 21px; margin: 32px 0 8px; } h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #57606a; margin: 0 0 16px; }
.verdict { display: inline-block; padding: 6px 14px; border-radius: 6px; font-weight: 600; font-size: 17px; }
.clean { background: #dafbe1; color: #116329; } .findings { background: #ffebe9; color: #a40e26; } .error { background: #fff8c5; color: #7d4e00; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 4px 0 12px; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #eaeef2; font-weight: 600; }
code, .url { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; }
.card { background: #fff; border: 1px solid #d0d7de; border-left: 5px solid #cf222e; border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
.card p { margin: 4px 0; } .fix { color: #0a3069; }
.tag { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; background: #eaeef2; margin-right: 6px; }
tr.flag td { background: #fff5f5; } .muted { color: #57606a; } .note { background: #fff8c5; padding: 6px 10px; border-radius: 6px; }
"""

LIMITS = ("A scan sees what a first-time visitor from this machine sees on the pages it reached: not cookies set "
          "only after logging in, in a basket or checkout, only for visitors from other countries or on other "
          "devices, only after a delay longer than the wait, only on pages no link leads to, or only in request "
          "bodies it does not read. No findings is not a certificate.")


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(headers: list[str], rows: list[tuple[list[str], bool]]) -> str:
    """Rows of already-escaped cells; flagged rows (findings) are tinted."""
    if not rows:
        return '<p class="muted">None.</p>'
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(f'<tr{" class=flag" if flag else ""}>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                   for cells, flag in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _set_by(by: dict | None) -> str:
    if not by:
        return ""
    label = {"http_response": "response", "script": "script", "inline_script": "inline script"}.get(by["kind"], "unknown")
    return f'{label}<br><span class="url">{_e(by["url"])}</span>' if by.get("url") else label


def _category(category: str | None, source: str) -> str:
    if category is None:
        return '<span class="muted">unknown</span>'
    return f"{_e(category)} <span class=muted>({'config' if source == 'config' else 'guess'})</span>"


def _findings(found: list[Finding]) -> str:
    """One card per cookie, key or host, naming every phase it was found in (the JSON lists each phase)."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for f in found:
        groups.setdefault((f["kind"], f["name"], f["where"]), []).append(f)
    cards = []
    for group in groups.values():
        first, last = group[0], group[-1]  # the last phase's advice is the fullest (after Reject: also remove it)
        phases = "".join(f'<span class="tag">{_e(PHASE_TITLES[f["phase"]])}</span>' for f in group)
        cards.append(
            f'<div class="card"><p><span class="tag">{_e(first["kind"])}</span><code>{_e(first["name"])}</code> '
            f'<span class="muted">{_e(first["where"])}</span></p><p>{phases}</p>'
            f'<p>{_e(first["problem"])}</p><p class="fix"><strong>What to do:</strong> {_e(last["advice"])}</p>'
            f'<p class="muted">First seen on <span class="url">{_e(first["first_page"])}</span></p></div>')
    return "".join(cards)


def _phase(phase: Phase, flagged: set[str]) -> str:
    name = phase["name"]
    out = [f'<h2 id="{_e(name)}">{_e(phase["title"])}</h2>']
    if phase["status"] != "done":
        return "".join(out) + f'<p class="note">{_e(phase["status"])}: {_e(phase["note"])}</p>'
    if phase["decision"]:
        d = phase["decision"]
        out.append(f'<p class="muted">Clicked <strong>{_e(d["clicked"])}</strong> in the {_e(d["banner"])} banner on '
                   f'<span class="url">{_e(d["page"])}</span>, then visited the pages again.</p>')
    out.append("<h3>Pages</h3>")
    out.append(_table(["page", "status", "banner shown", "new cookies and storage", "other sites contacted"], [
        ([f'<span class="url">{_e(p["url"])}</span>', _e(p["error"] or p["status"]), _e(p["banner"] or "no"),
          "<br>".join(f"<code>{_e(x)}</code>" for x in p["new_cookies"] + p["new_storage"]),
          "<br>".join(_e(h) for h in p["third_party_hosts"])], False) for p in phase["pages"]]))
    out.append("<h3>Cookies</h3>")
    out.append(_table(["name", "domain", "party", "lifetime", "category", "set by", "first page"], [
        ([f"<code>{_e(c['name'])}</code>", _e(c["domain"]), _e(c["party"]),
          "session" if c["lifetime_days"] is None else f"{c['lifetime_days']:g} days",
          _category(c["category"], c["category_source"]), _set_by(c["set_by"]),
          f'<span class="url">{_e(c["first_page"])}</span>'],
         f"{name}/cookie/{c['name']}@{c['domain']}" in flagged) for c in phase["cookies"]]))
    out.append("<h3>localStorage and sessionStorage</h3>")
    out.append(_table(["key", "area", "origin", "category", "set by", "first page"], [
        ([f"<code>{_e(s['key'])}</code>", _e(s["area"]), _e(s["origin"]), _category(s["category"], s["category_source"]),
          _set_by(s["set_by"]), f'<span class="url">{_e(s["first_page"])}</span>'],
         f"{name}/storage/{s['area']}:{s['key']}@{s['origin']}" in flagged) for s in phase["storage"]]))
    out.append("<h3>Requests to other sites</h3>")
    out.append(_table(["host", "what", "requests", "identifier in the URL", "example"], [
        ([_e(r["host"]), _e("consent banner" if r["role"] == "consent_banner" else ", ".join(r["types"])), _e(r["count"]),
          _e(", ".join(r["identifier_params"]) or "no"), f'<span class="url">{_e(r["example"])}</span>'],
         f"{name}/request/{r['host']}" in flagged) for r in phase["requests"]]))
    return "".join(out)


def render_html(report: Report) -> str:
    verdict = report["verdict"]
    headline = {"clean": "No findings", "error": "Scan failed"}.get(
        verdict["status"], f"{verdict['findings']} finding{'s' if verdict['findings'] != 1 else ''}")
    flagged = {f["id"] for f in report["findings"]}
    summary = _table(["phase", "status", "pages", "cookies", "storage keys", "other sites", "findings"], [
        ([f'<a href="#{_e(p["name"])}">{_e(p["title"])}</a>', _e(p["status"]), _e(len(p["pages"])), _e(len(p["cookies"])),
          _e(len(p["storage"])), _e(len(p["requests"])), _e(sum(f["phase"] == p["name"] for f in report["findings"]))],
         False) for p in report["phases"]])
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Cookie scan of {_e(report['url'])}</title><style>{STYLE}</style></head><body><main>",
        f'<h1>Cookie scan of <span class="url">{_e(report["url"])}</span></h1>',
        f'<p class="meta">{_e(report["started_at"])} &middot; {_e(report["browser"] or "Chromium")} &middot; '
        f'site {_e(report["site"] or "(no config)")} &middot; banner on the first visit: {_e(report["banner"] or "none")}</p>',
        f'<p><span class="verdict {_e(verdict["status"])}">{_e(headline)}</span> '
        f'<span class="muted">exit status {_e(verdict["exit_code"])}</span></p>',
        summary,
    ]
    if report["errors"]:
        parts.append("<h2>Errors</h2><ul>" + "".join(
            f"<li>{_e(err['phase'] or 'scan')}: {_e(err['message'])}</li>" for err in report["errors"]) + "</ul>")
    if report["findings"]:
        parts.append("<h2>What to fix</h2><p>Each of these was stored or sent before the visitor consented, or after "
                     "they refused, and the site's config does not declare it strictly necessary.</p>")
        parts.append(_findings(report["findings"]))
    parts += [_phase(p, flagged) for p in report["phases"]]
    parts.append(f'<h2>What a scan cannot see</h2><p>{_e(LIMITS)}</p></main></body></html>\n')
    return "".join(parts)
