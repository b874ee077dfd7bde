"""A report as an e-mail: a plain-text part and an HTML alternative with the same figures.

Every value that came from visitors (paths, sources) is escaped in the HTML. The report holds only
aggregates: no visitor id, no address, nothing about one person.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from analytics.report import Change, ReportFigures

TITLES = {"week": "weekly", "month": "monthly"}
FOOTER = "Only visitors who consented to analytics are counted. Visits end after 30 minutes without a hit."


def _day(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _span(start: date, end: date) -> str:
    return _day(start) if start == end else f"{_day(start)} - {_day(end)}"


def _number(value: float, unit: str = "") -> str:
    text = f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"
    return text + unit


def _change(change: Change, unit: str = "") -> str:
    if unit == " %":  # a rate: its change is in points, not percent of itself
        points = round(change.now - change.before, 1)
        return f"{points:+.1f} points" if change.before or change.now else "no change"
    return "new" if change.percent is None and change.now else \
        ("no change" if change.percent is None else f"{change.percent:+.1f} %")


def _metrics(f: ReportFigures) -> list[tuple[str, Change, str]]:
    return [("Visitors", f.visitors, ""), ("Pageviews", f.pageviews, ""), ("Consent rate (analytics)", f.consent_rate, " %"),
            ("Banner decisions", f.decisions, "")]


def _tables(f: ReportFigures) -> list[tuple[str, Sequence[dict]]]:
    out: list[tuple[str, Sequence[dict]]] = [("Top pages", f.top_pages), ("Top sources", f.top_sources)]
    if f.goals is not None:
        out.append(("Goals", [{"value": g["name"], "visitors": g["conversions"],
                               "visitors_before": g.get("conversions_before", 0)} for g in f.goals]))
    return out


def subject(f: ReportFigures) -> str:
    return f"{f.site}: {TITLES[f.period]} report, {_span(f.start, f.end)}"


def plain_text(f: ReportFigures) -> str:
    lines = [f"consentgate - {f.site} - {TITLES[f.period]} report",
             f"{_span(f.start, f.end)}, compared with {_span(f.previous_start, f.previous_end)}", ""]
    for name, change, unit in _metrics(f):
        lines.append(f"{name:<26}{_number(change.now, unit):>12}   (before: {_number(change.before, unit)}, "
                     f"{_change(change, unit)})")
    for title, rows in _tables(f):
        lines += ["", f"{title} (visitors; before)" if title != "Goals" else "Goals (conversions; before)"]
        if not rows:
            lines.append("  none in this period")
        for row in rows:
            lines.append(f"  {str(row['value'])[:60] or '(none)':<62}{row['visitors']:>8,}   ({row['visitors_before']:,})")
    if not f.exact:
        lines += ["", "Visitor counts of this large range are within about 2 % (see docs/stats.md)."]
    return "\n".join(lines + ["", FOOTER, ""])


CELL = "padding:6px 10px;border-bottom:1px solid #e5e7eb;"


def html_part(f: ReportFigures) -> str:
    e = html.escape
    kpis = "".join(
        f'<td style="padding:12px 16px;border:1px solid #e5e7eb;border-radius:8px;">'
        f'<div style="color:#6b7280;font-size:13px;">{e(name)}</div>'
        f'<div style="font-size:24px;font-weight:600;">{e(_number(change.now, unit))}</div>'
        f'<div style="color:#6b7280;font-size:12px;">before: {e(_number(change.before, unit))} '
        f'({e(_change(change, unit))})</div></td>'
        for name, change, unit in _metrics(f))
    tables = ""
    for title, rows in _tables(f):
        head = "Conversions" if title == "Goals" else "Visitors"
        body = "".join(f'<tr><td style="{CELL}">{e(str(r["value"])) or "(none)"}</td>'
                       f'<td style="{CELL}text-align:right;">{r["visitors"]:,}</td>'
                       f'<td style="{CELL}text-align:right;color:#6b7280;">{r["visitors_before"]:,}</td></tr>'
                       for r in rows) or f'<tr><td style="{CELL}" colspan="3">none in this period</td></tr>'
        tables += (f'<h2 style="font-size:16px;margin:24px 0 8px;">{e(title)}</h2>'
                   f'<table style="border-collapse:collapse;width:100%;font-size:14px;">'
                   f'<tr><th style="{CELL}text-align:left;"></th><th style="{CELL}text-align:right;">{head}</th>'
                   f'<th style="{CELL}text-align:right;color:#6b7280;">Before</th></tr>{body}</table>')
    approx = "" if f.exact else '<p style="color:#6b7280;font-size:12px;">Visitor counts of this large range are within about 2 %.</p>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(subject(f))}</title></head>'
            f'<body style="font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111827;margin:0;padding:24px;">'
            f'<div style="max-width:680px;margin:0 auto;">'
            f'<h1 style="font-size:20px;margin:0 0 4px;">{e(f.site)} &middot; {e(TITLES[f.period])} report</h1>'
            f'<p style="color:#6b7280;margin:0 0 16px;">{e(_span(f.start, f.end))}, compared with '
            f'{e(_span(f.previous_start, f.previous_end))}</p>'
            f'<table style="border-collapse:separate;border-spacing:8px;margin:0 -8px;"><tr>{kpis}</tr></table>'
            f'{tables}{approx}<p style="color:#6b7280;font-size:12px;margin-top:24px;">{e(FOOTER)}</p>'
            f'</div></body></html>')


def report_message(f: ReportFigures, sender: str, to: Sequence[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(f)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1])
    message.set_content(plain_text(f))
    message.add_alternative(html_part(f), subtype="html")
    return message
