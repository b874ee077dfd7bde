"""Goals: what a visitor's hit must be to count as a conversion, their store, and their reports.

A goal is a page goal (a path pattern, `*` matching any run of characters: `/blog/*`) or an event goal
(a custom event's name, optionally with property values it must carry), with optional revenue read from
a numeric property of the event (in the site's `currency`). Goals come from the site's config (read-only)
and from the stats API / dashboard (the `goals` table: one row per change, the newest row of an id wins,
so a delete is a row too). Funnels (analytics/funnels.py) are made of the same kind of steps and are kept
in the same table.

Reports (docs/stats.md): a goal's conversions are the unique visitors with a hit that matches it,
`completions` the matching hits, the conversion rate is conversions / visitors of the range, revenue the
sum of the revenue property over the matching hits. With filters, only the hits of the visits that pass
them count (a visit passes as for every report: see analytics/stats.py), so "visits from Belgium that
converted" and "visits that saw /pricing and converted" both read as expected.
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from analytics import stats
from analytics.stats import prop_name_problem
from analytics.store import Store
from analytics.visits import HIT_ARRAYS, hit_key_sql

MAX_NAME = 80
MAX_PATTERN = 512
MAX_EVENT = 120
MAX_PROP_MATCHES = 5
MAX_PROP_KEY = 64
MAX_PROP_VALUE = 256
MAX_STORED_GOALS = 50  # per site, made through the API (config goals are not counted)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CURRENCY = re.compile(r"^[A-Z]{3}$")


class GoalError(ValueError):
    """A goal or funnel definition that cannot be used: every problem, each saying what to change."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Goal:
    """A page goal (`page` set) or an event goal (`event` set). `id` is stable: "config:NAME" for config goals."""

    name: str
    page: str = ""
    event: str = ""
    props: tuple[tuple[str, str], ...] = ()
    revenue_property: str = ""
    id: str = ""
    editable: bool = False  # made through the API (config goals are read-only)

    @property
    def kind(self) -> str:
        return "page" if self.page else "event"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "kind": self.kind, "editable": self.editable}
        if self.page:
            out["page"] = self.page
        else:
            out["event"] = self.event
            out["props"] = dict(self.props)
            if self.revenue_property:
                out["revenue_property"] = self.revenue_property
        return out

    def definition(self) -> dict[str, Any]:
        """What is stored (and what parse_goal reads back)."""
        out = self.to_json()
        for key in ("id", "kind", "editable"):
            out.pop(key)
        return out


def _text(value: Any, key: str, limit: int, problems: list[str], required: bool = False) -> str:
    if value is None:
        if required:
            problems.append(f"{key}: missing (required)")
        return ""
    if not isinstance(value, str):
        problems.append(f"{key}: expected a string, got {type(value).__name__}")
        return ""
    if required and not value.strip():
        problems.append(f"{key}: must not be empty")
    if len(value) > limit:
        problems.append(f"{key}: longer than {limit} characters")
    if _CONTROL.search(value):
        problems.append(f"{key}: holds control characters: remove them")
    return value


