"""The scan report's shape: plain JSON-ready dicts (the `--json` file is exactly these), typed here.

The schema is stable: fields are only ever added (schema_version stays 1 while that holds).
gateway/scan/schema.py is the same shape as a JSON Schema; docs/scan.md explains each field.
"""
from __future__ import annotations

from typing import TypedDict

SCHEMA_VERSION = 1
PHASES = ("no_consent", "reject", "accept")
PHASE_TITLES = {
    "no_consent": "First visit, no consent given",
    "reject": "After clicking Reject",
    "accept": "After clicking Accept",
}
# Phases in which anything not strictly necessary is a finding.
CHECKED_PHASES = ("no_consent", "reject")


class SetBy(TypedDict):
    kind: str  # http_response, script, inline_script, unknown
    url: str | None  # the response or script, without its query string


class CookieSeen(TypedDict):
    name: str
    domain: str
    path: str
    party: str  # first, third
    expires: str | None  # ISO 8601 UTC; None: a session cookie
    lifetime_days: float | None
    http_only: bool
    secure: bool
    same_site: str
    set_by: SetBy
    first_page: str
    category: str | None  # necessary, preferences, analytics, marketing; None: unknown
    category_source: str  # config, known, none
    vendor: str
    purpose: str


class StorageSeen(TypedDict):
    area: str  # localStorage, sessionStorage
    key: str
    origin: str
    party: str
    set_by: SetBy
    first_page: str
    category: str | None
    category_source: str
    vendor: str
    purpose: str


class RequestSeen(TypedDict):
    host: str
    party: str  # always third: first-party requests are not listed
    role: str  # consent_banner (the consentgate gateway of this page), other
    types: list[str]  # Playwright resource types: script, image, xhr, fetch, ...
    count: int
    example: str  # one URL, without its query string
    identifier_params: list[str]  # query parameter names that look like they carry an identifier
    first_page: str


class PageVisit(TypedDict):
    url: str
    status: int | None  # the HTTP status of the page; None when it did not load
    error: str | None
    banner: str | None  # the banner shown on this page: consentgate, onetrust, ..., unknown; None: none
    new_cookies: list[str]  # "name@domain" first present on this page
    new_storage: list[str]  # "area:key@origin"
    third_party_hosts: list[str]


class Decision(TypedDict):
    banner: str
    clicked: str  # accept, reject
    page: str


class Phase(TypedDict):
    name: str  # no_consent, reject, accept
    title: str
    status: str  # done, skipped, error
    note: str
    decision: Decision | None
    pages: list[PageVisit]
    cookies: list[CookieSeen]
    storage: list[StorageSeen]
    requests: list[RequestSeen]


class Finding(TypedDict):
    id: str  # phase/kind/name@where: stable across runs, for CI baselines
    phase: str
    kind: str  # cookie, storage, request
    name: str  # the cookie name, the storage key, or the host a request went to
    where: str  # the cookie's domain, the storage's origin, the request's host
    party: str
    category: str | None
    category_source: str
    first_page: str
    set_by: SetBy | None
    problem: str
    advice: str


class ScanError(TypedDict):
    phase: str | None
    page: str | None
    message: str


class Verdict(TypedDict):
    status: str  # clean, findings, error
    exit_code: int  # 0 clean, 1 findings, 2 error
    findings: int
    errors: int


class Report(TypedDict):
    schema_version: int
    tool: str
    tool_version: str
    url: str
    origin: str
    site: str | None
    config: str | None
    started_at: str
    finished_at: str
    browser: str
    options: dict[str, int]
    banner: str | None  # the banner on the start page of the first visit
    verdict: Verdict
    phases: list[Phase]
    findings: list[Finding]
    errors: list[ScanError]
