"""What the gateway keeps: one frozen, slotted dataclass per kind of record.

A record is built once, where it happens (the collect pipeline, a consent, a
delivery, a privacy request), spooled as one JSON line (orjson writes dataclasses
natively) and inserted into the table named by its class. The tables' column
lists (analytics/schema.py), the fields a vendor may receive and the insert
format all come from these classes, so a field is named in one place: a
misspelt keyword is a TypeError where the record is built, and a field the
store's table lacks is an error at start-up (`check_columns`) and at insert
(the insert does not skip unknown fields), never a silently empty column.

`kind` is the last field of every record and never a constructor argument:
it routes a spooled line to its table without parsing it (analytics/spool.py
`kind_mark`). In the tables it is an EPHEMERAL column, accepted and not stored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One page view or event, as stored in `events` (no full IP: `ip` is truncated)."""

    TABLE: ClassVar[str] = "events"
    ID: ClassVar[str] = "event_id"
    event_id: str
    site: str
    timestamp: float  # seconds since the epoch, millisecond precision
    type: str  # pageview / event
    name: str
    visitor_id: str  # the consent id
    url: str
    hostname: str
    path: str
    referrer: str
    referrer_host: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    browser: str
    browser_version: str
    os: str
    device: str
    country: str
    ip: str
    props: dict[str, str]
    kind: str = field(default="event", init=False)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One decision (grant or withdraw) with what the visitor saw: the proof of consent (art. 7(1))."""

    TABLE: ClassVar[str] = "consents"
    ID: ClassVar[str] = "record_id"
    record_id: str
    site: str
    timestamp: float
    consent_id: str
    action: str  # grant / withdraw / erase / operator_erase / ...
    method: str
    preferences: int
    analytics: int
    marketing: int
    policy_version: int
    language: str
    ip: str  # truncated
    browser: str
    os: str
    gpc: int
    banner_version: str
    page: str
    kind: str = field(default="consent", init=False)


@dataclass(frozen=True, slots=True)
class BannerVersionRecord:
    """The wording, categories and vendors of one banner version, by its hash."""

    TABLE: ClassVar[str] = "banner_versions"
    ID: ClassVar[str] = "record_id"
    record_id: str
    site: str
    hash: str
    language: str
    content: str
    first_seen: float
    timestamp: float
    kind: str = field(default="banner_version", init=False)


@dataclass(frozen=True, slots=True)
class ForwardRecord:
    """Who received which hit and how it went (the recipients a visitor may ask for); no hit content."""

    TABLE: ClassVar[str] = "forwards"
    ID: ClassVar[str] = "record_id"
    record_id: str
    site: str
    timestamp: float
    consent_id: str
    event_id: str
    vendor: str
    status: str
    attempts: int
    kind: str = field(default="forward", init=False)


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """Who erased a visitor and how many rows per table: a hash of the consent id, never the data."""

    TABLE: ClassVar[str] = "erasures"
    ID: ClassVar[str] = "record_id"
    record_id: str
    site: str
    timestamp: float
    consent_hash: str
    erased_by: str
    rows: dict[str, int]
    kind: str = field(default="erasure", init=False)


@dataclass(frozen=True, slots=True)
class RestrictionRecord:
    """A restriction of processing (art. 18) or its lifting; the latest per consent id is in force."""

    TABLE: ClassVar[str] = "restrictions"
    ID: ClassVar[str] = "record_id"
    record_id: str
    site: str
    timestamp: float
    consent_id: str
    action: str  # restrict / lift
    requested_by: str
    kind: str = field(default="restriction", init=False)


Record = EventRecord | ConsentRecord | BannerVersionRecord | ForwardRecord | ErasureRecord | RestrictionRecord
# In this order the batch writer inserts a batch's kinds: a record comes after what it refers to, so a
# reader never sees a decision whose banner version (its wording) is not in the store yet.
RECORD_TYPES: tuple[type, ...] = (BannerVersionRecord, ConsentRecord, EventRecord, ForwardRecord, ErasureRecord,
                                  RestrictionRecord)
KIND_FIELD = "kind"


def kind_of_type(record_type: type) -> str:
    return record_type.__dataclass_fields__[KIND_FIELD].default  # type: ignore[attr-defined]


def columns_of(record_type: type) -> tuple[str, ...]:
    """The table columns a record fills: its fields without `kind`, in order."""
    return tuple(f.name for f in dataclasses.fields(record_type) if f.name != KIND_FIELD)


# The hit fields a vendor may be sent (a vendor's `fields = [...]` picks from these; all when it names none):
# the page and its source, the device, the country, the truncated IP, and the User-Agent the delivery
# carries. The event's id, type, name and time always go; the site, the visitor id and props never do.
VENDOR_FIELDS: tuple[str, ...] = (*(c for c in columns_of(EventRecord) if c not in (
    "event_id", "site", "timestamp", "type", "name", "visitor_id", "props")), "user_agent")


def check_columns(table_columns: dict[str, set[str]]) -> None:
    """Raises when a table of the store lacks a field its record writes (a schema that drifted from the code)."""
    problems = []
    for record_type in RECORD_TYPES:
        have = table_columns.get(record_type.TABLE, set())  # type: ignore[attr-defined]
        missing = [c for c in (*columns_of(record_type), KIND_FIELD) if c not in have]
        if missing:
            problems.append(f"{record_type.TABLE} lacks {', '.join(missing)}")  # type: ignore[attr-defined]
    if problems:
        raise RuntimeError("the store's tables do not match the records this gateway writes: "
                           + "; ".join(problems) + ". Run the migrations (start the gateway once) or check the store URL.")


def as_dict(record: Any) -> dict[str, Any]:
    """A record's fields by name, `kind` included (what its spooled line holds)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
