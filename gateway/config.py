"""The one config file: TOML, validated strictly so a typo is an error that names its key."""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SECRET_ENV = "CONSENTGATE_SECRET_KEY"
VENDOR_TYPES = ("webhook", "ga4", "meta_capi")
CATEGORIES = ("preferences", "analytics", "marketing")
# Hit fields a vendor may be sent (`fields = [...]`); event id, type, name and time always go.
VENDOR_FIELDS = ("url", "hostname", "path", "referrer", "referrer_host", "utm_source", "utm_medium",
                 "utm_campaign", "browser", "browser_version", "os", "device", "country", "ip", "user_agent")


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
    cookies: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category -> cookie names
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # language -> key -> text
    vendors: tuple[VendorConfig, ...] = ()


@dataclass(frozen=True)
class GatewayConfig:
    secret_keys: tuple[str, ...]  # newest last, as itsdangerous wants them
    store: str
    data_dir: Path
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    geoip_db: Path | None = None
    stats_tokens: tuple[str, ...] = ()
    retention_days: int = 395
    consent_max_age_days: int = 182
    max_body_bytes: int = 64 * 1024
    batch_size: int = 5000
    flush_interval: float = 1.0
    public_url: str = ""  # how browsers reach the gateway; default: the request's own origin
    access_log: str = "errors"  # errors (4xx/5xx only), all, off; nginx in front usually logs every request
    sites: dict[str, SiteConfig] = field(default_factory=dict)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"


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
    if parts.scheme not in schemes or not parts.netloc:
        problems.append(f"{key}: expected an {' or '.join(schemes)} URL, got {url!r}")


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
    )
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
    if vendor.max_concurrency < 1 or vendor.breaker_failures < 1:
        problems.append(f"{path}: max_concurrency and breaker_failures must be >= 1")
    for key in {"ga4": ("measurement_id", "api_secret"), "meta_capi": ("pixel_id", "access_token")}.get(vtype, ()):
        if not getattr(vendor, key):
            problems.append(f"{path}.{key}: missing (required for type {vtype!r}): copy it from the vendor's console")
    for i, name in enumerate(vendor.fields):
        if name not in VENDOR_FIELDS:
            problems.append(f"{path}.fields[{i}]: unknown field {name!r}: use {', '.join(VENDOR_FIELDS)}")
    return vendor


def _site(name: str, raw: Any, problems: list[str]) -> SiteConfig | None:
    path = f"sites.{name}"
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a table")
        return None
    if not name.replace("-", "").replace("_", "").isalnum():
        problems.append(f"{path}: a site name may hold only letters, digits, '-' and '_'")
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
        cookies=cookies,
        texts=texts,
        vendors=tuple(v for v in vendors if v is not None),
    )
    r.finish()
    if policy_version < 1:
        problems.append(f"{path}.policy_version: must be >= 1")
    if site.reopen_position not in ("bottom-left", "bottom-right", "hidden"):
        problems.append(f"{path}.reopen_position: expected bottom-left, bottom-right or hidden")
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
    secret = gw.get("secret_key", str, "") or env.get(SECRET_ENV, "")
    old = gw.str_list("old_secret_keys")
    if not secret:
        problems.append(f"gateway.secret_key: missing: set it in the config or in the {SECRET_ENV} environment variable")
    elif len(secret) < 16:
        problems.append("gateway.secret_key: too short: use at least 16 random characters")
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
        secret_keys=(*old, secret),
        store=store,
        data_dir=data_dir,
        trusted_proxies=tuple(proxies),
        geoip_db=geoip_path,
        stats_tokens=gw.str_list("stats_tokens"),
        retention_days=gw.get("retention_days", int, 395),
        consent_max_age_days=gw.get("consent_max_age_days", int, 182),
        max_body_bytes=gw.get("max_body_bytes", int, 64 * 1024),
        batch_size=gw.get("batch_size", int, 5000),
        flush_interval=float(gw.get("flush_interval", (int, float), 1.0)),
        public_url=gw.get("public_url", str, "").rstrip("/"),
        access_log=gw.get("access_log", str, "errors"),
        sites={},
    )
    gw.finish()
    if config.access_log not in ("errors", "all", "off"):
        problems.append(f"gateway.access_log: expected errors, all or off, got {config.access_log!r}")
    if config.retention_days < 1:
        problems.append("gateway.retention_days: must be >= 1")
    if not 1 <= config.consent_max_age_days <= 395:
        problems.append("gateway.consent_max_age_days: must be between 1 and 395")
    sites_raw = top.get("sites", dict, {})
    if not sites_raw:
        problems.append("sites: no site configured: add a [sites.NAME] table with origins = [...]")
    for name, site_raw in sites_raw.items():
        site = _site(name, site_raw, problems)
        if site is not None:
            config.sites[name] = site
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
