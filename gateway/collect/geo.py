"""GeoIP country lookup on the full client IP, in memory, before truncation."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import maxminddb

log = logging.getLogger("consentgate.geo")
FAILURE_LOG_SECONDS = 60.0  # at most one log line per this many seconds while lookups fail


class CountryLookup:
    """Reads country ISO codes from a MaxMind database (City or Country; maxminddb reads both)."""

    def __init__(self, path: Path | None) -> None:
        self._reader = maxminddb.open_database(str(path)) if path else None
        self._failures = 0  # lookups failed since the last log line
        self._logged_at: float | None = None
        self._lock = threading.Lock()

    def country(self, ip: str) -> str:
        if self._reader is None or not ip:
            return ""
        try:
            record = self._reader.get(ip)
        except Exception as exc:  # noqa: BLE001 - a hit without a country beats a lost hit
            # maxminddb's messages name the full address ("Error looking up <ip>. ..."): log the type only.
            self._failed(type(exc).__name__)
            return ""
        if not isinstance(record, dict):
            return ""
        country = record.get("country") or record.get("registered_country") or {}
        return str(country.get("iso_code", "")) if isinstance(country, dict) else ""

    def _failed(self, kind: str) -> None:
        """Counts a failed lookup; logs one line per FAILURE_LOG_SECONDS (a corrupt database fails every hit)."""
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._logged_at is not None and now - self._logged_at < FAILURE_LOG_SECONDS:
                return
            failures, self._failures, self._logged_at = self._failures, 0, now
        log.error("GeoIP lookup failed (%s), %d time(s) since the last report: hits are stored without a country",
                  kind, failures)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
