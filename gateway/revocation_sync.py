"""Revocations from the consent log: loaded at start, and followed while running.

Gateways (and workers) that share a store learn each other's withdrawals, new choices
and erasures from the `consents` table, and their restrictions (GDPR art. 18) from
`restrictions`: a poller reads the rows past a watermark every `revocation_sync_interval`
seconds and applies the one rule of gateway/revocations.py.
Records reach the store through each gateway's spool and batch writer, a fraction of
a second after the decision (flush_interval) and later while that gateway cannot reach
the store, and gateway clocks differ: so each poll reads again the last `OVERLAP_MS`
and skips the record ids it has already applied.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from analytics.consent_log import decision_histories, decisions_since
from analytics.erasure import is_erasure, restriction_changes_since, restrictions_in_force
from analytics.store import Store
from gateway.restrictions import RestrictionList
from gateway.revocations import RevocationList, latest_revocation, revocation_at

log = logging.getLogger("consentgate.revocations")
OVERLAP_MS = 60_000  # how late (or how far off another gateway's clock) a record may arrive and still count

def revocations_from_log(store: Store, pending: Iterable[dict[str, Any]], days: int) -> list[tuple[str, int]]:
    """Every consent id's latest revocation by the rule, from the store and this gateway's spool
    (decisions not yet written). Raises what the store raises."""
    spooled: dict[str, list[tuple[int, str, str]]] = {}
    for record in pending:
        if record.get("kind") == "consent":
            spooled.setdefault(record["consent_id"], []).append(
                (int(round(record["timestamp"] * 1000)), record["action"], record["record_id"]))
    histories = decision_histories(store, days, revoking_only=True)
    if spooled:
        histories.update(decision_histories(store, days, consent_ids=list(spooled)))
    for cid, records in spooled.items():
        histories[cid] = histories.get(cid, []) + records
    return [(cid, at) for cid, history in histories.items()
            if (at := latest_revocation(_ordered(history))) is not None]


def revocations_from_log_spool_only(pending: Iterable[dict[str, Any]]) -> list[tuple[str, int]]:
    """The revocations this gateway's own spool proves, while the store cannot be read."""
    spooled: dict[str, list[tuple[int, str, str]]] = {}
    for record in pending:
        if record.get("kind") == "consent":
            spooled.setdefault(record["consent_id"], []).append(
                (int(round(record["timestamp"] * 1000)), record["action"], record["record_id"]))
    # Without the store the first spooled decision may continue an older id: count it as a continuation.
    return [(cid, at) for cid, history in spooled.items()
            if (at := latest_revocation([(0, "grant"), *_ordered(history)])) is not None]


def _ordered(history: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """Decisions in time order, each record once (a spooled record may also be in the store already)."""
    unique = {rid: (ms, action) for ms, action, rid in history}
    return sorted(unique.values())


@dataclass
class SyncStatus:
    """What /readyz and /metrics show: whether this gateway still hears the others' revocations."""

    ok: bool = False
    lag_seconds: float = 0.0  # since the last successful check of the consent log
    last_error: str = ""
    applied: int = 0  # revocations learned from the log since start


class RevocationSync:
    """Polls `consents` past a watermark and applies the rule to what it has not seen yet."""

    def __init__(self, store: Store, revocations: RevocationList, days: int, interval: float,
                 on_erasure: Callable[[str, str], None] | None = None, max_lag: float = 2.0,
                 restrictions: RestrictionList | None = None) -> None:
        self.store = store
        self.revocations = revocations
        self.restrictions = restrictions  # followed too: another gateway's restriction stops our forwarding
        self.days = days
        self.interval = interval
        self.on_erasure = on_erasure  # (site, consent id): rows another gateway wrote after the erasure
        self.max_lag = max_lag
        self._seen: dict[str, int] = {}  # record id -> its time (ms), forgotten below the watermark
        self._since_ms = int(time.time() * 1000) - OVERLAP_MS
        self._last_ok = time.monotonic()
        self._status = SyncStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ok(self) -> bool:
        return self.status.ok

    @property
    def status(self) -> SyncStatus:
        lag = time.monotonic() - self._last_ok
        s = self._status
        return SyncStatus(ok=s.ok and lag <= self.max_lag, lag_seconds=round(lag, 3), last_error=s.last_error,
                          applied=s.applied)

    def lag_seconds(self) -> float:
        return self.status.lag_seconds

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consentgate-revocation-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - any failure: not in sync, said in /readyz, retried
                if self._status.ok or exc.__class__.__name__ not in self._status.last_error:
                    log.error("cannot read revocations from the store: %s", str(exc).splitlines()[0][:300])
                self._status.ok = False
                self._status.last_error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
            self._stop.wait(self.interval)

    def poll_once(self) -> int:
        """Applies the decisions that arrived since the last poll; returns how many it had not seen."""
        started_ms = int(time.time() * 1000)
        started = time.monotonic()
        rows = decisions_since(self.store, self._since_ms)
        new = [r for r in rows if r[0] not in self._seen]
        grants: set[str] = set()
        for record_id, site, cid, at_ms, action, method in new:
            if action == "withdraw":
                self._revoke(cid, revocation_at(action, int(at_ms), first=False))
                if is_erasure(method) and self.on_erasure is not None:
                    self.on_erasure(site, cid)
            else:
                grants.add(cid)
        if grants:  # whether a grant supersedes older tokens depends on the id's earlier decisions
            histories = decision_histories(self.store, self.days, consent_ids=sorted(grants))
            for cid, history in histories.items():
                self._revoke(cid, latest_revocation(_ordered(history)))
        for record_id, _, _, at_ms, _, _ in new:
            self._seen[record_id] = int(at_ms)
        if self.restrictions is not None:
            self._follow_restrictions()
        # Read again what may still arrive late; forget what lies below that.
        self._since_ms = started_ms - OVERLAP_MS
        self._seen = {rid: at for rid, at in self._seen.items() if at >= self._since_ms}
        self._last_ok = started
        self._status.ok = True
        self._status.last_error = ""
        return len(new)

    def _follow_restrictions(self) -> None:
        """Applies the restrictions and lifts recorded since the watermark: for each visitor named, the latest
        action in the store (a late-arriving older row must not undo a newer one)."""
        assert self.restrictions is not None
        new = [row for row in restriction_changes_since(self.store, self._since_ms) if row[0] not in self._seen]
        if not new:
            return
        for cid, restricted in restrictions_in_force(self.store, sorted({cid for _, cid, _ in new})).items():
            if restricted:
                self.restrictions.restrict(cid)
            else:
                self.restrictions.lift(cid)
        for record_id, _, at_ms in new:
            self._seen[record_id] = at_ms

    def _revoke(self, consent_id: str, at_ms: int | None) -> None:
        if at_ms is not None and at_ms > self.revocations.revoked_at(consent_id):
            self.revocations.revoke(consent_id, at_ms)
            self._status.applied += 1
