"""OpenAPI 3.1 documents: the stats API (/api/stats/openapi.json), and every public route (/openapi.json),
built from the same limits the code validates with. tests/test_fuzz.py checks that every route is in it
and runs schemathesis against a real gateway with it."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from analytics import funnels, goals, stats
from gateway.collect.hit import HIT_TYPES, MAX_NAME, MAX_TOKEN, MAX_URL
from gateway.collect.props import MAX_KEY, MAX_PROPS, MAX_VALUE
from gateway.stats_api import DEFAULT_DAYS, MAX_DAYS, MAX_DEFINITION_BYTES, MAX_HOURLY_DAYS, MAX_LIMIT

_FILTER_HELP = {
    "page": "only hits on this path, e.g. /pricing (visits that hold such a hit)",
    "event": "only custom events of this name",
    "country": "ISO country code, e.g. NL",
    "browser": "browser family, e.g. Firefox",
    "os": "operating system, e.g. iOS",
    "device": "desktop, mobile or tablet",
    "referrer_host": "visits that came from this host, e.g. google.com",
    "source": "visits of this channel: direct, search, social, email, paid, campaign, referral",
    "utm_source": "visits tagged with this utm_source",
    "utm_medium": "visits tagged with this utm_medium",
    "utm_campaign": "visits tagged with this utm_campaign",
}


def _param(name: str, description: str, schema: dict[str, Any], where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}


SITE_PARAM = _param("site", "site name from the gateway config", {"type": "string"}, "path")


def _common() -> list[dict[str, Any]]:
    date_schema = {"type": "string", "format": "date"}
    return [
        _param("site", "site name from the gateway config", {"type": "string"}, "path"),
        _param("from", f"first day, in the site's timezone (default: {DEFAULT_DAYS - 1} days before 'to'; "
               f"at most {MAX_DAYS} days in a range)", date_schema),
        _param("to", "last day, included (default: today in the site's timezone)", date_schema),
        *(_param(name, _FILTER_HELP[name], {"type": "string"}) for name in stats.FILTERS),
    ]


def _ok(description: str, schema: dict[str, Any], csv: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {
        "200": {"description": description, "content": content},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": {"$ref": "#/components/responses/UnknownSite"},
    }


def _counts(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "integer"} for n in names}}


EXACT = {"exact": {"type": "boolean", "description": "false when a large range was answered from the per-visit and "
                                                   "per-hour tables (visitor counts within about 2 %); see docs/stats.md"}}


def _rows(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"results": {"type": "array", "items": item}, **EXACT}}


PROP_FILTERS = (f"Filter on a custom property with prop.NAME=VALUE (up to {stats.MAX_PROP_FILTERS}; NAME up to "
                f"{stats.MAX_PROP_NAME} characters): hits whose property NAME has VALUE.")
_STEP = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": goals.MAX_NAME},
    "page": {"type": "string", "maxLength": goals.MAX_PATTERN, "description": "path pattern, * matches anything"},
    "event": {"type": "string", "maxLength": goals.MAX_EVENT},
    "props": {"type": "object", "maxProperties": goals.MAX_PROP_MATCHES, "additionalProperties": {"type": "string"}}}}
GOAL_BODY = {"type": "object", "required": ["name"], "properties": {
    **_STEP["properties"], "revenue_property": {"type": "string", "maxLength": stats.MAX_PROP_NAME}}}
FUNNEL_BODY = {"type": "object", "required": ["name", "steps"], "properties": {
    "name": {"type": "string", "maxLength": goals.MAX_NAME},
    "steps": {"type": "array", "minItems": funnels.MIN_STEPS, "maxItems": funnels.MAX_STEPS, "items": _STEP}}}


def _change(description: str, status: str = "200", body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A goal or funnel change: the stats token (or dashboard session) of the site, never a shared link."""
    responses = {status: {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}},
                 **{code: {"$ref": f"#/components/responses/{name}"} for code, name in (
                     ("400", "BadRequest"), ("401", "Unauthorized"), ("404", "UnknownSite"), ("409", "Conflict"))}}
    if body is not None:
        responses["413"] = {"$ref": "#/components/responses/TooLarge"}
    op: dict[str, Any] = {"summary": description, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


FORMAT = _param("format", "json (default) or csv; `Accept: text/csv` works too", {"type": "string", "enum": ["json", "csv"]})


def openapi_document() -> dict[str, Any]:
    metrics = {"type": "object", "properties": {
        **{n: {"type": "integer"} for n in ("visitors", "visits", "pageviews", "visit_duration")},
        "views_per_visit": {"type": "number"}, "bounce_rate": {"type": "number", "description": "percent"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "consentgate stats API", "version": "1",
                 "description": "Aggregated statistics of consented hits. Visits end after 30 minutes without a hit. "
                                "Dates are days in the site's timezone; both ends are included. " + PROP_FILTERS +
                                " Breakdowns also take prop:NAME as dimension. See docs/stats.md."},
        "security": [{"statsToken": []}],
        "paths": {
            "/api/stats/sites": {"get": {"summary": "The sites the caller may read", "parameters": [],
                                         "responses": _ok("sites", {"type": "object", "properties": {"sites": {
                                             "type": "array", "items": {"type": "object", "properties": {
                                                 "name": {"type": "string"},
                                                 "timezone": {"type": "string", "description": "IANA zone of its days"},
                                                 "can_write": {"type": "boolean", "description":
                                                               "whether the caller may change the site's goals, "
                                                               "funnels and shared links (false for a shared link)"},
                                             }, "required": ["name", "timezone", "can_write"]}}}})}},
            "/api/stats/{site}/summary": {"get": {
                "summary": "Visitors, visits, pageviews, views per visit, bounce rate, visit duration, "
                           "with the previous period of the same length and the change in percent",
                "parameters": _common(),
                "responses": _ok("totals", {"type": "object", "properties": {
                    "current": metrics, "previous": metrics, "change": {"type": "object"}, **EXACT}})}},
            "/api/stats/{site}/timeseries": {"get": {
                "summary": "Visitors and pageviews per bucket, zero-filled",
                "parameters": [*_common(), FORMAT, _param(
                    "interval", f"bucket size (hour for ranges up to {MAX_HOURLY_DAYS} days)",
                    {"type": "string", "enum": list(stats.INTERVALS), "default": "day"})],
                "responses": _ok("buckets", _rows(_counts("visitors", "pageviews") | {"bucket": {"type": "string"}}), True)}},
            "/api/stats/{site}/breakdown/{dimension}": {"get": {
                "summary": "Top values of a dimension by visitors",
                "parameters": [*_common(), FORMAT,
                               _param("dimension", "what to break down by", {"type": "string", "enum": list(stats.DIMENSIONS)}, "path"),
                               _param("limit", f"rows, 1 to {MAX_LIMIT}", {"type": "integer", "default": 10})],
                "responses": _ok("rows of value, visitors, pageviews (visits for visit dimensions, events for event)",
                                 _rows(_counts("visitors", "visits", "pageviews", "events") | {"value": {"type": "string"}}), True)}},
            "/api/stats/{site}/consent": {"get": {
                "summary": "Banner decisions per day and method, opt-in rate per category, withdrawals, "
                           "and how many deciding visitors refused analytics (the statistics cannot see them)",
                "parameters": [p for p in _common() if p["name"] in ("site", "from", "to")],
                "responses": _ok("consent statistics", {"type": "object"})}},
            "/api/stats/{site}/realtime": {"get": {
                "summary": "Visitors and pageviews in the last 5 minutes and their pages",
                "parameters": [p for p in _common() if p["name"] not in ("from", "to")],
                "responses": _ok("now", {"type": "object"})}},
            "/api/stats/{site}/goals": {
                "get": {"summary": "The site's goals: from the config (editable false) and made in the dashboard",
                        "parameters": [SITE_PARAM], "responses": _ok("goals", {"type": "object"})},
                "post": {**_change(f"Make a goal (JSON, at most {MAX_DEFINITION_BYTES} bytes): a page goal "
                                   "{name, page} or an event goal {name, event, props?, revenue_property?}",
                                   "201", GOAL_BODY), "parameters": [SITE_PARAM]}},
            "/api/stats/{site}/goals/{goal_id}": {"delete": {
                **_change("Delete a goal made in the dashboard (config goals: 409)"),
                "parameters": [SITE_PARAM, _param("goal_id", "the goal's id", {"type": "string"}, "path")]}},
            "/api/stats/{site}/goals/{goal_id}/timeseries": {"get": {
                "summary": "One goal's conversions (unique visitors), completions and revenue per bucket",
                "parameters": [*_common(), FORMAT, _param("goal_id", "the goal's id", {"type": "string"}, "path"),
                               _param("interval", "bucket size", {"type": "string", "enum": list(stats.INTERVALS)})],
                "responses": _ok("buckets", _rows({"type": "object"}), True)}},
            "/api/stats/{site}/goals/{goal_id}/breakdown/{dimension}": {"get": {
                "summary": "One goal's conversions by the visit's source, or the converting hit's page or country",
                "parameters": [*_common(), FORMAT, _param("goal_id", "the goal's id", {"type": "string"}, "path"),
                               _param("dimension", "what to break down by",
                                      {"type": "string", "enum": list(goals.BREAKDOWNS)}, "path"),
                               _param("limit", f"rows, 1 to {MAX_LIMIT}", {"type": "integer", "default": 10})],
                "responses": _ok("rows of value, conversions, completions, revenue", _rows({"type": "object"}), True)}},
            "/api/stats/{site}/conversions": {"get": {
                "summary": "Every goal: conversions (unique visitors), completions, conversion rate (percent of the "
                           "range's visitors), revenue in the site's currency",
                "parameters": _common(), "responses": _ok("goals with their figures", {"type": "object"})}},
            "/api/stats/{site}/funnels": {
                "get": {"summary": "The site's funnels: from the config and made in the dashboard",
                        "parameters": [SITE_PARAM], "responses": _ok("funnels", {"type": "object"})},
                "post": {**_change(f"Make a funnel of {funnels.MIN_STEPS} to {funnels.MAX_STEPS} steps (page or event "
                                   "goals) within one visit", "201", FUNNEL_BODY), "parameters": [SITE_PARAM]}},
            "/api/stats/{site}/funnels/{funnel_id}": {
                "get": {"summary": "Per step: visitors and visits that reached it within one visit, drop-off, "
                                   "share of the first step",
                        "parameters": [*_common(), _param("funnel_id", "the funnel's id", {"type": "string"}, "path")],
                        "responses": _ok("steps", {"type": "object"})},
                "delete": {**_change("Delete a funnel made in the dashboard (config funnels: 409)"),
                           "parameters": [SITE_PARAM, _param("funnel_id", "the funnel's id", {"type": "string"}, "path")]}},
        },
        "components": {
            "securitySchemes": {"statsToken": {"type": "http", "scheme": "bearer",
                                               "description": "one of the gateway's stats_tokens"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "detail"], "properties": {
                "error": {"type": "string"}, "detail": {"type": "string", "description": "what to do"}}}},
            "responses": {
                name: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                for name, text in (("BadRequest", "a bad parameter"), ("Unauthorized", "no or a wrong stats token"),
                                   ("UnknownSite", "no such site"), ("Conflict", "a goal or funnel of that name exists, "
                                   "too many, or one from the config"), ("TooLarge", "body over the limit"))},
        },
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


async def public_openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(public_openapi_document())


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json_ok(description: str, schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {"application/json": {"schema": schema}}}}


def _text_ok(description: str, media_type: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}}


