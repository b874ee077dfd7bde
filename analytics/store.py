"""The ClickHouse store, through clickhouse-connect only: `chdb://` embedded, `http(s)://` a server."""
from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect

from analytics.cluster import LOCAL_SUFFIX, on_cluster
from analytics.records import KIND_FIELD, Record, check_columns, columns_of
from analytics.schema import CONSENT_TABLES, DERIVED_TABLES, MIGRATIONS, TABLES

log = logging.getLogger("consentgate.store")
DATABASE = "consentgate"


class StoreUnavailable(Exception):
    """The store could not be reached or refused a write; the spool keeps the records."""


def connect(url: str) -> Any:
    """A clickhouse-connect client for a store URL."""
    if url.startswith("chdb://"):
        path = url[len("chdb://"):]
        Path(path).mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        # Backstop for a Store nobody closed: the engine must stop before the interpreter finalizes, or a
        # daemon thread still inside a query crashes the process at exit (exit 139). atexit runs after the
        # non-daemon threads are joined and before finalization; close() waits out a query in flight.
        atexit.register(client.close)
        return client
    parts = urlsplit(url)
    database = parts.path.strip("/") or DATABASE
    return clickhouse_connect.get_client(
        host=parts.hostname or "localhost",
        port=parts.port or (8443 if parts.scheme == "https" else 8123),
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        secure=parts.scheme == "https",
        database=database,
        # Only a server gets these: chDB already inserts synchronously in-process.
        settings={"async_insert": 1, "wait_for_async_insert": 1},
    )


def _close_client(client: Any) -> None:
    atexit.unregister(client.close)
    client.close()


def _to_datetime(value: Any) -> datetime:
    # clickhouse-connect's chDB backend wants datetime objects, not strings.
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


DELETE_TIMEOUT = 300.0  # seconds a delete may take to apply before Store.delete gives up


