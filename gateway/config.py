"""The one config file: TOML, validated strictly so a typo is an error that names its key."""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from analytics.records import VENDOR_FIELDS
from analytics.funnels import Funnel, config_funnels
from analytics.goals import CURRENCY, Goal, config_goals

SECRET_ENV = "CONSENTGATE_SECRET_KEY"
MIN_SECRET_LENGTH = 32
MIN_TOKEN_LENGTH = 24  # stats and metrics tokens
MIN_ADMIN_TOKEN_LENGTH = 32  # admin tokens read and erase visitors' data
MAKE_SECRET = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
# Secrets printed in consentgate's README, docs and examples (and earlier versions of them): anyone can
# read them, and a gateway running on one accepts forged tokens. tests/test_security_auth.py checks that
# every secret_key shown in README.md, docs/ and examples/ is refused.
PUBLIC_SECRETS = frozenset({
    "change-me",
    "change-me-to-32-random-characters",
    "dev-only-secret-change-me-please",
    "replace-me-with-the-output-of-secrets.token_urlsafe(32)",
})
_PLACEHOLDER_WORDS = re.compile(r"change-?me|replace-?me", re.IGNORECASE)
# Characters that never belong in a config URL and could break out of an HTML attribute or a header.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\"'<>\\`]")
DEFAULT_CONSENT_RATE = 600  # consent, withdraw and privacy requests (export, erase, restrict) per network a minute
VENDOR_TYPES = ("webhook", "ga4", "meta_capi")
CATEGORIES = ("preferences", "analytics", "marketing")