SITE_ERRORS = {"403": _error("an Origin the site does not list"), "404": _error("no such site")}
BODY_ERRORS = {"400": _error("malformed JSON or wrong types"), "413": _error("body over the limit")}
FULL = {"503": _error("the spool is full (store down?): nothing was recorded, retry later")}
LIMITED = {"429": _error("too many decisions or failed checks from this network: wait Retry-After seconds")}
TOKEN_ERRORS = {"401": _error("no consent token, or one that is no longer valid")}
SITE = _param("site", "site name from the gateway config", {"type": "string"}, "path")
BOOL = {"type": "boolean"}
CHOICES = {"type": "object", "properties": {c: BOOL for c in ("necessary", "preferences", "analytics", "marketing")},
           "additionalProperties": False}
CONSENT_ANSWER = {"type": "object", "required": ["consent_id", "choices", "policy_version", "expires_at"], "properties": {
    "consent_id": {"type": "string"}, "token": {"type": "string"}, "choices": CHOICES,
    "policy_version": {"type": "integer"}, "expires_at": {"type": "string", "format": "date-time"}}}
CONSENT_BODY = {"type": "object", "required": ["choices"], "properties": {
    "choices": CHOICES, "method": {"type": "string", "enum": ["accept_all", "reject_all", "custom", "gpc"]},
    "language": {"type": "string", "maxLength": 12}, "consent": {"type": "string", "maxLength": 1024}}}
