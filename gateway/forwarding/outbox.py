"""The per-vendor outbox: deliveries waiting for one vendor, durable before the collect 202.

Each vendor of each site has its own spool folder (`data_dir/outbox/SITE/VENDOR`), so a vendor
that is down for hours holds back only its own backlog. A worker reads ahead of the
checkpoint with several deliveries in flight; `CommitTracker` moves the checkpoint only
past batches whose every delivery has its outcome spooled.
"""
from __future__ import annotations

import hashlib
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analytics.spool import SEGMENT_BYTES, GroupCommit, Position, SpoolReader, SpoolWriter, remove_finished_segments
from analytics.records import EventRecord, ForwardRecord, as_dict
from gateway.collect.hit import Hit
from gateway.collect.pipeline import random_uuid

# The event record fields a delivery does not carry: the outbox keeps its own ids.
_NOT_FORWARDED = ("kind", "site", "visitor_id")


@dataclass(frozen=True)
class Delivery:
    """One hit for one vendor. `event` is the truncated event record (never the full IP)."""

    delivery_id: str
    site: str
    vendor: str
    consent_id: str
    issued_ms: int  # the token's issue time: a later withdrawal revokes it
    choices: dict[str, bool]
    event: dict[str, Any]
    user_agent: str

    @classmethod
    def for_record(cls, record: EventRecord, vendor: str, issued_ms: int, choices: dict[str, bool], user_agent: str,
                   delivery_id: str = "") -> "Delivery":
        """The delivery of one stored-form event to one vendor: the record without its site and visitor id."""
        event = {k: v for k, v in as_dict(record).items() if k not in _NOT_FORWARDED}
        return cls(delivery_id or random_uuid(), record.site, vendor, record.visitor_id, issued_ms, dict(choices),
                   event, user_agent)

    @classmethod
    def from_hit(cls, hit: Hit, vendor: str) -> "Delivery":
        assert hit.token is not None and hit.record is not None
        return cls.for_record(hit.record, vendor, hit.token.issued_ms, hit.token.choices, hit.user_agent)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Delivery":
        return cls(**{k: record[k] for k in cls.__dataclass_fields__})

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def outcome(self, status: str, attempts: int, now: float) -> ForwardRecord:
        """The `forwards` row: who received which hit, and how it went. No hit content."""
        return ForwardRecord(record_id=self.delivery_id, site=self.site, timestamp=round(now, 3),
                             consent_id=self.consent_id, event_id=self.event["event_id"], vendor=self.vendor,
                             status=status, attempts=attempts)


def outbox_folder(data_dir: Path, site: str, vendor: str) -> Path:
    # Vendor names are free text: keep the folder name safe and still unique per name.
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", vendor)[:40]
    return data_dir / "outbox" / site / f"{safe}-{hashlib.sha256(vendor.encode()).hexdigest()[:8]}"


class Outbox:
    """A vendor's durable queue (a spool) and how many deliveries in it still await an outcome."""

    def __init__(self, folder: Path, commit: GroupCommit | None = None, max_bytes: int = 256 * 1024 * 1024) -> None:
        # Segments small enough that passing one frees room well before the limit.
        self.writer = SpoolWriter(folder, min(SEGMENT_BYTES, max(64 * 1024, max_bytes // 8)), commit)
        self.reader = SpoolReader(folder, "forwarder", durable=self.writer.commit.durable)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # Counted from the backlog at start, then kept up to date: the queue-depth metric.
        self.depth = sum(1 for _ in self.reader.pending())

    def append(self, delivery: Delivery) -> int:
        """Queues the delivery; returns its commit ticket."""
        ticket = self.writer.append(delivery.to_record(), defer=True)  # a hit's: its answer waits for the ticket
        with self._lock:
            self.depth += 1
        return ticket

    def over_limit(self) -> bool:
        """More undelivered bytes on disk than max_outbox_bytes: the oldest deliveries are dropped."""
        return self.writer.disk_bytes > self.max_bytes

    def finished(self) -> None:
        with self._lock:
            self.depth -= 1

    def commit(self, position: Position) -> None:
        self.reader.commit(position)
        remove_finished_segments(self.writer.folder, [self.reader], self.writer)

    def close(self) -> None:
        self.writer.close()


class Batch:
    """Records read together; the checkpoint may pass `end` once none is open."""

    def __init__(self, end: Position, open_count: int) -> None:
        self.end = end
        self.open = open_count


class CommitTracker:
    """Orders batches read ahead of the checkpoint; yields the furthest position safe to commit."""

    def __init__(self) -> None:
        self._batches: deque[Batch] = deque()

    def add(self, end: Position, count: int) -> Batch:
        batch = Batch(end, count)
        self._batches.append(batch)
        return batch

    def close_one(self, batch: Batch) -> None:
        batch.open -= 1

    def committable(self) -> Position | None:
        """The end of the longest run of finished batches at the front, removing them; None if none."""
        position = None
        while self._batches and self._batches[0].open <= 0:
            position = self._batches.popleft().end
        return position
