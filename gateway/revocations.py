"""Which consent tokens a later decision has revoked (a withdrawal, or a new choice).

A token is signed and lives for months in the browser, so the signature alone
cannot tell that the visitor took consent back. The gateway remembers, per
consent id, the time of the last decision that superseded its tokens; a token
issued before it no longer counts. Only ids that decided again (or withdrew) are
kept, so memory grows with those decisions, not with visitors.

One rule (`revocation_at`) decides what a decision revokes: live when the visitor
decides (gateway/consent.py), at start over the consent log (gateway/services.py) and
when other gateways' decisions arrive (gateway/revocation_sync.py). Every decision
supersedes the consent id's older tokens: a withdrawal revokes every token issued up
to it, a later grant every token issued before it. A consent id continues only
through a token valid at that moment, so a grant that is not the id's first one
always had a valid token before it.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence


def revocation_at(action: str, at_ms: int, first: bool) -> int | None:
    """Up to which issue time (ms, inclusive) a decision at `at_ms` revokes its consent id's tokens:
    a withdrawal revokes every token up to it; a grant the tokens before it, unless it is the id's
    first decision (a new id has no older token). None: it revokes nothing."""
    if action == "withdraw":
        return at_ms
    return None if first else at_ms - 1


def latest_revocation(decisions: Sequence[tuple[int, str]]) -> int | None:
    """The latest revocation a consent id's decisions (time ms, action), oldest first, produce."""
    latest: int | None = None
    for i, (at_ms, action) in enumerate(decisions):
        at = revocation_at(action, at_ms, first=i == 0)
        if at is not None and (latest is None or at > latest):
            latest = at
    return latest


class RevocationList:
    def __init__(self, token_max_age_ms: int = 395 * 86_400_000) -> None:
        self._revoked_at: dict[str, int] = {}
        self._lock = threading.Lock()
        self.token_max_age_ms = token_max_age_ms
        self._prune_at = 100_000

    def revoke(self, consent_id: str, at_ms: int | None) -> None:
        if at_ms is None:  # the decision revoked nothing (revocation_at)
            return
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
