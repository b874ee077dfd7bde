"""One report: figures from the store, rendered, sent by SMTP."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from analytics.report import ReportFigures, report_figures
from analytics.store import Store
from analytics.visits import VisitBuilder
from gateway.config import GatewayConfig, SiteConfig
from gateway.mailer import MailError, send_message
from gateway.reports.message import report_message


def send_report(config: GatewayConfig, store: Store, site: SiteConfig, period: str, start: date, end: date,
                to: Sequence[str]) -> ReportFigures:
    """Computes and sends one report; raises MailError (also when [reports] is missing)."""
    if config.reports is None:
        raise MailError("this gateway sends no e-mail: add a [reports] table with smtp_host and from to its config")
    VisitBuilder.ensure(store)  # as the stats API does: large ranges read the per-visit table
    figures = report_figures(store, site.name, site.timezone, period, start, end, site.goals)
    send_message(config.reports, report_message(figures, config.reports.sender, to))
    return figures
