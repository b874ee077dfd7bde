"""The batch writer: moves spooled records into ClickHouse in batches, exactly once.

It runs in its own thread (chDB and the HTTP client release the GIL while they
work). After a crash or a failed insert it cannot know whether the last batch
reached the store, so for that batch it asks the store which record ids it
already holds and inserts only the rest: replays never store a record twice.
"""
from __future__ import annotations

import logging
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import orjson

from analytics.schema import TABLES
from analytics.spool import SpoolReader, SpoolWriter, kind_mark, remove_finished_segments
from analytics.store import Store, StoreUnavailable

log = logging.getLogger("consentgate.writer")
_KIND_MARKS = {kind: kind_mark(kind) for kind in TABLES}
INSERT_ORDER = list(TABLES)  # referenced records first (analytics/schema.py)


def kind_of(line: bytes) -> str | None:
    """The record kind of a spooled JSON line, without parsing it (records are written by orjson, compact)."""
    for kind, mark in _KIND_MARKS.items():
        if mark in line:
            return kind
    return None


class BatchWriter:
    def __init__(
        self,
        store: Store,
        spool: SpoolWriter,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        on_batch: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.store = store
        self.spool = spool
        self.reader = SpoolReader(spool.folder, "store", durable=spool.commit.durable)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.on_batch = on_batch
        self.uncertain = True  # the first batch after start may already be stored
        self.store_up = False
        self.schema_ready = False  # the store may be down at start: migrate before the first insert
        self.written = 0
        self.failures = 0
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()  # the thread and flush_pending() must not read one batch twice
        self._thread: threading.Thread | None = None
        self.extra_readers: list[SpoolReader] = []  # other followers of the same spool

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consentgate-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                moved = self.flush_once()
                backoff = 0.2
            except StoreUnavailable as exc:
                self.failures += 1
                self.store_up = False
                log.warning("store unavailable, keeping records in the spool: %s", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if moved < self.batch_size:
                # Wait for new records, but batch them: at most one insert per flush_interval (a full batch
                # goes at once). Each insert writes a part the engine merges again later: inserting every
                # 0.25 s, as this loop did whatever the interval, cost ~40 us of CPU per hit more than every 1 s.
                self.spool.wakeup.wait(self.flush_interval)
                self.spool.wakeup.clear()
                self._stop.wait(max(0.0, self.flush_interval - (time.monotonic() - started)))

    def flush_once(self) -> int:
        """Moves one batch from the spool into the store; returns how many records it held."""
        with self._flush_lock:
            return self._flush_batch()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Holds the writer between two batches (no batch in flight) while the caller rewrites the spool."""
        with self._flush_lock:
            yield

    def flush_pending(self) -> None:
        """Writes everything spooled so far (privacy requests need the latest records in the store)."""
        while self.flush_once() >= self.batch_size:
            pass

    def ensure_schema(self) -> None:
        if not self.schema_ready:
            try:
                self.store.migrate()
            except StoreUnavailable:
                raise  # already says why
            except Exception as exc:  # noqa: BLE001 - any failure here means: not ready, keep spooling
                raise StoreUnavailable(f"schema migration failed: {exc}") from exc
            self.schema_ready = True
            self.store_up = True

    def _flush_batch(self) -> int:
        self.ensure_schema()
        lines, after = self.reader.read_lines(self.batch_size)
        if not lines:
            return 0
        by_kind: dict[str, list[bytes]] = defaultdict(list)
        for line in lines:
            kind = kind_of(line)
            if kind is not None:
                by_kind[kind].append(line)
        try:
            for kind, rows in sorted(by_kind.items(), key=lambda item: INSERT_ORDER.index(item[0])):
                if self.uncertain:
                    rows = self._not_yet_stored(kind, rows)
                if rows:
                    self.store.insert_json_lines(kind, rows)
        except StoreUnavailable:
            self.uncertain = True
            raise
        self.uncertain = False
        self.store_up = True
        self.reader.commit(after)
        remove_finished_segments(self.spool.folder, [self.reader, *self.extra_readers], self.spool)
        self.written += len(lines)
        if self.on_batch:
            self.on_batch({k: len(v) for k, v in by_kind.items()})
        return len(lines)

    def _not_yet_stored(self, kind: str, lines: list[bytes]) -> list[bytes]:
        """The lines whose record id the store does not hold yet (only for a batch that may be stored)."""
        id_column = TABLES[kind][2]
        ids = [orjson.loads(line)[id_column] for line in lines]
        present = self.store.existing_ids(kind, ids)
        return [line for line, record_id in zip(lines, ids) if record_id not in present]

    def drain(self, timeout: float = 30.0) -> bool:
        """Stops the thread, then writes everything spooled. True when the spool is empty."""
        self._stop.set()
        self.spool.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.flush_once() == 0:
                    return True
            except StoreUnavailable as exc:
                log.error("store unavailable at shutdown; %d bytes stay in the spool for the next start: %s",
                          self.reader.backlog_bytes(), exc)
                return False
        return False

    def backlog_bytes(self) -> int:
        return self.reader.backlog_bytes()
