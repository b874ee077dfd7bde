"""Which consent tokens a later decision has revoked (withdrawal, or a narrower choice).

A token is signed and lives for months in the browser, so the signature alone
cannot tell that the visitor took consent back. The gateway remembers, per
consent id, the time of the last withdrawal or narrowing; a token issued
before it no longer counts. Only narrowing decisions are kept, so memory grows
with withdrawals, not with visitors. Rebuilt at start from the consent log.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable


class RevocationList:
    def __init__(self, token_max_age_ms: int = 395 * 86_400_000) -> None:
        self._revoked_at: dict[str, int] = {}
        self._lock = threading.Lock()
        self.token_max_age_ms = token_max_age_ms
        self._prune_at = 100_000

    def revoke(self, consent_id: str, at_ms: int) -> None:
        with self._lock:
            if at_ms > self._revoked_at.get(consent_id, -1):
                self._revoked_at[consent_id] = at_ms
            if len(self._revoked_at) >= self._prune_at:
                self._prune(at_ms)

    def _prune(self, now_ms: int) -> None:
        # Every token issued before a revocation older than the token lifetime has expired anyway.
        horizon = now_ms - self.token_max_age_ms
        self._revoked_at = {cid: at for cid, at in self._revoked_at.items() if at > horizon}
        self._prune_at = max(100_000, 2 * len(self._revoked_at))

    def is_revoked(self, consent_id: str, issued_ms: int) -> bool:
        revoked = self._revoked_at.get(consent_id)
        return revoked is not None and issued_ms <= revoked

    def revoked_at(self, consent_id: str) -> int:
        return self._revoked_at.get(consent_id, -1)

    def load(self, entries: Iterable[tuple[str, int]]) -> None:
        for consent_id, at_ms in entries:
            self.revoke(consent_id, at_ms)

    def __len__(self) -> int:
        return len(self._revoked_at)