HIT_BODY = {"type": "object", "required": ["url"], "properties": {
    "type": {"type": "string", "enum": list(HIT_TYPES)}, "url": {"type": "string", "format": "uri", "maxLength": MAX_URL},
    "referrer": {"type": "string", "maxLength": MAX_URL}, "name": {"type": "string", "maxLength": MAX_NAME},
    "consent": {"type": "string", "maxLength": MAX_TOKEN},
    "props": {"type": "object", "maxProperties": MAX_PROPS, "propertyNames": {"minLength": 1, "maxLength": MAX_KEY},
              "additionalProperties": {"type": "string", "maxLength": MAX_VALUE},
              "description": "custom event properties; values that are an e-mail address, an IP address or an id "
                             "are dropped (counted in /metrics)"}}}
RESULT_HEADER = {"X-Consentgate-Result": {"description": "stored, forwarded, or dropped: <reason>",
                                          "schema": {"type": "string"}}}
TOKEN_HEADER = _param("X-Consent-Token", "the consent token (or the cg_consent cookie)", {"type": "string"}, "header")
ANY_OBJECT = {"type": "object"}


def _body(schema: dict[str, Any], required: bool = True, plain: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if plain:
        content["text/plain"] = {"schema": {"type": "string"}}  # sendBeacon sends JSON as text/plain
    return {"required": required, "content": content}


def _page_or_error(description: str) -> dict[str, Any]:
    """The dashboard answers a browser with its page and anything else with the JSON error."""
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}},
                                                     "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _public_paths() -> dict[str, Any]:
    html, js = "text/html", "application/javascript"
    return {
        "/s/{site}/collect": {"post": {
            "summary": "A page view or event from the banner (sendBeacon); stored or forwarded only as far as "
                       "the consent token allows", "parameters": [SITE], "requestBody": _body(HIT_BODY, plain=True),
            "responses": {"202": {"description": "taken; the outcome is in the header", "headers": RESULT_HEADER},
                          **BODY_ERRORS, **SITE_ERRORS, **FULL}}},
        "/s/{site}/banner.js": {"get": {"summary": "The site's banner: code, styles, texts and config in one script",
                                        "parameters": [SITE], "responses": {**_text_ok("the banner", js),
                                                                             "304": {"description": "not modified"},
                                                                             "404": SITE_ERRORS["404"]}}},
        "/s/{site}/consent": {
            "post": {"summary": "Record a decision; answers the signed token (also as cookie cg_consent)",
                     "parameters": [SITE, TOKEN_HEADER], "requestBody": _body(CONSENT_BODY),
                     "responses": {**_json_ok("the decision and its token", CONSENT_ANSWER),
                                   **BODY_ERRORS, **SITE_ERRORS, **LIMITED, **FULL}},
            "get": {"summary": "The caller's current consent", "parameters": [SITE, TOKEN_HEADER],
                    "responses": {**_json_ok("the consent, or choices null", {"type": "object", "properties": {
                        "choices": {"oneOf": [CHOICES, {"type": "null"}]}}}), **SITE_ERRORS}},
            "delete": {"summary": "Withdraw consent: logged, the token revoked, the cookie cleared",
                       "parameters": [SITE, TOKEN_HEADER], "requestBody": _body(ANY_OBJECT, required=False),
                       "responses": {**_json_ok("withdrawn (false without a token)", {"type": "object", "properties": {
                           "withdrawn": BOOL, "consent_id": {"type": ["string", "null"]}}}),
                                     **BODY_ERRORS, **SITE_ERRORS, **LIMITED, **FULL}}},
        "/s/{site}/privacy/me": {
            "get": {"summary": "Export the visitor's own data (access, portability)", "parameters": [SITE, TOKEN_HEADER],
                    "responses": {**_json_ok("events, visits, consents, recipients, restrictions", ANY_OBJECT), **TOKEN_ERRORS, **SITE_ERRORS,
                                  **LIMITED, "503": _error("the store is unreachable")}},
            "delete": {"summary": "Erase the visitor's events and recipients (the consent log stays as proof)",
                       "parameters": [SITE, TOKEN_HEADER],
                       "responses": {**_json_ok("what was erased", ANY_OBJECT), **TOKEN_ERRORS, **SITE_ERRORS, **LIMITED,
                                     "503": _error("the store or spool is unavailable")}}},
        "/s/{site}/privacy/me/restrict": {
            op: {"summary": summary, "parameters": [SITE, TOKEN_HEADER],
                 "responses": {**_json_ok("the restriction state", ANY_OBJECT), **TOKEN_ERRORS, **SITE_ERRORS, **LIMITED,
                               "503": _error("the store or spool is unavailable")}}
            for op, summary in (("post", "Object to / restrict processing"), ("delete", "Lift the restriction"))},
        "/s/{site}/cookies": {"get": {"summary": "The cookie declaration page", "parameters": [SITE],
                                      "responses": {**_text_ok("HTML page", html), "404": SITE_ERRORS["404"]}}},
        "/s/{site}/cookies.json": {"get": {"summary": "The cookie declaration", "parameters": [SITE],
                                           "responses": {**_json_ok("cookies by category", ANY_OBJECT),
                                                         "404": SITE_ERRORS["404"]}}},
        "/s/{site}/cookies.js": {"get": {"summary": "The cookie declaration as an embeddable script", "parameters": [SITE],
                                         "responses": {**_text_ok("script", js), "404": SITE_ERRORS["404"]}}},
        "/s/{site}/cookies-page.js": {"get": {"summary": "The script of the declaration page", "parameters": [SITE],
                                              "responses": {**_text_ok("script", js), "404": SITE_ERRORS["404"]}}},
        "/healthz": {"get": {"summary": "Liveness", "responses": _json_ok("alive", ANY_OBJECT)}},
        "/readyz": {"get": {"summary": "Readiness: store writable, spool under its limit",
                            "responses": {**_json_ok("ready", ANY_OBJECT), **_json_ok("not ready", ANY_OBJECT, "503")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (Bearer metrics_token when configured)",
                             "responses": {**_text_ok("metrics", "text/plain"), "401": _error("metrics_token needed")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": _json_ok("OpenAPI 3.1", ANY_OBJECT)}},
        "/api/stats/openapi.json": {"get": {"summary": "The stats API's own document",
                                            "responses": _json_ok("OpenAPI 3.1", ANY_OBJECT)}},
        "/api/consents/{site}": {"get": {
            "summary": "Auditor export of the consent log", "security": [{"statsToken": []}],
            "parameters": [SITE, _param("from", "first day", {"type": "string", "format": "date"}),
                           _param("to", "last day", {"type": "string", "format": "date"}), FORMAT],
            "responses": {**_ok("consent records", ANY_OBJECT, True), "403": _error("a token of another site"), **LIMITED}}},
        "/api/admin/{site}/visitors/{consent_id}": {
            op: {"summary": summary, "security": [{"statsToken": []}],
                 "parameters": [SITE, _param("consent_id", "the visitor's consent id", {"type": "string"}, "path")],
                 "responses": {**_json_ok("done", ANY_OBJECT), "401": _error("no or a wrong admin token"),
                               "403": _error("not this site's token"), "404": SITE_ERRORS["404"], **LIMITED,
                               "503": _error("the store is unreachable")}}
            for op, summary in (("get", "Export a visitor's data"), ("delete", "Erase a visitor's data"))},
        "/api/admin/{site}/visitors/{consent_id}/restriction": {
            op: {"summary": summary, "security": [{"statsToken": []}],
                 "parameters": [SITE, _param("consent_id", "the visitor's consent id", {"type": "string"}, "path")],
                 "responses": {**_json_ok("done", ANY_OBJECT), "401": _error("no or a wrong admin token"),
                               "403": _error("not this site's token"), "404": SITE_ERRORS["404"], **LIMITED,
                               "503": _error("the store is unreachable")}}
            for op, summary in (("post", "Restrict a visitor's processing"), ("delete", "Lift it"))},
        "/api/admin/backup": {"get": {
            "summary": "The store as a tar of schema and Native rows (consentgate backup)", "security": [{"statsToken": []}],
            "responses": {**_text_ok("tar archive", "application/x-tar"), "401": _error("no or a wrong admin token"),
                          "404": _error("the admin API is off (no admin_tokens configured)"),
                          "409": _error("a cluster store: use ClickHouse's BACKUP"), **LIMITED,
                          "503": _error("the store is unreachable")}}},
        "/dashboard": {"get": {"summary": "The marketing dashboard (log-in page without a session)",
                               "responses": {**_text_ok("HTML page", html), "401": {"description": "log-in page",
                                             "content": {html: {"schema": {"type": "string"}}}}}}},
        "/dashboard/login": {"post": {
            "summary": "Log in with a stats token (form field token)",
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {"token": {"type": "string"}}}}}},
            "responses": {"303": {"description": "to /dashboard"}, **{s: _page_or_error(d) for s, d in (
                ("401", "wrong token"), ("403", "foreign Origin"), ("400", "bad form"), ("413", "too large"),
                ("429", "too many failures"))}}}},
        "/dashboard/logout": {"post": {"summary": "Log out", "responses": {
            "303": {"description": "to /dashboard"}, "403": _page_or_error("foreign Origin")}}},
        "/dashboard/assets/{name}": {"get": {
            "summary": "The dashboard's own scripts and styles",
            "parameters": [_param("name", "file name", {"type": "string"}, "path")],
            "responses": {**_text_ok("the file", "application/javascript"), "404": _error("no such asset")}}},
        **_share_and_report_paths(),
    }


