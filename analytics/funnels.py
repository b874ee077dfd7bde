"""Funnels: 2 to 8 ordered steps (page or event goals, analytics/goals.py) within one visit.

A visit reaches step k when it holds hits h1, ..., hk at strictly increasing times, hi completing step i
(other hits may come between them; one hit completes one step). ClickHouse answers it: the range's hits
are cut into visits per visitor (as analytics/stats.py does), and each visit that passes the filters is
one windowFunnel in `strict_increase` mode over its hits; large ranges read each visit's hit arrays from the
visits table instead (the same count, with a visit crossing the range's ends counted whole: `exact` false). Per step: the visitors with a visit that reached it, the visits that
did, and the drop-off from the step before. Funnels come from the config (`[[sites.NAME.funnels]]`) and
from the API, stored like goals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analytics import stats
from analytics.goals import (MAX_NAME, Goal, GoalError, Params, config_definitions, key_sql, match_sql, parse_goal,
                             stored_definitions)
from analytics.store import Store
from analytics.visits import HIT_ARRAYS

MIN_STEPS, MAX_STEPS = 2, 8
MAX_STORED_FUNNELS = 20  # per site, made through the API
# windowFunnel's window, in ms: longer than any range, so the visit alone bounds a funnel.
WINDOW_MS = 10 ** 12


@dataclass(frozen=True)
class Funnel:
    name: str
    steps: tuple[Goal, ...]
    id: str = ""
    editable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "editable": self.editable, "steps": [self._step(s) for s in self.steps]}

    @staticmethod
    def _step(goal: Goal) -> dict[str, Any]:
        out = {k: v for k, v in goal.to_json().items() if k not in ("id", "editable", "revenue_property")}
        if goal.page:
            return out
        return out if out.get("props") else {k: v for k, v in out.items() if k != "props"}

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [{k: v for k, v in self._step(s).items() if k != "kind"} for s in self.steps]}


def parse_funnel(raw: Any, path: str = "funnel") -> Funnel:
    """A funnel from its JSON / TOML form: {name, steps: [{page} or {event, props?} (each with an optional
    name), ...]}. Raises GoalError naming every problem."""
    if not isinstance(raw, dict):
        raise GoalError([f"{path}: expected an object like {{\"name\": \"Signup\", \"steps\": [{{\"page\": \"/\"}}, "
                         f"{{\"event\": \"signup\"}}]}}"])
    problems: list[str] = []
    unknown = sorted(set(raw) - {"name", "steps"})
    if unknown:
        problems.append(f"{path}.{unknown[0]}: unknown key: use name and steps")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        problems.append(f"{path}.name: expected a name of 1 to {MAX_NAME} characters, without control characters")
        name = ""
    raw_steps = raw.get("steps")
    steps: list[Goal] = []
    if not isinstance(raw_steps, list) or not MIN_STEPS <= len(raw_steps) <= MAX_STEPS:
        problems.append(f"{path}.steps: expected a list of {MIN_STEPS} to {MAX_STEPS} steps, each {{\"page\": \"/pattern*\"}} "
                        f"or {{\"event\": \"name\"}}")
    else:
        for i, step in enumerate(raw_steps):
            if isinstance(step, dict) and "revenue_property" in step:
                problems.append(f"{path}.steps[{i}].revenue_property: a funnel step has no revenue: make it a goal")
                continue
            try:
                steps.append(parse_goal(step, f"{path}.steps[{i}]", name_required=False))
            except GoalError as exc:
                problems.extend(exc.problems)
    if problems:
        raise GoalError(problems)
    return Funnel(name=name.strip(), steps=tuple(steps))


def config_funnels(raws: list[Any], path: str, problems: list[str]) -> tuple[Funnel, ...]:
    return config_definitions(raws, path, problems, parse_funnel)


def site_funnels(store: Store, site: str, configured: tuple[Funnel, ...]) -> list[Funnel]:
    """The config funnels, then the stored ones."""
    stored = []
    for id, definition in stored_definitions(store, site, "funnel"):
        funnel = parse_funnel(definition)
        stored.append(Funnel(funnel.name, funnel.steps, id=id, editable=True))
    return [*configured, *stored]


def report(store: Store, q: stats.StatsQuery, funnel: Funnel) -> dict[str, Any]:
    """Per step: visitors and visits that reached it, drop-off from the step before, and the share of the
    first step's visitors still there (percent)."""
    params = Params()
    conds = [match_sql(step, params) for step in funnel.steps]
    how = stats.plan(store, q)
    if how.coverage is not None:
        row = store.query_dicts(_from_visits(q, how, conds, [key_sql(step, params) for step in funnel.steps]), {**stats.params_of(q, how), **params.values})[0]
    else:
        row = store.query_dicts(_from_hits(q, conds), {**q.params(), **params.values})[0]
    first = int(row["u1"])
    out, before = [], None
    for k, step in enumerate(funnel.steps, start=1):
        visitors = int(row[f"u{k}"])
        out.append({**Funnel._step(step), "visitors": visitors, "visits": int(row[f"n{k}"]),
                    "dropoff": 0 if before is None else before - visitors,
                    "conversion_rate": round(100 * visitors / first, 2) if first else 0.0})
        before = visitors
    return {**funnel.to_json(), "results": out, "exact": how.exact}


def _levels(n: int) -> str:
    """SQL of u{k} (visitors) and n{k} (visits) with a visit that reached step k, over rows with a `level`. Exact
    distinct counts even from the tables: a sketch could show more visitors than visits, or a negative drop-off."""
    return ", ".join(f"uniqExactIf(visitor_hash, level >= {k}) AS u{k}, countIf(level >= {k}) AS n{k}"
                     for k in range(1, n + 1))


