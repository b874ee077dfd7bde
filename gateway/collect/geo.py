"""GeoIP country lookup on the full client IP, in memory, before truncation."""
from __future__ import annotations

from pathlib import Path

import maxminddb


class CountryLookup:
    """Reads country ISO codes from a MaxMind database (City or Country; maxminddb reads both)."""

    def __init__(self, path: Path | None) -> None:
        self._reader = maxminddb.open_database(str(path)) if path else None

    def country(self, ip: str) -> str:
        if self._reader is None or not ip:
            return ""
        try:
            record = self._reader.get(ip)
        except ValueError:
            return ""
        if not isinstance(record, dict):
            return ""
        country = record.get("country") or record.get("registered_country") or {}
        return str(country.get("iso_code", "")) if isinstance(country, dict) else ""

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