def parse_goal(raw: Any, path: str = "goal", name_required: bool = True) -> Goal:
    """A goal from its JSON / TOML form: {name, page} or {name, event, props?, revenue_property?}. Raises
    GoalError naming every problem (prefixed by `path`)."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise GoalError([f"{path}: expected an object like {{\"name\": \"Signup\", \"event\": \"signup\"}} or "
                         f"{{\"name\": \"Pricing\", \"page\": \"/pricing\"}}"])
    unknown = sorted(set(raw) - {"name", "page", "event", "props", "revenue_property"})
    if unknown:
        problems.append(f"{path}.{unknown[0]}: unknown key: use name, page, event, props, revenue_property")
    page = _text(raw.get("page"), f"{path}.page", MAX_PATTERN, problems)
    event = _text(raw.get("event"), f"{path}.event", MAX_EVENT, problems)
    name = _text(raw.get("name"), f"{path}.name", MAX_NAME, problems, required=name_required)
    name = name.strip() or page or event
    if bool(page) == bool(event):
        problems.append(f"{path}: give exactly one of page (a path pattern like /blog/*) or event (a custom event name)")
    if page and not page.startswith("/"):
        problems.append(f"{path}.page: a path pattern starts with '/', like /pricing or /blog/*")
    props_raw = raw.get("props", {})
    props: list[tuple[str, str]] = []
    if not isinstance(props_raw, dict):
        problems.append(f"{path}.props: expected an object of property name -> value, like {{\"plan\": \"pro\"}}")
    else:
        if props_raw and page:
            problems.append(f"{path}.props: only an event goal matches properties")
        if len(props_raw) > MAX_PROP_MATCHES:
            problems.append(f"{path}.props: at most {MAX_PROP_MATCHES} properties to match")
        for key, value in sorted(props_raw.items()):
            why = prop_name_problem(key)
            if why:
                problems.append(f"{path}.props: {why}")
            props.append((key, _text(value, f"{path}.props.{key[:MAX_PROP_KEY]}", MAX_PROP_VALUE, problems, True)))
    revenue = _text(raw.get("revenue_property"), f"{path}.revenue_property", MAX_PROP_KEY, problems)
    if revenue and page:
        problems.append(f"{path}.revenue_property: only an event goal carries revenue (a numeric property)")
    elif revenue and prop_name_problem(revenue):
        problems.append(f"{path}.revenue_property: {prop_name_problem(revenue)}")
    if problems:
        raise GoalError(problems)
    return Goal(name=name, page=page, event=event, props=tuple(props), revenue_property=revenue)


def config_definitions(raws: list[Any], path: str, problems: list[str], parse: Callable[[Any, str], Any]) -> tuple[Any, ...]:
    """Goals or funnels of a config (`[[sites.NAME.goals]]`, `[[sites.NAME.funnels]]`): read-only, ids
    "config:NAME", names unique; every problem collected, prefixed by its key path."""
    found: list[Any] = []
    for i, raw in enumerate(raws):
        try:
            item = parse(raw, f"{path}[{i}]")
        except GoalError as exc:
            problems.extend(exc.problems)
            continue
        found.append(replace(item, id=f"config:{item.name}"))
    names = [item.name for item in found]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{path}: the name {dup!r} is used twice")
    return tuple(found)


def config_goals(raws: list[Any], path: str, problems: list[str]) -> tuple[Goal, ...]:
    return config_definitions(raws, path, problems, parse_goal)


# ---- matching: SQL over one `events` row ------------------------------------------------------

def like_pattern(page: str) -> str:
    """A page pattern as a LIKE pattern: `*` matches anything; %, _ and \\ match themselves."""
    escaped = page.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


@dataclass
class Params:
    """Query parameters a piece of SQL needs, numbered so several goals share one query."""

    values: dict[str, Any] = field(default_factory=dict)

    def add(self, value: Any, kind: str = "String") -> str:
        name = f"g_{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{kind}}}"


def match_sql(goal: Goal, params: Params) -> str:
    """SQL, true for an `events` row that completes the goal."""
    if goal.page:
        # A pattern without `*`, or with one at the end only, is an equality or a prefix: on the visits table's
        # dictionary-encoded paths 3-10x cheaper than LIKE, which answers the other patterns.
        if "*" not in goal.page:
            return f"(type = 'pageview' AND path = {params.add(goal.page)})"
        if goal.page.find("*") == len(goal.page) - 1:
            return f"(type = 'pageview' AND startsWith(path, {params.add(goal.page[:-1])}))"
        return f"(type = 'pageview' AND path LIKE {params.add(like_pattern(goal.page))})"
    conds = ["type = 'event'", f"name = {params.add(goal.event)}"]
    conds += [f"props[{params.add(k)}] = {params.add(v)}" for k, v in goal.props]
    return "(" + " AND ".join(conds) + ")"


def key_sql(goal: Goal, params: Params) -> str | None:
    """SQL of the `hit_key` a hit completing the goal carries (analytics/visits.py), when the goal is an equality:
    a page goal without `*`, an event goal without properties. None otherwise (compare the hit's strings)."""
    if goal.page:
        return None if "*" in goal.page else hit_key_sql("pageview", params.add(goal.page))
    return None if goal.props else hit_key_sql("event", params.add(goal.event))


def any_completed_sql(goals: list[Goal], params: Params) -> str:
    """SQL, over a `visits` row, true when one of its hits completes one of the goals."""
    keys = [key_sql(g, params) for g in goals]
    if all(keys):
        return f"hasAny(hit_key, [{', '.join(keys)}])"  # type: ignore[arg-type]
    return stats.over_hits("arrayExists", "(" + " OR ".join(match_sql(g, params) for g in goals) + ")")


def revenue_sql(goal: Goal, params: Params) -> str:
    """SQL of the revenue a matching row carries (0 without a revenue property or a number in it)."""
    if not goal.revenue_property:
        return "toDecimal64(0, 2)"
    return f"toDecimal64OrZero(props[{params.add(goal.revenue_property)}], 2)"


# ---- the store: goals and funnels made through the API ----------------------------------------

def new_id() -> str:
    return secrets.token_hex(6)


def stored_definitions(store: Store, site: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, definition) of the site's live stored goals or funnels (`kind`), oldest first."""
    rows = store.query("""
        SELECT id, argMax(definition, timestamp) AS d, argMax(deleted, timestamp) AS gone, min(timestamp) AS made
        FROM {db}.goals WHERE site = {site:String} AND kind = {kind:String}
        GROUP BY id HAVING gone = 0 ORDER BY made, id""", {"site": site, "kind": kind})
    return [(r[0], json.loads(r[1])) for r in rows]


def save_definition(store: Store, site: str, kind: str, id: str, definition: dict[str, Any] | None) -> None:
    """Stores a definition under `id` (None: deletes it)."""
    now = datetime.now(timezone.utc)
    store.client.insert(f"{store.db}.goals",
                        [[site, kind, id, json.dumps(definition or {}, sort_keys=True), int(definition is None), now]],
                        column_names=["site", "kind", "id", "definition", "deleted", "timestamp"])


def site_goals(store: Store, site: str, configured: tuple[Goal, ...]) -> list[Goal]:
    """The config goals, then the stored ones."""
    stored = []
    for id, definition in stored_definitions(store, site, "goal"):
        goal = parse_goal(definition)
        stored.append(Goal(**{**goal.__dict__, "id": id, "editable": True}))
    return [*configured, *stored]


# ---- reports -----------------------------------------------------------------------------------

def _hits(q: stats.StatsQuery, columns: dict[str, str], any_goal: str, how: stats.Plan, visit_value: str = "",
          completed: str = "") -> str:
    """SQL of the range's hits that complete a goal (`any_goal`) and count (with filters: hits of the visits
    that pass them), as visitor_hash and `columns` (alias -> SQL over an `events` row, or `visit_value`, a column
    of the visit holding the hit). Large ranges read the hits from the visits table (see stats.table_hits)."""
    if how.coverage is not None and (q.filters or visit_value):
        picked = ", ".join(f"{sql} AS {alias}" for alias, sql in columns.items())
        reads = " ".join([*columns.values(), any_goal])
        # only the visits with a completing hit are unrolled into hits
        visits = stats.table_hits(q, how.coverage, reads, visit_value, completed or stats.over_hits("arrayExists", any_goal))
        return f"SELECT visitor_hash, {picked} FROM ({visits}) WHERE {any_goal}"
    if not q.filters:  # one scan of the matching hits: exact, and as fast as the tables
        picked = ", ".join(f"{sql} AS {alias}" for alias, sql in columns.items())
        return f"SELECT visitor_hash, {picked} FROM {{db}}.events WHERE {stats.RANGE} AND {any_goal}"
    # only the visitors with such a hit need sessionizing
    converted = f"visitor_hash IN (SELECT visitor_hash FROM {{db}}.events WHERE {stats.RANGE} AND {any_goal})"
    return (f"SELECT visitor_hash, {', '.join(columns)} "
            f"FROM ({stats.visit_hits_sql(q, {**columns, 'goal_hit': any_goal}, converted)}) WHERE goal_hit")


def report(store: Store, q: stats.StatsQuery, goals: list[Goal], currency: str) -> dict[str, Any]:
    """Conversions, completions, conversion rate and revenue of every goal over the range, with the
    range's visitors (those of the visits that pass the filters)."""
    how = stats.plan(store, q)
    if not goals or how.coverage is None:
        visitors = stats.summary_current(store, q, how)["visitors"]
    if not goals:
        return {"visitors": visitors, "currency": currency, "exact": how.exact, "results": []}
    params = Params()
    matches = [match_sql(g, params) for g in goals]
    revenues = [revenue_sql(g, params) for g in goals]
    if how.coverage is not None:  # per visit of the visits table: its completions and revenue of each goal
        keys = [key_sql(g, params) for g in goals]
        per_visit = ", ".join(
            (f"arrayCount(k -> k = {key}, hit_key) AS k{i}, " if key else f"{stats.over_hits('arrayCount', m)} AS k{i}, ")
            + (f"{stats.over_hits('arraySum', f'if({m}, {r}, toDecimal64(0, 2))')} AS w{i}" if g.revenue_property
               else f"toDecimal64(0, 2) AS w{i}")
            for i, (g, m, r, key) in enumerate(zip(goals, matches, revenues, keys)))
        unkeyed = [m for g, m, key in zip(goals, matches, keys) if not key or g.revenue_property]  # read as strings
        arrays = ("hit_key", *(HIT_ARRAYS[c] for c in stats.hit_columns_in(*unkeyed, *revenues)))
        # the range's visitors from the same scan, counted as the summary counts them (one scan, not two)
        picks = f"{stats.SKETCH}(visitor_hash) AS visitors, " + ", ".join(
            f"{how.uniq_if}(visitor_hash, k{i} > 0) AS c{i}, sum(k{i}) AS n{i}, sum(w{i}) AS v{i}" for i in range(len(goals)))
        sql = f"SELECT {picks} FROM (SELECT visitor_hash, {per_visit} FROM ({stats.visit_rows(q, how.coverage, '', arrays)}))"
    else:
        columns = {name: sql for i, (m, r) in enumerate(zip(matches, revenues))
                   for name, sql in ((f"m{i}", m), (f"r{i}", r))}
        picks = ", ".join(f"uniqExactIf(visitor_hash, m{i}) AS c{i}, countIf(m{i}) AS n{i}, sumIf(r{i}, m{i}) AS v{i}"
                          for i in range(len(goals)))
        sql = f"SELECT {picks} FROM ({_hits(q, columns, '(' + ' OR '.join(matches) + ')', how)})"
    row = store.query_dicts(sql, {**stats.params_of(q, how), **params.values})[0]
    if how.coverage is not None:
        visitors = int(row["visitors"])
    results = []
    for i, goal in enumerate(goals):
        conversions = int(row[f"c{i}"])
        results.append({**goal.to_json(), "conversions": conversions, "completions": int(row[f"n{i}"]),
                        "conversion_rate": round(100 * conversions / visitors, 2) if visitors else 0.0,
                        "revenue": float(row[f"v{i}"]) if goal.revenue_property else None})
    return {"visitors": visitors, "currency": currency, "exact": how.exact, "results": results}


def timeseries(store: Store, q: stats.StatsQuery, goal: Goal, interval: str, how: stats.Plan | None = None
               ) -> list[dict[str, Any]]:
    """Conversions (unique visitors), completions and revenue of one goal per bucket, zero-filled."""
    params = Params()
    match, revenue = match_sql(goal, params), revenue_sql(goal, params)
    bucket = stats.INTERVALS[interval]
    how = how or stats.plan(store, q)
    sql = f"""SELECT bucket, uniqExact(visitor_hash) AS conversions, count() AS completions, sum(r) AS revenue
              FROM ({_hits(q, {"bucket": bucket, "r": revenue}, match, how, completed=any_completed_sql([goal], params))})
              GROUP BY bucket"""
    found = {r["bucket"]: r for r in store.query_dicts(sql, {**stats.params_of(q, how), **params.values})}
    out = []
    for label in stats.bucket_labels(q, interval):
        r = found.get(label, {})
        out.append({"bucket": label, "conversions": int(r.get("conversions", 0)), "completions": int(r.get("completions", 0)),
                    "revenue": float(r.get("revenue", 0)) if goal.revenue_property else None})
    return out


# Breakdowns of one goal's conversions: the hit's page or country, or the source of the visit it is in.
BREAKDOWNS = ("source", "page", "country")


def breakdown(store: Store, q: stats.StatsQuery, goal: Goal, dimension: str, limit: int,
              how: stats.Plan | None = None) -> list[dict[str, Any]]:
    """Top values of `dimension` by conversions: value, conversions, completions, revenue."""
    params = Params()
    match, revenue = match_sql(goal, params), revenue_sql(goal, params)
    how = how or stats.plan(store, q)
    if how.coverage is not None:
        value = {"source": "source", "page": "path", "country": "country"}[dimension]
        source = _hits(q, {"value": value, "r": revenue}, match, how, "source" if dimension == "source" else "",
                       any_completed_sql([goal], params))
    elif dimension == "source":  # the source of the visit holding the hit: sessionize (only converting visitors)
        converted = f"visitor_hash IN (SELECT visitor_hash FROM {{db}}.events WHERE {stats.RANGE} AND {match})"
        source = (f"SELECT visitor_hash, visit_source AS value, r "
                  f"FROM ({stats.visit_hits_sql(q, {'r': revenue, 'goal_hit': match}, converted, source=True)}) WHERE goal_hit")
    else:
        column = {"page": "path", "country": "country"}[dimension]
        source = _hits(q, {"value": column, "r": revenue}, match, how)
    sql = f"""SELECT value, uniqExact(visitor_hash) AS conversions, count() AS completions, sum(r) AS revenue
              FROM ({source}) GROUP BY value
              ORDER BY conversions DESC, completions DESC, value LIMIT {{limit:UInt32}}"""
    rows = store.query_dicts(sql, {**stats.params_of(q, how), **params.values, "limit": limit})
    return [{"value": r["value"], "conversions": int(r["conversions"]), "completions": int(r["completions"]),
             "revenue": float(r["revenue"]) if goal.revenue_property else None} for r in rows]