def _share_and_report_paths() -> dict[str, Any]:
    """Shared links (gateway/share_api.py) and sending a report now (gateway/reports/api.py)."""
    html = "text/html"
    token = [{"statsToken": []}]
    store_down = {"503": _error("the store is unreachable")}
    link = {"type": "object", "required": ["link_id", "site", "label", "password", "created"], "properties": {
        "link_id": {"type": "string"}, "site": {"type": "string"}, "label": {"type": "string"},
        "password": BOOL, "created": {"type": "string", "format": "date-time"}}}
    secret = _param("secret", "the link's secret, as in the address the link was made with", {"type": "string"}, "path")
    auth_errors = {"401": _error("no or a wrong stats token"), "403": _error("a token of another site, or a shared "
                                                                            "link's session"),
                   "404": SITE_ERRORS["404"], **LIMITED, **store_down}
    return {
        "/api/stats/{site}/shared-links": {
            "get": {"summary": "The site's live shared links (never their addresses: only hashes are kept)",
                    "security": token, "parameters": [SITE],
                    "responses": {**_json_ok("live links", {"type": "object", "properties": {
                        "site": {"type": "string"}, "links": {"type": "array", "items": link}}}), **auth_errors}},
            "post": {"summary": "Make a read-only link to the site's dashboard; its address is in the answer, once",
                     "security": token, "parameters": [SITE],
                     "requestBody": _body({"type": "object", "additionalProperties": False, "properties": {
                         "password": {"type": "string", "minLength": 8, "maxLength": 256},
                         "label": {"type": "string", "maxLength": 200}}}, required=False),
                     "responses": {**_json_ok("the new link and its address", {**link, "properties": {
                         **link["properties"], "url": {"type": "string"}, "note": {"type": "string"}}}, "201"),
                                   **BODY_ERRORS, **auth_errors,
                                   "409": _error("the site has 100 live links, the most it may have: revoke some")}}},
        "/api/stats/{site}/shared-links/{link_id}": {"delete": {
            "summary": "Revoke a link: it and every session opened with it stop at their next request",
            "security": token, "parameters": [SITE, _param("link_id", "the link's id", {"type": "string"}, "path")],
            "responses": {**_json_ok("revoked", {"type": "object", "properties": {
                "revoked": BOOL, "link_id": {"type": "string"}}}), **auth_errors,
                          "404": _error("no such site, or no live link of that id")}}},
        "/share/{secret}": {
            "get": {"summary": "A shared link: the site's dashboard, read-only (a password form first when it has one)",
                    "parameters": [secret],
                    "responses": {**_text_ok("the dashboard or the password form", html),
                                  "404": _error("no live link at this address"), **LIMITED, **store_down}},
            "post": {"summary": "The password of a shared link (form field password)", "parameters": [secret],
                     "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                         "type": "object", "properties": {"password": {"type": "string"}}}}}},
                     "responses": {"303": {"description": "to the link's dashboard"},
                                   "401": {"description": "wrong password: the form again",
                                           "content": {html: {"schema": {"type": "string"}}}},
                                   "404": _error("no live link at this address"), **BODY_ERRORS, **LIMITED,
                                   **store_down}}},
        "/api/admin/{site}/reports/send": {"post": {
            "summary": "Send the site's report of the last closed week or month now (consentgate report send)",
            "security": token, "parameters": [SITE],
            "requestBody": _body({"type": "object", "required": ["to"], "additionalProperties": False, "properties": {
                "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1, "maxItems": 20},
                "period": {"type": "string", "enum": ["week", "month"]}}}),
            "responses": {**_json_ok("sent", ANY_OBJECT), **BODY_ERRORS, "401": _error("no or a wrong admin token"),
                          "404": _error("no such site, or the admin API is off (no admin_tokens)"),
                          "409": _error("no [reports] table: this gateway sends no e-mail"), **LIMITED,
                          "503": _error("the SMTP server failed or is unreachable: the detail says what to fix")}}},
    }


def public_openapi_document() -> dict[str, Any]:
    """Every public route: the ones above plus the stats API's."""
    stats_doc = openapi_document()
    return {
        **stats_doc,
        "info": {"title": "consentgate", "version": "1",
                 "description": "Consent banner, consent-gated collect endpoint, visitor rights, stats API. "
                                "Errors are JSON {error, detail} with a 4xx (503 when the gateway cannot keep a record)."},
        "security": [],
        "paths": {**_public_paths(), **{path: {op: {**spec, "security": [{"statsToken": []}],
                                                   "responses": {**spec["responses"], **LIMITED,
                                                                 "403": _error("a token of another site"),
                                                                 "503": _error("the store is unreachable")}}
                                               for op, spec in item.items()}
                                        for path, item in stats_doc["paths"].items()}},
    }
