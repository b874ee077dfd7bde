"""The figures of an e-mail report: one site, one closed period (a week Monday-Sunday or a calendar
month, in the site's timezone), each compared with the period before it. Computed only with
analytics/stats.py's own functions, so a report says what the dashboard says for the same range.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from analytics import goals as site_goals
from analytics import stats
from analytics.store import Store

PERIODS = ("week", "month")
TOP = 5  # rows of top pages and top sources


def last_closed_period(period: str, today: date) -> tuple[date, date]:
    """The last whole week (Monday to Sunday) or calendar month before `today`."""
    if period == "week":
        start = today - timedelta(days=today.weekday() + 7)
        return start, start + timedelta(days=6)
    if period == "month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")


def period_before(period: str, start: date) -> tuple[date, date]:
    """The period of the same kind just before the one starting at `start` (a month: the calendar month)."""
    return last_closed_period(period, start)


@dataclass(frozen=True)
class Change:
    """A figure now and in the period before, with the change in percent (None when before was 0)."""

    now: float
    before: float

    @property
    def percent(self) -> float | None:
        return round(100 * (self.now - self.before) / self.before, 1) if self.before else None


@dataclass(frozen=True)
class ReportFigures:
    site: str
    period: str
    start: date
    end: date
    previous_start: date
    previous_end: date
    visitors: Change
    pageviews: Change
    consent_rate: Change  # percent of the decisions that granted analytics
    decisions: Change
    top_pages: list[dict[str, Any]] = field(default_factory=list)  # value, visitors, pageviews, visitors_before
    top_sources: list[dict[str, Any]] = field(default_factory=list)  # value, visitors, visits, visitors_before
    goals: list[dict[str, Any]] | None = None  # name, conversions, conversions_before, ...; None: no goals
    exact: bool = True


def _top(store: Store, q: stats.StatsQuery, before: stats.StatsQuery, dimension: str) -> list[dict[str, Any]]:
    rows = stats.breakdown(store, q, dimension, TOP)
    # The same values' figures in the period before: a generous top list, so a value that was smaller
    # before still finds its count (0 when it had none).
    earlier = {r["value"]: r["visitors"] for r in stats.breakdown(store, before, dimension, 1000)}
    return [{**r, "visitors_before": earlier.get(r["value"], 0)} for r in rows]


def goal_figures(store: Store, q: stats.StatsQuery, before: stats.StatsQuery,
                 configured: tuple[site_goals.Goal, ...]) -> list[dict[str, Any]] | None:
    """Each goal's conversions (visitors who completed it), now and before; None when the site has no goals."""
    found = site_goals.site_goals(store, q.site, configured)
    if not found:
        return None
    now = site_goals.report(store, q, found, "")["results"]
    earlier = site_goals.report(store, before, found, "")["results"]
    return [{"name": n["name"], "conversions": n["conversions"], "conversions_before": e["conversions"],
             "conversion_rate": n["conversion_rate"], "revenue": n["revenue"]} for n, e in zip(now, earlier)]


def report_figures(store: Store, site: str, tz: str, period: str, start: date, end: date,
                   configured_goals: tuple[site_goals.Goal, ...] = ()) -> ReportFigures:
    previous_start, previous_end = period_before(period, start)
    q = stats.StatsQuery(site, start, end, tz)
    before = stats.StatsQuery(site, previous_start, previous_end, tz)
    now, earlier = stats.summary(store, q), stats.summary(store, before)
    consent_now, consent_before = stats.consent(store, q), stats.consent(store, before)
    return ReportFigures(
        site=site, period=period, start=start, end=end, previous_start=previous_start, previous_end=previous_end,
        visitors=Change(now["current"]["visitors"], earlier["current"]["visitors"]),
        pageviews=Change(now["current"]["pageviews"], earlier["current"]["pageviews"]),
        consent_rate=Change(consent_now["opt_in_rate"]["analytics"], consent_before["opt_in_rate"]["analytics"]),
        decisions=Change(consent_now["decisions"], consent_before["decisions"]),
        top_pages=_top(store, q, before, "page"),
        top_sources=_top(store, q, before, "source"),
        goals=goal_figures(store, q, before, configured_goals),
        exact=bool(now["exact"] and earlier["exact"]),
    )
