"""Versioned schema migrations for database `consentgate`.

Each migration is (version, statements). Applied migrations are recorded in
`schema_migrations`, so a start applies only what is new. Statements take
`{db}` and `{ttl_days}`; the same SQL runs on chDB and on a ClickHouse server.
Tables are ordered site-first (small sites stay fast next to big ones) and
partitioned by month, so retention drops whole parts.
"""
from __future__ import annotations

from analytics.records import KIND_FIELD, RECORD_TYPES, columns_of, kind_of_type

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
    # Shared links and e-mail reports (issue 12). `shared_links` is a log: a `create` row, later perhaps a
    # `revoke` row (same link_id and secret_hash); only a SHA-256 of the link's secret and an scrypt hash of
    # its password are kept. `report_runs` remembers which period's report went out, so a restart or a
    # second worker does not send it again. No visitor data in either: no TTL.
    (7, [
        """CREATE TABLE IF NOT EXISTS {db}.shared_links (
            link_id String,
            site LowCardinality(String),
            timestamp DateTime64(3, 'UTC'),
            action LowCardinality(String),
            secret_hash String,
            password_hash String,
            label String
        ) ENGINE = MergeTree
        ORDER BY (site, link_id, timestamp)""",
        """CREATE TABLE IF NOT EXISTS {db}.report_runs (
            site LowCardinality(String),
            period LowCardinality(String),
            period_start Date,
            timestamp DateTime64(3, 'UTC'),
            recipients UInt32
        ) ENGINE = MergeTree
        ORDER BY (site, period, period_start)""",
    ]),
    # Goals and funnels edited from the dashboard (issue 12; analytics/goals.py): one row per change, the
    # newest row of an id wins (`deleted` = 1 removes it). Definitions only, no visitor data: no TTL.
    (8, [
        """CREATE TABLE IF NOT EXISTS {db}.goals (
            site LowCardinality(String),
            kind LowCardinality(String),
            id String,
            definition String,
            deleted UInt8,
            timestamp DateTime64(3, 'UTC')
        ) ENGINE = MergeTree
        ORDER BY (site, kind, id, timestamp)""",
    ]),
    # Typed records (analytics/records.py): each spooled line names its kind in a `kind` field. The tables
    # accept it as an EPHEMERAL column (not stored), so inserts no longer skip unknown fields: a field a
    # table lacks is an error, never a silently empty column.
    (9, [
        f"ALTER TABLE {{db}}.{t.TABLE} ADD COLUMN IF NOT EXISTS {KIND_FIELD} String EPHEMERAL ''"  # type: ignore[attr-defined]
        for t in RECORD_TYPES
    ]),
    # Filtered speed (issue 12): each visit keeps its hits as arrays (time after the visit's start, type, path,
    # event name, country, browser, os, device, props; analytics/visits.py HIT_ARRAYS), so ranges with hit
    # filters, goals and funnels read one row per visit instead of sessionizing the hits. `layout` says what a
    # day's build wrote: days built before this migration (layout 0) are built again, and read from the hits
    # until then. Paths and names are dictionary-encoded (LowCardinality): a filter compares each visit's hits
    # 4x faster than as plain strings.
    (10, [
        *(f"ALTER TABLE {{db}}.visits ADD COLUMN IF NOT EXISTS {column} {kind}" for column, kind in (
            ("hit_ms", "Array(UInt32)"), ("hit_type", "Array(LowCardinality(String))"),
            ("hit_path", "Array(LowCardinality(String))"), ("hit_name", "Array(LowCardinality(String))"),
            ("hit_country", "Array(LowCardinality(String))"),
            ("hit_browser", "Array(LowCardinality(String))"), ("hit_os", "Array(LowCardinality(String))"),
            ("hit_device", "Array(LowCardinality(String))"), ("hit_props", "Array(Map(String, String))"))),
        "ALTER TABLE {db}.visit_days ADD COLUMN IF NOT EXISTS layout UInt16 DEFAULT 0",
    ]),
    # Several gateways (workers, or machines on one ClickHouse server) each run the report scheduler. Before
    # sending, each claims the period; the earliest live claim (the server's clock) sends, so an e-mail
    # goes out once. A claim lives 15 minutes: a gateway that claimed and died is replaced after that.
    (11, [
        """CREATE TABLE IF NOT EXISTS {db}.report_claims (
            site LowCardinality(String),
            period LowCardinality(String),
            period_start Date,
            claim UUID,
            claimed_at DateTime64(6, 'UTC') DEFAULT now64(6)
        ) ENGINE = MergeTree
        ORDER BY (site, period, period_start, claimed_at)
        TTL toDateTime(claimed_at) + INTERVAL 90 DAY""",
    ]),
    # Each visit's hits as numbers too (layout 3): sipHash64 of a pageview's type and path, or of an event's type
    # and name. A page goal, event goal or funnel step that is an equality compares 64-bit numbers instead of
    # dictionary strings: a 3-step funnel's levels 3x faster on the 10M-event store (277 against 95 ms).
    (12, [
        "ALTER TABLE {db}.visits ADD COLUMN IF NOT EXISTS hit_key Array(UInt64)",
    ]),
]

# Tables derived from `events` that hold visitor data: retention applies to them as well.
DERIVED_TABLES: tuple[str, ...] = ("visits", "hit_hours")
# What operators and marketing set up (shared links, sent reports, goals and funnels edited in the
# dashboard): no visitor data, no retention, and a backup must keep them.
SETTINGS_TABLES: tuple[str, ...] = ("shared_links", "report_runs", "goals")

# Each spooled record kind lands in one table (analytics/records.py); the id column makes replays idempotent.
# The order of RECORD_TYPES is the order the batch writer inserts a batch's kinds (referenced records first).
TABLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    kind_of_type(t): (t.TABLE, columns_of(t), t.ID) for t in RECORD_TYPES  # type: ignore[attr-defined]
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
