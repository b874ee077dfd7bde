"""Shared links: a site-scoped, read-only, revocable address of one site's dashboard (no login).

A link is a random secret (256 bits) in the address `/share/{secret}`; the store keeps only its SHA-256
(a random secret needs no slow hash) and, when the link has a password, an scrypt hash of that password.
The table `shared_links` is a log: a `create` row, and a `revoke` row once it is revoked; a link is live
while it has no `revoke` row. Sessions opened through a link name its `link_id` (gateway/stats_auth.py)
and look the link up again on each request, so revoking ends them at their next request.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from analytics.store import Store, StoreUnavailable

SECRET_BYTES = 32
MAX_PASSWORD_LENGTH = 256
MAX_LABEL_LENGTH = 200
MAX_LIVE_LINKS = 100  # per site: links are made by hand; the bound keeps the table and its scans small
# scrypt at n=2**14, r=8 (16 MiB, ~50 ms here): RFC 7914's interactive-login parameters.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
COLUMNS = ["link_id", "site", "timestamp", "action", "secret_hash", "password_hash", "label"]
# Aliases differ from the column names: ClickHouse would read `site` in WHERE as the aggregate.
_LIVE = """SELECT link_id, any(site) AS link_site, minIf(timestamp, action = 'create') AS created,
                  anyIf(password_hash, action = 'create') AS link_password, anyIf(label, action = 'create') AS link_label
           FROM {db}.shared_links WHERE %s
           GROUP BY link_id HAVING countIf(action = 'revoke') = 0 AND countIf(action = 'create') > 0
           ORDER BY created"""


def secret_hash(secret: str) -> str:
    return hashlib.sha256(b"consentgate.shared-link\n" + secret.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(password[:MAX_PASSWORD_LENGTH].encode("utf-8"), salt=base64.b64decode(salt),
                               n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(found, expected)


@dataclass(frozen=True)
class SharedLink:
    link_id: str
    site: str
    created: datetime
    label: str = ""
    password_hash: str = ""

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)

    def public(self) -> dict[str, Any]:
        """What the API shows of a link: never its secret (not kept) or password hash."""
        return {"link_id": self.link_id, "site": self.site, "label": self.label, "password": self.has_password,
                "created": self.created.replace(tzinfo=timezone.utc).isoformat(timespec="seconds")}


class SharedLinks:
    """The `shared_links` table of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _live(self, where: str, params: dict[str, Any]) -> list[SharedLink]:
        try:
            rows = self.store.query_dicts(_LIVE % where, params)
        except StoreUnavailable:
            raise
        except Exception as exc:  # the store answered with an error: the same to the caller as unreachable
            raise StoreUnavailable(str(exc)) from exc
        return [SharedLink(r["link_id"], r["link_site"], r["created"], r["link_label"], r["link_password"]) for r in rows]

    def _insert(self, rows: list[list[Any]]) -> None:
        try:
            self.store.client.insert(f"{self.store.db}.shared_links", rows, column_names=COLUMNS)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    def create(self, site: str, password: str = "", label: str = "") -> tuple[SharedLink, str]:
        """A new live link of `site` and its secret (shown once: the store keeps only its hash)."""
        secret = secrets.token_urlsafe(SECRET_BYTES)
        link = SharedLink(secrets.token_hex(8), site, datetime.now(timezone.utc).replace(tzinfo=None), label,
                          hash_password(password) if password else "")
        self._insert([[link.link_id, site, datetime.now(timezone.utc), "create", secret_hash(secret),
                       link.password_hash, label]])
        return link, secret

    def list(self, site: str) -> list[SharedLink]:
        return self._live("site = {site:String}", {"site": site})

    def by_secret(self, secret: str) -> SharedLink | None:
        # Two steps: only the `create` row holds the secret's hash, and whether the link is live is a
        # question about all of its rows (a subquery would not run on a cluster's Distributed table).
        try:
            ids = self.store.query("SELECT link_id FROM {db}.shared_links WHERE secret_hash = {h:String} "
                                   "AND action = 'create' LIMIT 1", {"h": secret_hash(secret)})
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return self.live(ids[0][0]) if ids else None

    def live(self, link_id: str) -> SharedLink | None:
        found = self._live("link_id = {id:String}", {"id": link_id})
        return found[0] if found else None

    def revoke(self, site: str, link_id: str) -> bool:
        """Ends a live link of `site`; False when the site has no such live link."""
        link = self.live(link_id)
        if link is None or link.site != site:
            return False
        self._insert([[link_id, site, datetime.now(timezone.utc), "revoke", "", "", ""]])
        return True
