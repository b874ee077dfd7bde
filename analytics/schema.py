"""Versioned schema migrations for database `consentgate`.

Each migration is (version, statements). Applied migrations are recorded in
`schema_migrations`, so a start applies only what is new. Statements take
`{db}` and `{ttl_days}`; the same SQL runs on chDB and on a ClickHouse server.
Tables are ordered site-first (small sites stay fast next to big ones) and
partitioned by month, so retention drops whole parts.
"""
from __future__ import annotations

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "site", "timestamp", "type", "name", "visitor_id", "url", "hostname",
    "path", "referrer", "referrer_host", "utm_source", "utm_medium", "utm_campaign",
    "browser", "browser_version", "os", "device", "country", "ip", "props",
)
CONSENT_COLUMNS: tuple[str, ...] = (
    "record_id", "site", "timestamp", "consent_id", "action", "method", "preferences",
    "analytics", "marketing", "policy_version", "language", "ip", "browser", "os", "gpc",
    "banner_version", "page",
)
BANNER_VERSION_COLUMNS: tuple[str, ...] = (
    "record_id", "site", "hash", "language", "content", "first_seen", "timestamp",
)
FORWARD_COLUMNS: tuple[str, ...] = (
    "record_id", "site", "timestamp", "consent_id", "event_id", "vendor", "status", "attempts",
)
ERASURE_COLUMNS: tuple[str, ...] = ("record_id", "site", "timestamp", "consent_hash", "erased_by", "rows")
RESTRICTION_COLUMNS: tuple[str, ...] = ("record_id", "site", "timestamp", "consent_id", "action", "requested_by")

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS {db}.events (
            event_id UUID,
            site LowCardinality(String),
            timestamp DateTime64(3, 'UTC'),
            type LowCardinality(String),
            name String,
            visitor_id String,
            url String,
            hostname LowCardinality(String),
            path String,
            referrer String,
            referrer_host LowCardinality(String),
            utm_source LowCardinality(String),
            utm_medium LowCardinality(String),
            utm_campaign String,
            browser LowCardinality(String),
            browser_version LowCardinality(String),
            os LowCardinality(String),
            device LowCardinality(String),
            country LowCardinality(String),
            ip String
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (site, toDate(timestamp), visitor_id, timestamp)
        TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY""",
        """CREATE TABLE IF NOT EXISTS {db}.consents (
            record_id UUID,
            site LowCardinality(String),
            timestamp DateTime64(3, 'UTC'),
            consent_id String,
            action LowCardinality(String),
            method LowCardinality(String),
            preferences UInt8,
            analytics UInt8,
            marketing UInt8,
            policy_version UInt32,
            language LowCardinality(String),
            ip String,
            browser LowCardinality(String),
            os LowCardinality(String),
            gpc UInt8
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (site, timestamp, consent_id)
        TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY""",
        """CREATE TABLE IF NOT EXISTS {db}.forwards (
            record_id UUID,
            site LowCardinality(String),
            timestamp DateTime64(3, 'UTC'),
            consent_id String,
            event_id UUID,
            vendor LowCardinality(String),
            status LowCardinality(String),
            attempts UInt16
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (site, timestamp, consent_id)
        TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY""",
    ]),
    # Stats count and group visitors by this 8-byte hash, computed on insert, instead of the
    # 32-character visitor_id: 3-6x faster scans. It lives in `events` itself, so erasing a
    # visitor's rows erases it too; `SELECT *` leaves MATERIALIZED columns out.
    (2, [
        "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS visitor_hash UInt64 MATERIALIZED sipHash64(visitor_id)",
        "ALTER TABLE {db}.events MATERIALIZE COLUMN visitor_hash",
    ]),
    # One row per visit of closed days (analytics/visits.py builds them from `events`), so stats of
    # large ranges read a row per visit instead of sessionizing millions of hits. `build` tells the
    # current rows of a day (listed in `visit_days`) from those a rebuild is replacing. Erasure deletes
    # a visitor's rows here too (by visitor_hash); `timestamp` (the visit's start) carries the TTL.
    (3, [
        """CREATE TABLE IF NOT EXISTS {db}.visits (
            site LowCardinality(String),
            timestamp DateTime64(3, 'UTC'),
            visitor_hash UInt64,
            duration_ms UInt32,
            hits UInt32,
            pageviews UInt32,
            entry_page String,
            exit_page String,
            referrer_host LowCardinality(String),
            source LowCardinality(String),
            utm_source LowCardinality(String),
            utm_medium LowCardinality(String),
            utm_campaign String,
            build UInt64
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (site, toDate(timestamp), visitor_hash, timestamp)
        TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY""",
        # Which build of each (site, UTC day) is current, up to when it holds the day (`until`: the day's
        # end, or the live cut of an open day) and how many hits it held then: a changed count (late
        # inserts, erasure, retention) makes the day due for a rebuild.
        """CREATE TABLE IF NOT EXISTS {db}.visit_days (
            site LowCardinality(String),
            day Date,
            hits UInt64,
            until DateTime64(3, 'UTC'),
            closed UInt8,
            build UInt64,
            built_at DateTime64(3, 'UTC')
        ) ENGINE = MergeTree
        ORDER BY (site, day)""",
        # Per hour of closed days, per dimension value (path, browser, os, device, country, event name;
        # '' for all hits): pageviews (events for `event`) and an HLL sketch of the visitors, so hit
        # breakdowns and timeseries of large ranges merge hours instead of scanning hits. The sketch holds
        # no visitor id; after an erasure the builder rebuilds the day from the remaining hits.
        """CREATE TABLE IF NOT EXISTS {db}.hit_hours (
            site LowCardinality(String),
            timestamp DateTime('UTC'),
            dimension LowCardinality(String),
            value String,
            hits UInt64,
            visitors AggregateFunction(uniqCombined64(12), UInt64),
            build UInt64
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (site, dimension, timestamp, value)
        TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY""",
    ]),
    # Proof of what the visitor saw (issue 9): each consent row names the banner version it was given on
    # (a hash of the texts, categories, cookies, vendors and policy shown; 'unknown' when the banner sent
    # none the gateway served) and the page (cleaned like collect's URLs). `banner_versions` resolves a
    # hash to its wording. A gateway records a version again on its first use each day, so `timestamp`
    # (last recorded) keeps a version alive as long as decisions made on it are kept; the aggregating
    # engine merges those rows into one per (site, hash), and reads GROUP BY (site, hash) before merges.
    (4, [
        "ALTER TABLE {db}.consents ADD COLUMN IF NOT EXISTS banner_version LowCardinality(String) DEFAULT ''",
        "ALTER TABLE {db}.consents ADD COLUMN IF NOT EXISTS page String DEFAULT ''",
        """CREATE TABLE IF NOT EXISTS {db}.banner_versions (
            site LowCardinality(String),
            hash String,
            language SimpleAggregateFunction(any, String),
            content SimpleAggregateFunction(any, String),
            first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
            timestamp SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
            record_id SimpleAggregateFunction(any, UUID)
        ) ENGINE = AggregatingMergeTree
        ORDER BY (site, hash)
        TTL toDateTime(timestamp) + INTERVAL {consent_ttl_days} DAY""",
    ]),
    # Privacy rights (issue 9): `erasures` logs each erasure (who asked, how many rows per table) with only
    # a SHA-256 of the consent id, never the erased data; `restrictions` holds art. 18 restrictions and
    # their lifting (the latest action per consent id wins). Both are kept like the proof of consent.
    (5, [
        """CREATE TABLE IF NOT EXISTS {db}.erasures (
            record_id UUID,
            site LowCardinality(String),
            timestamp DateTime64(3, 'UTC'),
            consent_hash String,
            erased_by LowCardinality(String),
            rows Map(String, UInt64)
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (site, timestamp)
        TTL toDateTime(timestamp) + INTERVAL {consent_ttl_days} DAY""",
        """CREATE TABLE IF NOT EXISTS {db}.restrictions (
            record_id UUID,
            site LowCardinality(String),
            timestamp DateTime64(3, 'UTC'),
            consent_id String,
            action LowCardinality(String),
            requested_by LowCardinality(String)
        ) ENGINE = MergeTree
        ORDER BY (site, consent_id, timestamp)
        TTL toDateTime(timestamp) + INTERVAL {consent_ttl_days} DAY""",
    ]),
    # Custom event properties (issue 12): at most 30 string pairs a hit, bounded and screened by collect.
    (6, [
        "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS props Map(String, String)",
    ]),
]

# Tables derived from `events` that hold visitor data: retention applies to them as well.
DERIVED_TABLES: tuple[str, ...] = ("visits", "hit_hours")

# Each spooled record kind lands in one table; the id column makes replays idempotent.
# In this order the batch writer inserts a batch's kinds: a record comes after what it refers to, so a
# reader never sees a decision whose banner version (its wording) is not in the store yet.
TABLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "banner_version": ("banner_versions", BANNER_VERSION_COLUMNS, "record_id"),
    "consent": ("consents", CONSENT_COLUMNS, "record_id"),
    "event": ("events", EVENT_COLUMNS, "event_id"),
    "forward": ("forwards", FORWARD_COLUMNS, "record_id"),
    "erasure": ("erasures", ERASURE_COLUMNS, "record_id"),
    "restriction": ("restrictions", RESTRICTION_COLUMNS, "record_id"),
}
# Where a visitor's own rows are, by the column naming them (analytics/erasure.py erases them all).
# `visits` knows a visitor only by the hash of the id; `hit_hours` holds no visitor id (a day is rebuilt
# from the remaining hits); `consents` are kept after an erasure as proof of consent (art. 17(3)(b)).
VISITOR_TABLES: dict[str, str] = {
    "events": "visitor_id",
    "forwards": "consent_id",
    "visits": "visitor_hash",
    "restrictions": "consent_id",
}
# Proof of consent (GDPR art. 7(1)) is kept for consent_retention_days; every other table for retention_days.
CONSENT_TABLES: tuple[str, ...] = ("consents", "banner_versions", "erasures", "restrictions")
