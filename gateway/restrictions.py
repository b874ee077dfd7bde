"""Which visitors restricted the processing of their data (GDPR art. 18), in memory.

A restricted visitor's rows are kept but left out of the statistics (analytics/erasure.py
NOT_RESTRICTED, in SQL) and out of forwarding: the collect sink queues nothing for them and a
vendor worker sends none of their queued hits. Like the revocations, the set is rebuilt at start
from the `restrictions` table and the spool; memory grows with restrictions, not with visitors.

Erased visitors are held here too, until the next start: a delivery of theirs still in a worker's
memory (waiting out a retry) is then neither sent nor recorded as a `forwards` row.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable


class RestrictionList:
    def __init__(self) -> None:
        self._restricted: set[str] = set()
        self._erased: set[str] = set()
        self._lock = threading.Lock()

    def restrict(self, consent_id: str) -> None:
        with self._lock:
            self._restricted.add(consent_id)

    def lift(self, consent_id: str) -> None:
        with self._lock:
            self._restricted.discard(consent_id)

    def forget(self, consent_id: str) -> None:
        """The visitor was erased: nothing of theirs is processed any more, nor recorded."""
        with self._lock:
            self._erased.add(consent_id)
            self._restricted.discard(consent_id)

    def is_restricted(self, consent_id: str) -> bool:
        return consent_id in self._restricted or consent_id in self._erased

    def is_erased(self, consent_id: str) -> bool:
        return consent_id in self._erased

    def load(self, consent_ids: Iterable[str]) -> None:
        with self._lock:
            self._restricted.update(consent_ids)

    def __len__(self) -> int:
        return len(self._restricted)