class ConfigError(Exception):
    """Every problem found in a config file, each prefixed by its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class VendorConfig:
    name: str
    category: str
    type: str
    url: str
    secret: str = ""  # webhook HMAC secret
    measurement_id: str = ""  # ga4
    api_secret: str = ""  # ga4
    pixel_id: str = ""  # meta_capi
    access_token: str = ""  # meta_capi
    timeout: float = 5.0
    max_concurrency: int = 4
    fields: tuple[str, ...] = ()
    retry_initial: float = 1.0  # seconds before the first retry; doubles per attempt, with jitter
    retry_max: float = 60.0  # longest wait between retries
    retry_hours: float = 72.0  # a hit still undelivered after this long is dropped as expired
    breaker_failures: int = 5  # consecutive failures that open the circuit breaker
    breaker_reset: float = 30.0  # seconds the breaker stays open before one probe
    max_outbox_bytes: int = 256 * 1024 * 1024  # past this, the oldest undelivered hits are dropped (dropped_full)
    purpose: dict[str, str] = field(default_factory=dict)  # language -> why it gets hits (cookie declaration)
    privacy_url: str = ""  # the vendor's privacy statement (cookie declaration)


@dataclass(frozen=True)
class CookieConfig:
    """One cookie (or prefix, e.g. `_ga_*`) of the detailed form `[[sites.NAME.cookie]]`: the cookie declaration."""

    name: str
    category: str  # necessary or one of CATEGORIES
    purpose: dict[str, str] = field(default_factory=dict)  # language -> text
    lifetime: str = ""  # as told to visitors, e.g. "2 years", "session"
    party: str = "first"  # first or third
    provider: str = ""  # who sets it, for a third-party cookie


@dataclass(frozen=True)
class SiteConfig:
    name: str
    origins: tuple[str, ...]
    policy_version: int = 1
    policy_url: str = ""
    languages: tuple[str, ...] = ("nl", "en")
    controller: str = ""  # who processes, shown on the banner's first layer
    consent_mode: bool = False  # Google Consent Mode v2 signals
    reopen_position: str = "bottom-left"  # or bottom-right, hidden
    timezone: str = "Europe/Amsterdam"
    stats_tokens: tuple[str, ...] = ()  # read only this site's statistics
    cookies: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category -> cookie names
    cookie_details: tuple[CookieConfig, ...] = ()  # [[sites.NAME.cookie]]: purpose, lifetime, party
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # language -> key -> text
    vendors: tuple[VendorConfig, ...] = ()
    currency: str = "EUR"  # ISO 4217 code of goals' revenue
    goals: tuple[Goal, ...] = ()  # [[sites.NAME.goals]]: read-only; the dashboard adds more (analytics/goals.py)
    funnels: tuple[Funnel, ...] = ()  # [[sites.NAME.funnels]]: read-only, as goals
    share_frame_ancestors: tuple[str, ...] = ()  # origins whose pages may embed a shared link (none: no framing)
    report_to: tuple[str, ...] = ()  # e-mail addresses of the site's reports
    report_schedule: tuple[str, ...] = ("weekly",)  # weekly and/or monthly, when report_to is set


@dataclass(frozen=True)
class ReportsConfig:
    """`[reports]`: how e-mail reports leave the gateway (SMTP) and when the scheduler sends them."""

    smtp_host: str
    sender: str  # the From address
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls, tls (implicit, port 465) or none (a relay on localhost)
    smtp_user: str = ""
    smtp_password_env: str = ""  # the NAME of the environment variable holding the password, never the password
    send_hour: int = 7  # local hour (site timezone) on Monday (weekly) and the 1st (monthly)
    timeout: float = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    secret_keys: tuple[str, ...]  # newest last, as itsdangerous wants them
    store: str
    data_dir: Path
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    geoip_db: Path | None = None
    stats_tokens: tuple[str, ...] = ()  # read every site's statistics
    metrics_token: str = ""  # when set, /metrics needs it as a Bearer token
    admin_tokens: tuple[str, ...] = ()  # Bearer tokens of the admin API (privacy requests by e-mail); none: it is off
    consent_rate_per_minute: int = DEFAULT_CONSENT_RATE
    secret_source: str = "file"  # or "env": where the newest secret key came from
    retention_days: int = 395
    consent_max_age_days: int = 182
    consent_retention_days: int = 1825  # consents and banner_versions: proof outlives page views (docs/privacy.md)
    max_body_bytes: int = 64 * 1024
    batch_size: int = 5000
    flush_interval: float = 1.0
    public_url: str = ""  # how browsers reach the gateway; default: the request's own origin
    access_log: str = "errors"  # errors (4xx/5xx only), all, off; nginx in front usually logs every request
    durability: str = "machine"  # machine: a 2xx waits for fdatasync (group commit); process: write() only
    commit_interval_ms: float = 0.5  # the least time between two group-commit flushes
    max_spool_bytes: int = 1024 ** 3  # spool on disk past this: collect and consent answer 503
    cluster: str = ""  # a ClickHouse cluster name: migrations ON CLUSTER, Distributed tables (analytics/cluster.py)
    revocation_sync_interval: float = 0.0  # seconds between reads of other gateways' decisions; 0: off
    stats_refresh_seconds: float = 30.0  # how often the visit builder looks for days to (re)build (analytics/visits.py)
    stats_exact_below: int = 100_000  # ranges with fewer hits are computed exactly from the hits (analytics/stats.py)
    bot_hits_per_minute: int = 300  # a visitor with more hits in a minute is a bot (gateway/collect/behaviour.py); 0: off
    bot_zero_second_visits: int = 20  # that many one-hit 0 s visits in a day leave a visitor out of the stats; 0: off
    sites: dict[str, SiteConfig] = field(default_factory=dict)
    reports: ReportsConfig | None = None  # [reports]: SMTP for e-mail reports; None: no reports are sent

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(GatewayConfig)}
# [gateway] keys read as they are, with the dataclass's defaults (written once, above). Seconds are ints or floats.
_SECONDS = (int, float)
_GATEWAY_SCALARS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("metrics_token", str), ("consent_rate_per_minute", int), ("retention_days", int),
    ("consent_max_age_days", int), ("consent_retention_days", int), ("max_body_bytes", int), ("batch_size", int),
    ("flush_interval", _SECONDS), ("access_log", str), ("durability", str), ("commit_interval_ms", _SECONDS),
    ("max_spool_bytes", int), ("cluster", str), ("stats_refresh_seconds", _SECONDS), ("stats_exact_below", int),
    ("bot_hits_per_minute", int), ("bot_zero_second_visits", int),
)



def _scalar(gw: "_Reader", name: str, kind: type | tuple[type, ...]) -> Any:
    value = gw.get(name, kind, _DEFAULTS[name])
    return float(value) if kind is _SECONDS else value


class _Reader:
    """Pops typed values out of a TOML table, collecting problems instead of stopping at the first."""

    def __init__(self, table: dict[str, Any], path: str, problems: list[str]) -> None:
        self.table = dict(table)
        self.path = path
        self.problems = problems

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                self.problems.append(f"{self._key(key)}: missing (required)")
            return default
        value = self.table.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints in Python; never accept one for the other.
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.problems.append(f"{self._key(key)}: expected {names}, got {type(value).__name__} {value!r}")
            return default
        return value

    def str_list(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list, None)
        if value is None:
            return default
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            self.problems.append(f"{self._key(key)}: expected a list of strings, found {bad[0]!r}")
            return default
        return tuple(value)

    def finish(self) -> None:
        for key in self.table:
            self.problems.append(f"{self._key(key)}: unknown key")


def _check_url(url: str, key: str, problems: list[str], schemes: tuple[str, ...] = ("http", "https")) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.netloc or _URL_FORBIDDEN.search(url):
        problems.append(f"{key}: expected an {' or '.join(schemes)} URL without spaces, quotes or angle brackets, "
                        f"got {url!r}")


def _check_token(token: str, key: str, problems: list[str]) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        problems.append(f"{key}: too short ({len(token)} characters): a token needs at least {MIN_TOKEN_LENGTH} "
                        f"random characters; make one with {MAKE_SECRET}")
    elif _PLACEHOLDER_WORDS.search(token):
        problems.append(f"{key}: this is the placeholder of an example config: make a token with {MAKE_SECRET}")


def _check_secret(secret: str, key: str, problems: list[str]) -> None:
    if len(secret) < MIN_SECRET_LENGTH:
        problems.append(f"{key}: too short ({len(secret)} characters): use at least {MIN_SECRET_LENGTH} random "
                        f"characters; make one with {MAKE_SECRET}")
    elif secret in PUBLIC_SECRETS or _PLACEHOLDER_WORDS.search(secret):
        problems.append(f"{key}: this is a published example value, so anyone could forge consent tokens with it: "
                        f"make your own with {MAKE_SECRET}")


def _secret_keys(gw: _Reader, env: Mapping[str, str], problems: list[str]) -> tuple[tuple[str, ...], str]:
    """Every secret key, newest last, and where the newest came from. The environment wins over the file:
    an operator who sets it must not run, unknowingly, on a secret copied into a config file."""
    from_file = gw.get("secret_key", str, "")
    from_env = env.get(SECRET_ENV, "")
    old = gw.str_list("old_secret_keys")
    for i, key in enumerate(old):
        _check_secret(key, f"gateway.old_secret_keys[{i}]", problems)
    if from_env:
        _check_secret(from_env, f"{SECRET_ENV} (environment variable)", problems)
        return (*old, from_env), "env"
    if not from_file:
        problems.append(f"gateway.secret_key: missing: set the {SECRET_ENV} environment variable (or secret_key in "
                        f"the config) to at least {MIN_SECRET_LENGTH} random characters; make one with {MAKE_SECRET}")
    else:
        _check_secret(from_file, "gateway.secret_key", problems)
    return (*old, from_file), "file"


def _texts_by_language(r: _Reader, key: str, path: str, problems: list[str]) -> dict[str, str]:
    """A text in several languages: `key = {nl = "...", en = "..."}`, `key_nl = "..."`, or one plain
    string (for every language, under "")."""
    out: dict[str, str] = {}
    value = r.get(key, (str, dict), None)
    if isinstance(value, str):
        out[""] = value
    elif isinstance(value, dict):
        for lang, text in value.items():
            if not isinstance(text, str) or not lang.isalpha() or len(lang) > 8:
                problems.append(f"{path}.{key}.{lang}: expected a text in the language {lang!r}, like {key} = "
                                f"{{nl = \"...\", en = \"...\"}}")
                continue
            out[lang] = text
    for name in [k for k in r.table if k.startswith(f"{key}_")]:
        lang = name[len(key) + 1:]
        text = r.get(name, str, None)
        if text is not None and lang.isalpha() and len(lang) <= 8:
            out[lang] = text
        elif text is not None:
            problems.append(f"{path}.{name}: unknown key (a language code follows '{key}_', like {key}_nl)")
    for lang, text in out.items():
        if len(text) > 1000:
            problems.append(f"{path}.{key}{'.' + lang if lang else ''}: longer than 1000 characters")
    return out


def _cookie(raw: Any, path: str, problems: list[str]) -> CookieConfig | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a table with name, category, purpose, lifetime, party")
        return None
    r = _Reader(raw, path, problems)
    cookie = CookieConfig(
        name=r.get("name", str, "", required=True),
        category=r.get("category", str, "", required=True),
        purpose=_texts_by_language(r, "purpose", path, problems),
        lifetime=r.get("lifetime", str, ""),
        party=r.get("party", str, "first"),
        provider=r.get("provider", str, ""),
    )
    r.finish()
    if cookie.category and cookie.category not in ("necessary", *CATEGORIES):
        problems.append(f"{path}.category: expected one of necessary, {', '.join(CATEGORIES)}, got {cookie.category!r}")
    if cookie.party not in ("first", "third"):
        problems.append(f"{path}.party: expected first or third, got {cookie.party!r}")
    if not cookie.purpose and "purpose" not in raw:
        problems.append(f"{path}.purpose: missing (required): say why the cookie is set, e.g. purpose = "
                        f"{{nl = \"...\", en = \"...\"}}")
    for key, value in (("name", cookie.name), ("lifetime", cookie.lifetime), ("provider", cookie.provider)):
        if len(value) > 200:
            problems.append(f"{path}.{key}: longer than 200 characters")
    return cookie


def _vendor(raw: Any, path: str, problems: list[str]) -> VendorConfig | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a table")
        return None
    r = _Reader(raw, path, problems)
    name = r.get("name", str, "", required=True)
    category = r.get("category", str, "marketing")
    vtype = r.get("type", str, "", required=True)
    url = r.get("url", str, "")
    vendor = VendorConfig(
        name=name,
        category=category,
        type=vtype,
        url=url,
        secret=r.get("secret", str, ""),
        measurement_id=r.get("measurement_id", str, ""),
        api_secret=r.get("api_secret", str, ""),
        pixel_id=r.get("pixel_id", str, ""),
        access_token=r.get("access_token", str, ""),
        timeout=float(r.get("timeout", (int, float), 5.0)),
        max_concurrency=r.get("max_concurrency", int, 4),
        fields=r.str_list("fields"),
        retry_initial=float(r.get("retry_initial", (int, float), 1.0)),
        retry_max=float(r.get("retry_max", (int, float), 60.0)),
        retry_hours=float(r.get("retry_hours", (int, float), 72.0)),
        breaker_failures=r.get("breaker_failures", int, 5),
        breaker_reset=float(r.get("breaker_reset", (int, float), 30.0)),
        max_outbox_bytes=r.get("max_outbox_bytes", int, 256 * 1024 * 1024),
        purpose=_texts_by_language(r, "purpose", path, problems),
        privacy_url=r.get("privacy_url", str, ""),
    )
    if vendor.privacy_url:  # it becomes a link in the cookie declaration
        _check_url(vendor.privacy_url, f"{path}.privacy_url", problems)
    r.finish()
    if category not in CATEGORIES:
        problems.append(f"{path}.category: expected one of {', '.join(CATEGORIES)}, got {category!r}")
    if vtype and vtype not in VENDOR_TYPES:
        problems.append(f"{path}.type: expected one of {', '.join(VENDOR_TYPES)}, got {vtype!r}")
    if vtype == "webhook" and not url:
        problems.append(f"{path}.url: missing (required for a webhook)")
    if url:
        _check_url(url, f"{path}.url", problems)
    if vendor.timeout <= 0:
        problems.append(f"{path}.timeout: must be > 0")
    for key in ("retry_initial", "retry_max", "retry_hours", "breaker_reset"):
        if getattr(vendor, key) <= 0:
            problems.append(f"{path}.{key}: must be > 0")
    if vendor.max_outbox_bytes < 1024 * 1024:
        problems.append(f"{path}.max_outbox_bytes: must be at least 1048576 (1 MiB)")
    if vendor.max_concurrency < 1 or vendor.breaker_failures < 1:
        problems.append(f"{path}: max_concurrency and breaker_failures must be >= 1")
    for key in {"ga4": ("measurement_id", "api_secret"), "meta_capi": ("pixel_id", "access_token")}.get(vtype, ()):
        if not getattr(vendor, key):
            problems.append(f"{path}.{key}: missing (required for type {vtype!r}): copy it from the vendor's console")
    for i, name in enumerate(vendor.fields):
        if name not in VENDOR_FIELDS:
            problems.append(f"{path}.fields[{i}]: unknown field {name!r}: use {', '.join(VENDOR_FIELDS)}")
    return vendor


# A plain ASCII address: a dot-atom local part (RFC 5322 atext without the quote) @ dot-separated host labels.
# Nothing that could add a header or a recipient (whitespace, CR/LF, control characters, ',' ';' '<' '>'), turn
# the To header into an address group (':'), or fail later at an SMTP server without SMTPUTF8 (non-ASCII).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"  # RFC 5322 atext: o'brien@example.ie is an address
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"(?=[^@]{{1,64}}@)(?:{_ATEXT}+(?:\.{_ATEXT}+)*)@(?=.{{1,253}}\Z)(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
REPORT_SCHEDULES = ("weekly", "monthly")
SMTP_SECURITY = ("starttls", "tls", "none")


def is_email(value: str) -> bool:
    """An address the reports may be sent from or to (see _EMAIL)."""
    return _EMAIL.fullmatch(value) is not None


def _check_share_and_reports(site: SiteConfig, path: str, problems: list[str]) -> None:
    for i, origin in enumerate(site.share_frame_ancestors):
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
                or parts.query or _URL_FORBIDDEN.search(origin) or ";" in origin or "," in origin:
            problems.append(f"{path}.share_frame_ancestors[{i}]: expected an origin like 'https://agency.example' "
                            f"(the pages that may embed this site's shared links), got {origin!r}")
    for i, address in enumerate(site.report_to):
        if not is_email(address):
            problems.append(f"{path}.report_to[{i}]: expected an e-mail address like 'marketing@example.com', "
                            f"got {address!r}")
    for i, schedule in enumerate(site.report_schedule):
        if schedule not in REPORT_SCHEDULES:
            problems.append(f"{path}.report_schedule[{i}]: expected weekly or monthly, got {schedule!r}")


def _reports(raw: dict[str, Any], problems: list[str]) -> ReportsConfig | None:
    r = _Reader(raw, "reports", problems)
    reports = ReportsConfig(
        smtp_host=r.get("smtp_host", str, "", required=True),
        sender=r.get("from", str, "", required=True),
        smtp_port=r.get("smtp_port", int, 587),
        smtp_security=r.get("smtp_security", str, "starttls"),
        smtp_user=r.get("smtp_user", str, ""),
        smtp_password_env=r.get("smtp_password_env", str, ""),
        send_hour=r.get("send_hour", int, 7),
        timeout=float(r.get("timeout", (int, float), 30.0)),
    )
    r.finish()
    if reports.sender and not is_email(reports.sender):
        problems.append(f"reports.from: expected an e-mail address like 'stats@example.com', got {reports.sender!r}")
    if not 1 <= reports.smtp_port <= 65535:
        problems.append(f"reports.smtp_port: expected a port from 1 to 65535, got {reports.smtp_port}")
    if reports.smtp_security not in SMTP_SECURITY:
        problems.append(f"reports.smtp_security: expected starttls, tls or none, got {reports.smtp_security!r}")
    if reports.smtp_user and not reports.smtp_password_env:
        problems.append("reports.smtp_password_env: missing: name the environment variable that holds the SMTP "
                        "password (smtp_password_env = \"CONSENTGATE_SMTP_PASSWORD\"); the config never holds it")
    if reports.smtp_password_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", reports.smtp_password_env):
        problems.append(f"reports.smtp_password_env: expected the name of an environment variable, like "
                        f"CONSENTGATE_SMTP_PASSWORD, got {reports.smtp_password_env!r}")
    if not 0 <= reports.send_hour <= 23:
        problems.append(f"reports.send_hour: expected an hour from 0 to 23, got {reports.send_hour}")
    if reports.timeout <= 0:
        problems.append("reports.timeout: must be > 0 seconds")
    return reports


_SITE_NAME = re.compile(r"[A-Za-z0-9_-]*[A-Za-z0-9][A-Za-z0-9_-]*")


def _site(name: str, raw: Any, problems: list[str]) -> SiteConfig | None:
    path = f"sites.{name}"
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a table")
        return None
    # ASCII only: the name goes into paths and download file names (Content-Disposition is latin-1), and
    # str.isalnum() would let "сайт" or "site²" through.
    if not _SITE_NAME.fullmatch(name):
        problems.append(f"{path}: a site name may hold only ASCII letters (A-Z, a-z), digits (0-9), '-' and '_', "
                        f"with at least one letter or digit: rename the table, e.g. [sites.my-site]")
    r = _Reader(raw, path, problems)
    origins = r.str_list("origins")
    if not origins:
        problems.append(f"{path}.origins: missing (required): the web origins that embed the banner")
    for i, origin in enumerate(origins):
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            problems.append(f"{path}.origins[{i}]: expected an origin like 'https://www.example.com', got {origin!r}")
    policy_version = r.get("policy_version", int, 1)
    cookies_raw = r.get("cookies", dict, {})
    cookies: dict[str, tuple[str, ...]] = {}
    for cat, names in cookies_raw.items():
        if cat not in CATEGORIES or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"{path}.cookies.{cat}: expected a category ({', '.join(CATEGORIES)}) with a list of cookie names")
            continue
        cookies[cat] = tuple(names)
    texts_raw = r.get("texts", dict, {})
    texts: dict[str, dict[str, str]] = {}
    for lang, table in texts_raw.items():
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            problems.append(f"{path}.texts.{lang}: expected a table of strings")
            continue
        texts[lang] = dict(table)
    stats_tokens = r.str_list("stats_tokens")
    for i, token in enumerate(stats_tokens):
        _check_token(token, f"{path}.stats_tokens[{i}]", problems)
    cookie_details = [_cookie(c, f"{path}.cookie[{i}]", problems) for i, c in enumerate(r.get("cookie", list, []))]
    vendors_raw = r.get("vendors", list, [])
    vendors = [_vendor(v, f"{path}.vendors[{i}]", problems) for i, v in enumerate(vendors_raw)]
    site = SiteConfig(
        name=name,
        origins=tuple(o.rstrip("/") for o in origins),
        policy_version=policy_version,
        policy_url=r.get("policy_url", str, ""),
        languages=r.str_list("languages", ("nl", "en")),
        controller=r.get("controller", str, ""),
        consent_mode=r.get("consent_mode", bool, False),
        reopen_position=r.get("reopen_position", str, "bottom-left"),
        timezone=r.get("timezone", str, "Europe/Amsterdam"),
        stats_tokens=stats_tokens,
        cookies=cookies,
        cookie_details=tuple(c for c in cookie_details if c is not None),
        texts=texts,
        vendors=tuple(v for v in vendors if v is not None),
        currency=r.get("currency", str, "EUR"),
        goals=config_goals(r.get("goals", list, []), f"{path}.goals", problems),
        funnels=config_funnels(r.get("funnels", list, []), f"{path}.funnels", problems),
        share_frame_ancestors=r.str_list("share_frame_ancestors"),
        report_to=r.str_list("report_to"),
        report_schedule=r.str_list("report_schedule", ("weekly",)),
    )
    r.finish()
    if policy_version < 1:
        problems.append(f"{path}.policy_version: must be >= 1")
    if site.policy_url:  # it becomes a link in the banner: a javascript: URL would run there
        _check_url(site.policy_url, f"{path}.policy_url", problems)
    if site.reopen_position not in ("bottom-left", "bottom-right", "hidden"):
        problems.append(f"{path}.reopen_position: expected bottom-left, bottom-right or hidden")
    if not CURRENCY.match(site.currency):
        problems.append(f"{path}.currency: expected an ISO 4217 code like EUR or USD, got {site.currency!r}")
    _check_share_and_reports(site, path, problems)
    names = [v.name for v in site.vendors]
    for dup in {n for n in names if names.count(n) > 1}:
        problems.append(f"{path}.vendors: the name {dup!r} is used twice")
    return site


def parse_config(raw: dict[str, Any], base_dir: Path, env: dict[str, str] | None = None) -> GatewayConfig:
    """Builds a GatewayConfig from parsed TOML, or raises ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    top = _Reader(raw, "", problems)
    gw = _Reader(top.get("gateway", dict, {}, required=True), "gateway", problems)
    secret_keys, secret_source = _secret_keys(gw, env, problems)
    data_dir = base_dir / "consentgate-data"
    store = gw.get("store", str, "")
    if not store:
        store = f"chdb://{data_dir / 'chdb'}"
    elif store.startswith("chdb://"):
        if not Path(store[len("chdb://"):]).is_absolute():
            problems.append(f"gateway.store: a chdb:// store needs an absolute path, like chdb:///var/lib/consentgate, got {store!r}")
        else:
            data_dir = Path(store[len("chdb://"):])
    else:
        _check_url(store, "gateway.store", problems, ("http", "https", "chdb"))
    data_dir_raw = gw.get("data_dir", str, "")
    if data_dir_raw:
        data_dir = (base_dir / data_dir_raw).resolve()
    proxies = []
    for i, cidr in enumerate(gw.str_list("trusted_proxies")):
        try:
            proxies.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            problems.append(f"gateway.trusted_proxies[{i}]: not an IP network: {cidr!r}")
    geoip = gw.get("geoip_db", str, "")
    geoip_path = (base_dir / geoip).resolve() if geoip else None
    if geoip_path is not None and not geoip_path.is_file():
        problems.append(f"gateway.geoip_db: no such file: {geoip_path}")
    config = GatewayConfig(
        secret_keys=secret_keys,
        secret_source=secret_source,
        store=store,
        data_dir=data_dir,
        trusted_proxies=tuple(proxies),
        geoip_db=geoip_path,
        stats_tokens=gw.str_list("stats_tokens"),
        admin_tokens=gw.str_list("admin_tokens"),
        public_url=gw.get("public_url", str, "").rstrip("/"),
        # A server store is shared by several workers or gateways: each must hear the others' withdrawals.
        revocation_sync_interval=float(gw.get("revocation_sync_interval", (int, float),
                                              0.0 if store.startswith("chdb://") else 0.5)),
        **{name: _scalar(gw, name, kind) for name, kind in _GATEWAY_SCALARS},
        sites={},
    )
    gw.finish()
    if config.durability not in ("machine", "process"):
        problems.append(f"gateway.durability: expected machine (a 2xx waits until the record is on disk) or process, "
                        f"got {config.durability!r}")
    if not 0 <= config.commit_interval_ms <= 1000:
        problems.append("gateway.commit_interval_ms: must be between 0 and 1000")
    if config.cluster and (config.store.startswith("chdb://") or not config.cluster.replace("_", "").isalnum()):
        problems.append(f"gateway.cluster: needs a ClickHouse server store (http(s)://) and a name of letters, digits "
                        f"and '_' as in the server's remote_servers, got {config.cluster!r}")
    if not 0 <= config.revocation_sync_interval <= 1.0:
        problems.append("gateway.revocation_sync_interval: must be between 0 (off) and 1 second: withdrawals must "
                        "reach every gateway within 2 seconds")
    if config.max_spool_bytes < 1024 * 1024:
        problems.append("gateway.max_spool_bytes: must be at least 1048576 (1 MiB)")
    if not 0.1 <= config.stats_refresh_seconds <= 3600:
        problems.append("gateway.stats_refresh_seconds: must be between 0.1 and 3600 (seconds between the visit "
                        "builder's looks for new hits; default 30)")
    if config.stats_exact_below < 0:
        problems.append("gateway.stats_exact_below: must be >= 0 (ranges with fewer hits are computed exactly; "
                        "default 100000)")
    if config.bot_hits_per_minute < 0 or config.bot_zero_second_visits < 0:
        problems.append("gateway.bot_hits_per_minute and gateway.bot_zero_second_visits: must be >= 0 (0 turns the "
                        "signal off; defaults 300 and 20)")
    for i, token in enumerate(config.stats_tokens):
        _check_token(token, f"gateway.stats_tokens[{i}]", problems)
    if config.metrics_token:
        _check_token(config.metrics_token, "gateway.metrics_token", problems)
    for i, token in enumerate(config.admin_tokens):
        if len(token) < MIN_ADMIN_TOKEN_LENGTH:  # it reads and erases any visitor's data
            problems.append(f"gateway.admin_tokens[{i}]: too short ({len(token)} characters): an admin token needs at "
                            f"least {MIN_ADMIN_TOKEN_LENGTH} random characters; make one with {MAKE_SECRET}")
    if config.consent_rate_per_minute < 1:
        problems.append("gateway.consent_rate_per_minute: must be >= 1 (consent, withdraw and privacy requests per "
                        "client network per minute)")
    if config.public_url:
        _check_url(config.public_url, "gateway.public_url", problems)
    if config.access_log not in ("errors", "all", "off"):
        problems.append(f"gateway.access_log: expected errors, all or off, got {config.access_log!r}")
    if config.retention_days < 1:
        problems.append("gateway.retention_days: must be >= 1")
    if not 1 <= config.consent_max_age_days <= 395:
        problems.append("gateway.consent_max_age_days: must be between 1 and 395")
    elif config.consent_retention_days < config.consent_max_age_days:
        # A decision must stay provable for as long as its token can be relied on.
        problems.append(f"gateway.consent_retention_days: must be at least consent_max_age_days "
                        f"({config.consent_max_age_days}): proof of consent is kept as long as the consent is used")
    sites_raw = top.get("sites", dict, {})
    if not sites_raw:
        problems.append("sites: no site configured: add a [sites.NAME] table with origins = [...]")
    for name, site_raw in sites_raw.items():
        site = _site(name, site_raw, problems)
        if site is not None:
            config.sites[name] = site
    reports = top.get("reports", dict, None)
    if reports is not None:
        config = replace(config, reports=_reports(reports, problems))
    elif any(s.report_to for s in config.sites.values()):
        problems.append("reports: missing: a site has report_to, so add a [reports] table with smtp_host and from "
                        "(docs/stats.md, E-mail reports)")
    top.finish()
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_config(raw, path.resolve().parent, env)