def _from_visits(q: stats.StatsQuery, how: stats.Plan, conds: list[str], keys: list[str | None]) -> str:
    """SQL of the funnel's counts from the visits table (large ranges). Per passing visit, a mask of the steps each
    of its hits completes; then step k is taken at the first hit (in time order) that completes it later than
    step k - 1 was taken: the earliest such hit serves best, so the number of steps taken is the deepest one
    reached, as windowFunnel's `strict_increase` counts it. One vectorized array pass per step (arrayFold, one
    pass per hit, is 3x slower). When every step is an equality (`keys`: their hit keys), the steps are found in
    the visit's hit keys: numbers, 3x faster than the strings' masks."""
    if all(keys):
        taken = [f"indexOf(hit_key, {keys[0]}) AS i1"]
        for k in range(2, len(keys) + 1):
            taken.append(f"if(i{k - 1} = 0, 0, arrayFirstIndex((key, t) -> key = {keys[k - 1]} AND t > hit_ms[i{k - 1}], "
                         f"hit_key, hit_ms)) AS i{k}")
        level = " + ".join(f"(i{k} > 0)" for k in range(1, len(keys) + 1))
        return f"""SELECT {_levels(len(keys))} FROM (
                       SELECT visitor_hash, {", ".join(taken)}, {level} AS level
                       FROM ({stats.visit_rows(q, how.coverage, "", ("hit_ms", "hit_key"), f"has(hit_key, {keys[0]})")}))"""
    masks = stats.over_hits("arrayMap", " + ".join(f"toUInt16({c}) * {1 << i}" for i, c in enumerate(conds)))
    taken = ["arrayFirstIndex(m -> bitTest(m, 0), masks) AS i1"]
    for k in range(2, len(conds) + 1):
        taken.append(f"if(i{k - 1} = 0, 0, arrayFirstIndex((m, t) -> bitTest(m, {k - 1}) AND t > hit_ms[i{k - 1}], "
                     f"masks, hit_ms)) AS i{k}")
    level = " + ".join(f"(i{k} > 0)" for k in range(1, len(conds) + 1))
    arrays = ("hit_ms", *(HIT_ARRAYS[c] for c in stats.hit_columns_in(*conds)))
    # Only visits holding a hit of the first step enter: the masks are made for those alone.
    return f"""SELECT {_levels(len(conds))} FROM (
                   SELECT visitor_hash, {masks} AS masks, {", ".join(taken)}, {level} AS level
                   FROM ({stats.visit_rows(q, how.coverage, "", arrays, stats.over_hits("arrayExists", conds[0]))}))"""


def _from_hits(q: stats.StatsQuery, conds: list[str]) -> str:
    """SQL of the funnel's counts sessionized from the hits (exact)."""
    n = len(conds)
    # Each hit packed into one UInt64, as stats._visits_by_visitor does: time in ms, then which steps it
    # completes, whether it passes the hit filters and (its visit judged by its first hit) the visit filters.
    # One numeric sort per visitor orders them; the visits are cut in the array; only step hits of
    # passing visits are unrolled for windowFunnel, per visit.
    shift = 1 << (n + 2)
    steps = " + ".join(f"toUInt64({c}) * {1 << (i + 2)}" for i, c in enumerate(conds))
    packed = (f"toUInt64(toUnixTimestamp64Milli(timestamp)) * {shift} + {steps} "
              f"+ toUInt64({stats._visit_match(q)}) * 2 + toUInt64({stats._hit_match(q)})")
    passes = "1"
    visits = ""
    if q.filters:  # a visit passes when its first hit passes the visit filters and one hit the hit filters
        visits = f""",
                   arrayFilter(i -> starts[i] = 1, arrayEnumerate(ts)) AS S,
                   arrayPushBack(arrayMap(i -> toUInt32(i - 1), arrayPopFront(S)), toUInt32(length(ts))) AS E,
                   arrayCumSum(arrayMap(x -> toUInt32(bitAnd(x, 1)), P)) AS chm,
                   arrayMap((a, b) -> bitTest(P[a], 1) AND chm[b] - chm[a] + toUInt32(bitAnd(P[a], 1)) > 0, S, E) AS ok"""
        passes = "ok[visit]"
    # Only visitors with a hit completing the first step can enter the funnel: only they are sessionized.
    entered = f"visitor_hash IN (SELECT visitor_hash FROM {{db}}.events WHERE {stats.RANGE} AND {conds[0]})"
    levels = _levels(n)
    reached = ", ".join(f"bitTest(x, {i + 2})" for i in range(n))
    sql = f"""SELECT {levels} FROM (
                  SELECT visitor_hash, windowFunnel({WINDOW_MS}, 'strict_increase')(intDiv(x, {shift}), {reached}) AS level
                  FROM (
                      SELECT visitor_hash, arraySort(groupArray({packed})) AS P,
                             arrayMap(x -> toInt64(intDiv(x, {shift})), P) AS ts,
                             arrayMap(i -> toUInt32(i = 1 OR ts[i] - ts[i - 1] > {stats.VISIT_GAP_MS}), arrayEnumerate(ts)) AS starts,
                             arrayCumSum(starts) AS sn{visits}
                      FROM {{db}}.events WHERE {stats.RANGE} AND {entered} GROUP BY visitor_hash
                  ) ARRAY JOIN P AS x, sn AS visit
                  WHERE {passes} AND bitAnd(x, {((1 << n) - 1) << 2}) != 0
                  GROUP BY visitor_hash, visit)"""
    return sql