class Store:
    """Schema, inserts and reads of database `consentgate`. Thread-safe: chDB sessions are."""

    def __init__(self, url: str, retention_days: int = 395, client: Any = None, database: str | None = None,
                 consent_retention_days: int = 1825) -> None:
        self.url = url
        self.retention_days = retention_days
        self.consent_retention_days = consent_retention_days
        # One chDB path per process: tests that share a path give each test its own database.
        self.db = database or (DATABASE if url.startswith("chdb://") else (urlsplit(url).path.strip("/") or DATABASE))
        self._given = client  # used by every thread when given
        self._clients: dict[int, tuple[threading.Thread, Any]] = {}  # thread id -> (thread, its own client)
        self._closed = False
        self._lock = threading.Lock()
        # durability = "machine": a part must be on disk before the spool forgets its records.
        self.fsync_inserts = False
        self.cluster = ""  # [gateway] cluster: migrations run ON CLUSTER (analytics/cluster.py)

    @property
    def client(self) -> Any:
        """The calling thread's own client. One client runs one query at a time (clickhouse-connect locks a
        chDB handle; a server session refuses a second query), so a shared one made every stats request
        wait behind the writer's inserts, the visit builder and each other; chDB's handles to the one
        engine run queries side by side. Clients of threads that have ended are closed as new ones come."""
        thread = threading.current_thread()
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            if self._given is not None:
                return self._given
            mine = self._clients.get(thread.ident or 0)
            if mine is not None and mine[0] is thread:
                return mine[1]
            ended = [ident for ident, (t, _) in self._clients.items() if not t.is_alive() or ident == thread.ident]
            gone = [self._clients.pop(ident)[1] for ident in ended]
            try:
                client = connect(self.url)
            except Exception as exc:  # any connection failure means: keep spooling
                raise StoreUnavailable(str(exc)) from exc
            finally:
                for old in gone:
                    _close_client(old)
            self._clients[thread.ident or 0] = (thread, client)
        return client

    def close(self) -> None:
        """Closes every thread's client (for chDB: the embedded engine's handles, after any query in flight
        ends). Stop the threads that query first; a later call through this store raises StoreUnavailable."""
        with self._lock:
            self._closed = True
            clients, self._clients = [c for _, c in self._clients.values()], {}
            given, self._given = self._given, None
        for client in clients + ([given] if given is not None else []):
            _close_client(client)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def migrate(self) -> list[int]:
        """Applies the migrations not yet recorded; returns the versions applied."""
        c = self.client
        for sql in (f"CREATE DATABASE IF NOT EXISTS {self.db}",
                    f"CREATE TABLE IF NOT EXISTS {self.db}.schema_migrations "
                    "(version UInt32, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"):
            for statement in self._cluster_form(sql):
                c.command(statement)
        done = {row[0] for row in c.query(f"SELECT version FROM {self.db}.schema_migrations").result_rows}
        applied = []
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            for sql in statements:
                for statement in self._cluster_form(sql.format(db=self.db, ttl_days=self.retention_days,
                                                               consent_ttl_days=self.ttl_days_of("banner_versions"))):
                    c.command(statement)
            # A plain INSERT: clickhouse-connect's row insert imports pandas (~0.8 s) on its first use.
            c.command(f"INSERT INTO {self.db}.schema_migrations (version) VALUES ({int(version)})")
            applied.append(version)
            log.info("applied schema migration %d", version)
        self._apply_retention()
        self._apply_insert_durability()
        check_columns(self.table_columns())
        return applied

    def table_columns(self) -> dict[str, set[str]]:
        """Every table of the database with its column names."""
        rows = self.client.query("SELECT table, name FROM system.columns WHERE database = {db:String}",
                                 parameters={"db": self.db}).result_rows
        found: dict[str, set[str]] = {}
        for table, name in rows:
            found.setdefault(table, set()).add(name)
        return found

    def _cluster_form(self, statement: str) -> list[str]:
        """The statement as it runs here: as is, or ON CLUSTER with replicated and Distributed tables."""
        return on_cluster(statement, self.cluster) if self.cluster else [statement]

    def _apply_insert_durability(self) -> None:
        """fsync every inserted part (and its directory) when the gateway promises machine-crash durability:
        ClickHouse does not by default, and the spool drops records once they are inserted."""
        flag = int(self.fsync_inserts)
        for table in sorted({t for t, _, _ in TABLES.values()}):
            engine = self.query_value(
                "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                {"db": self.db, "t": table})
            if engine is not None and f"fsync_after_insert = {flag}" not in engine and (flag or "fsync_after_insert" in engine):
                self.client.command(f"ALTER TABLE {self.db}.{table} MODIFY SETTING "
                                    f"fsync_after_insert = {flag}, fsync_part_directory = {flag}")

    def ttl_days_of(self, table: str) -> int:
        """How long a table keeps its rows: proof of consent for consent_retention_days, the rest for
        retention_days. A banner version is re-recorded on its first use each day, so it gets one day
        more than the decisions made on it."""
        if table == "banner_versions":
            return self.consent_retention_days + 1
        return self.consent_retention_days if table in CONSENT_TABLES else self.retention_days

    def _apply_retention(self) -> None:
        """Keeps each table's TTL equal to its configured retention when the config changes it."""
        for table in [t for t, _, _ in TABLES.values()] + list(DERIVED_TABLES):
            days = self.ttl_days_of(table)
            engine = self.query_value(
                "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                {"db": self.db, "t": self._stored_in(table)},
            )
            # ClickHouse shows the TTL as `toIntervalDay(N)`: compare that form, or every start would
            # MODIFY TTL again and rewrite each table's parts.
            if engine and f"toIntervalDay({days})" not in engine:
                for statement in self._cluster_form(
                        f"ALTER TABLE {self.db}.{table} MODIFY TTL toDateTime(timestamp) + INTERVAL {days} DAY"):
                    self.client.command(statement)

    def insert(self, records: Sequence[Record]) -> None:
        """Inserts records of one kind in one batch (seeding, imports; the gateway itself inserts spooled lines)."""
        if not records:
            return
        record_type = type(records[0])
        if any(type(r) is not record_type for r in records):
            raise TypeError("one insert takes records of one kind")
        columns = columns_of(record_type)
        rows = [[_to_datetime(getattr(r, c)) if c in ("timestamp", "first_seen") else getattr(r, c) for c in columns]
                for r in records]
        try:
            self.client.insert(f"{self.db}.{record_type.TABLE}", rows, column_names=list(columns))
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    def insert_json_lines(self, kind: str, lines: Sequence[bytes]) -> None:
        """Inserts spooled JSON lines of one kind as they are (JSONEachRow): ClickHouse parses them
        in C++, which costs the gateway's Python thread (and its GIL) nothing per row."""
        table, columns, _ = TABLES[kind]
        try:
            # Unknown fields are an error, not skipped: `kind` goes into the tables' EPHEMERAL column.
            self.client.raw_insert(f"{self.db}.{table}", column_names=[*columns, KIND_FIELD],
                                   insert_block=b"".join(lines), fmt="JSONEachRow",
                                   settings={"input_format_skip_unknown_fields": 0})
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    def existing_ids(self, kind: str, ids: Iterable[str]) -> set[str]:
        """Which of these record ids the store already holds (replay after a crash)."""
        table, _, id_column = TABLES[kind]
        ids = list(ids)
        if not ids:
            return set()
        try:
            rows = self.client.query(
                f"SELECT toString({id_column}) FROM {self.db}.{table} WHERE {id_column} IN {{ids:Array(UUID)}}",
                parameters={"ids": ids},
            ).result_rows
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {r[0] for r in rows}

    def _sql(self, sql: str) -> str:
        # Queries name tables as {db}.events so they run on any configured database.
        return sql.replace("{db}.", f"{self.db}.")

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        return self.client.query(self._sql(sql), parameters=parameters or {}).result_rows

    def query_dicts(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        result = self.client.query(self._sql(sql), parameters=parameters or {})
        return [dict(zip(result.column_names, row)) for row in result.result_rows]

    def query_value(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.client.command(self._sql(sql), parameters=parameters or {})

    def _stored_in(self, table: str) -> str:
        """The table that holds `table`'s rows: on a cluster its replicated local table (analytics/cluster.py)."""
        return table + LOCAL_SUFFIX if self.cluster else table

    def delete(self, deletes: Sequence[tuple[str, str, dict[str, Any]]], timeout: float = DELETE_TIMEOUT,
               purge: bool = False) -> None:
        """Lightweight DELETEs, each `(table, where, parameters)`, all issued at once; returns once the tables
        have no delete left to apply. Why not one synchronous DELETE after another: each
        holds the connection about 1.3 s (the engine checks for the mutation's end once a second) though
        applying it takes some 20 ms, and every other query of the process (a stats request) waits behind
        it. Raises StoreUnavailable when a delete fails (the failed one is killed, or it would hold up every
        later delete of its table) or outlasts `timeout`.

        A lightweight delete only masks rows: they stay in their parts until a merge rewrites them, which for
        an old month's part may be never before its TTL. `purge` (an erasure) then rewrites the parts that hold
        masked rows (APPLY DELETED MASK), so the data is gone from disk once the old parts are cleaned up
        (ClickHouse's old_parts_lifetime, 8 minutes by default)."""
        tables = sorted({table for table, _, _ in deletes})
        for table, where, parameters in deletes:
            for statement in self._cluster_form(
                    f"DELETE FROM {self.db}.{table} WHERE {where} SETTINGS lightweight_deletes_sync = 0"):
                self.command(statement, parameters)
        if not tables:
            return
        deadline = time.monotonic() + timeout
        self._wait_for_mutations(tables, deadline, timeout)
        if purge:
            for table in tables:
                for statement in self._cluster_form(f"ALTER TABLE {self.db}.{table} APPLY DELETED MASK"):
                    self.command(statement)
            self._wait_for_mutations(tables, deadline, timeout)

    def _wait_for_mutations(self, tables: list[str], deadline: float, timeout: float) -> None:
        """Returns once `tables` have no mutation left to apply (on a cluster: on this node)."""
        tables = [self._stored_in(t) for t in tables]
        pause = 0.01
        while True:
            pending = self.query("SELECT table, any(latest_fail_reason) FROM system.mutations WHERE database = "
                                 "{db:String} AND table IN {tables:Array(String)} AND NOT is_done GROUP BY table",
                                 {"db": self.db, "tables": tables})
            if not pending:
                return
            failed = [f"{table}: {reason}" for table, reason in pending if reason]
            if failed:  # a failed delete is retried forever and holds up every later one on its table
                self.command("KILL MUTATION WHERE database = {db:String} AND table IN {tables:Array(String)} "
                             "AND NOT is_done AND latest_fail_reason != ''", {"db": self.db, "tables": tables})
            if failed or time.monotonic() > deadline:
                raise StoreUnavailable("a delete did not finish: " + ("; ".join(failed) or
                                       f"still running after {timeout:.0f} s on {', '.join(t for t, _ in pending)}"))
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

