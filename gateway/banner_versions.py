"""Proof of what a visitor saw: the banner version and page of each decision.

The banner sends the hash of the version it rendered (banner/bundle.py computes one per language
from the object it inlines). The gateway keeps it only when it is one it serves for that site
and language, else records `unknown`: a script on the page cannot choose the proof. Each version's
wording goes to `banner_versions` through the spool, once per gateway process and UTC day, so
it stays resolvable for as long as the decisions made on it are kept.
"""
from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

from banner.bundle import BannerBundle, BannerVersion
from gateway.bodies import optional_str
from analytics.records import BannerVersionRecord
from gateway.collect.hit import MAX_URL, parse_page_url
from gateway.config import SiteConfig

if TYPE_CHECKING:
    from gateway.services import Services

UNKNOWN_VERSION = "unknown"
MAX_VERSION_LENGTH = 64
DAY_MS = 86_400_000


def served_version(bundle: BannerBundle | None, claimed: str, language: str) -> BannerVersion | None:
    """The version the banner claims to have shown, if this gateway serves it for the site in that language."""
    version = bundle.versions.get(claimed) if bundle is not None and claimed else None
    return version if version is not None and version.language == language else None


def clean_page(value: str) -> str:
    """The page as collect keeps URLs: scheme, host, port and path; '' when it is not an http(s) URL."""
    page = parse_page_url(value) if value else None
    return page.clean if page is not None else ""


def version_record(site: str, version: BannerVersion, now_ms: int) -> BannerVersionRecord:
    return BannerVersionRecord(record_id=str(uuid.uuid4()), site=site, hash=version.hash, language=version.language,
                               content=version.content, first_seen=now_ms / 1000, timestamp=now_ms / 1000)


class BannerVersionLog:
    """Which versions this process has already sent to the store today (a repeat costs a merged row)."""

    def __init__(self) -> None:
        self._recorded: dict[tuple[str, str], int] = {}  # (site, hash) -> UTC day number
        self._lock = threading.Lock()

    def due(self, site: str, version_hash: str, now_ms: int) -> bool:
        day = now_ms // DAY_MS
        with self._lock:
            if self._recorded.get((site, version_hash)) == day:
                return False
            self._recorded[(site, version_hash)] = day
            return True


def decision_proof(services: Services, site: SiteConfig, body: dict[str, Any], language: str,
                   now_ms: int) -> dict[str, str]:
    """The `banner_version` and `page` columns of a decision; spools the version's wording when due."""
    claimed = optional_str(body, "banner_version", MAX_VERSION_LENGTH)
    page = clean_page(optional_str(body, "page", MAX_URL))
    version = served_version(services.banners.get(site.name), claimed, language)
    if version is not None and services.banner_log.due(site.name, version.hash, now_ms):
        services.spool.append(version_record(site.name, version, now_ms))  # before the decision that names it
    return {"banner_version": version.hash if version is not None else UNKNOWN_VERSION, "page": page}
