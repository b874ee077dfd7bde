"""One site's banner as one response: banner.js minified, with CSS, texts and site config inlined.

Built once per site when the gateway starts (rjsmin/rcssmin, no Node toolchain),
then served from memory as identity, gzip and (when the `brotli` package is
installed) brotli bytes under one ETag.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rcssmin
import rjsmin

from gateway.config import CATEGORIES, GatewayConfig, SiteConfig

try:  # optional: about 15% smaller than gzip; gzip alone meets the budget
    import brotli
except ImportError:  # pragma: no cover - depends on the install
    brotli = None

SOURCE_DIR = Path(__file__).resolve().parent
GZIP_BUDGET_BYTES = 7 * 1024  # the whole banner, as a browser downloads it
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class BannerVersion:
    """Exactly what the banner shows in one language (texts, categories, cookies, vendors, policy),
    named by the hash the banner sends with each decision: proof of the wording a visitor saw."""

    hash: str
    language: str
    content: str  # canonical JSON of what was shown; hashed as is


@dataclass(frozen=True)
class BannerBundle:
    js: bytes
    gzip: bytes
    brotli: bytes | None
    etag: str
    versions: dict[str, BannerVersion] = field(default_factory=dict)  # hash -> version, one per language


@dataclass(frozen=True)
class BannerSource:
    """The site-independent parts, read and minified once for all sites."""

    js: str
    css: str
    texts: dict[str, dict[str, str]]  # shipped translations: language -> key -> text

    @classmethod
    def load(cls, folder: Path = SOURCE_DIR) -> "BannerSource":
        texts = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((folder / "i18n").glob("*.json"))}
        return cls(
            js=rjsmin.jsmin((folder / "banner.js").read_text(encoding="utf-8")),
            css=rcssmin.cssmin((folder / "banner.css").read_text(encoding="utf-8")),
            texts=texts,
        )


def site_texts(site: SiteConfig, shipped: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The texts of each of the site's languages: the shipped translation (English for a language
    consentgate does not ship) with the site's own `texts.<language>` overrides on top."""
    languages = site.languages or (FALLBACK_LANGUAGE,)
    return {lang: {**shipped.get(lang, shipped[FALLBACK_LANGUAGE]), **site.texts.get(lang, {})} for lang in languages}


def site_cookies(site: SiteConfig) -> dict[str, list[str]]:
    """Cookie names per consent category, from the short lists and the detailed `[[sites.X.cookie]]` form alike:
    the banner lists them and expires those of a refused category."""
    out: dict[str, list[str]] = {c: list(names) for c, names in site.cookies.items()}
    for cookie in site.cookie_details:
        if cookie.category in CATEGORIES and cookie.name not in out.setdefault(cookie.category, []):
            out[cookie.category].append(cookie.name)
    return {c: names for c, names in out.items() if names}


def banner_config(site: SiteConfig, shipped: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What the browser may see of the site's config: never a vendor's URL or secrets, only its name."""
    return {
        "site": site.name,
        "policy_version": site.policy_version,
        "policy_url": site.policy_url,
        "controller": site.controller,
        "consent_mode": site.consent_mode,
        "reopen_position": site.reopen_position,
        "languages": list(site.languages or (FALLBACK_LANGUAGE,)),
        "cookies": site_cookies(site),
        "vendors": {c: [v.name for v in site.vendors if v.category == c] for c in CATEGORIES
                    if any(v.category == c for v in site.vendors)},
        "texts": site_texts(site, shipped),
    }


def shown_versions(config: dict[str, Any]) -> dict[str, BannerVersion]:
    """One version per language, built from the very config object the bundle inlines: everything
    the banner renders in that language (its `controller` fallback is the page's host, kept as `page`)."""
    versions = {}
    for language, texts in config["texts"].items():
        shown = {
            "site": config["site"], "language": language, "texts": texts,
            "categories": ["necessary", *CATEGORIES], "cookies": config["cookies"], "vendors": config["vendors"],
            "controller": config["controller"], "policy_version": config["policy_version"],
            "policy_url": config["policy_url"],
        }
        content = json.dumps(shown, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]  # 128 bits: no collisions in practice
        versions[digest] = BannerVersion(digest, language, content)
    return versions


def _js_literal(value: Any) -> str:
    # Compact JSON is a JavaScript literal; "<\/" keeps a "</script>" in a text from ending an inline copy.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def build_bundle(site: SiteConfig, source: BannerSource) -> BannerBundle:
    config = banner_config(site, source.texts)
    versions = shown_versions(config)
    config["versions"] = {v.language: v.hash for v in versions.values()}  # the banner sends the one it showed
    js = (source.js.replace("CONSENTGATE_CSS", _js_literal(source.css))
          .replace("CONSENTGATE_CONFIG", _js_literal(config))).encode("utf-8")
    return BannerBundle(
        js=js,
        gzip=gzip.compress(js, compresslevel=9, mtime=0),
        brotli=brotli.compress(js, quality=11) if brotli is not None else None,
        etag='W/"' + hashlib.sha256(js).hexdigest()[:20] + '"',
        versions=versions,
    )


def build_bundles(config: GatewayConfig, source: BannerSource | None = None) -> dict[str, BannerBundle]:
    source = source or BannerSource.load()
    return {name: build_bundle(site, source) for name, site in config.sites.items()}
