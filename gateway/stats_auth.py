"""Who may read statistics and metrics: stats tokens (global or per site), dashboard sessions, the metrics token.

- A token in `[gateway] stats_tokens` reads every site; one in `[sites.NAME] stats_tokens`
  reads only the sites that list it (403 for any other, known or not, so a site token learns
  no other site's name).
- Failed token checks (a wrong Bearer token, a failed dashboard login, a wrong metrics token)
  are counted per client network: after `MAX_FAILURES` in a minute every token check of that
  network is a 429 until the minute has passed, the right token too, so guessing stays slow.
  Requests with a valid session are not counted and not refused: a session cannot be guessed.
- The dashboard session cookie (`cg_stats`) holds a random session id and an HMAC of the token
  under the gateway secret, signed with the gateway secret and valid 12 hours. The HMAC makes
  removing a token from the config end its sessions; it is not a plain hash an attacker who sees
  the cookie could test guesses against. Logout ends the session in the gateway (it keeps the ended
  ids until they would have expired), not only in the browser. Signed rather than stored, so every
  worker of a multi-worker gateway accepts a session another made; a logout is known to the worker
  that answered it (and is gone from the browser everywhere).
- A shared link (gateway/shared_links.py) opens a session of its own (cookie `cg_share`, signed, naming
  the link): read-only (`StatsAccess.can_write` is False) and scoped to the link's one site. It is
  looked up in the store on every request, so a revoked link's sessions end at their next request,
  and it reads only the stats API (`SHARED_LINK_ENDPOINTS`): not the consent export, not the admin
  API, and it cannot make, list or revoke links.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gateway.clientip import is_https
from gateway.config import GatewayConfig
from gateway.errors import GatewayError, unknown_site
from gateway.ratelimit import NetworkLimiter, client_network, too_many_requests

if TYPE_CHECKING:
    from gateway.shared_links import SharedLink

SESSION_COOKIE = "cg_stats"
SHARE_COOKIE = "cg_share"
# The modules whose GET routes a shared link's session may call: the statistics the dashboard reads.
SHARED_LINK_ENDPOINTS = frozenset({"gateway.stats_api"})
SESSION_MAX_AGE = 12 * 3600
MAX_FAILURES = 10  # failed token checks per client network per minute
MAX_ENDED_SESSIONS = 10_000
_SALT = "consentgate-stats-session.v2"
_SHARE_SALT = "consentgate-share-session.v1"


@dataclass(frozen=True)
class StatsAccess:
    """What one token or session may read: `sites` None means every site. `read_only`: a shared link's
    session, which may read but never change anything (goals, shared links)."""

    sites: frozenset[str] | None
    read_only: bool = False
    shared_link: str = ""  # the link_id of a shared link's session

    def can_read(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def can_write(self, site: str) -> bool:
        """Whether this access may change a site's settings (goals, shared links): a stats token or a
        dashboard login that reads the site, never a shared link."""
        return not self.read_only and self.can_read(site)


EVERY_SITE = StatsAccess(None)


def _token_access(config: GatewayConfig) -> dict[str, StatsAccess]:
    access: dict[str, set[str] | None] = {t: None for t in config.stats_tokens}
    for site in config.sites.values():
        for token in site.stats_tokens:
            scope = access.setdefault(token, set())
            if scope is not None:
                scope.add(site.name)
    return {t: StatsAccess(None if s is None else frozenset(s)) for t, s in access.items()}


def _refuse_for(wait: int) -> None:
    """429 while the client's network must wait `wait` seconds before its next token check."""
    if wait:
        raise too_many_requests(wait, f"more than {MAX_FAILURES} failed token checks a minute from your network")


class TokenAuth:
    """The token checks of one gateway: built once from its config, kept on `app.state.token_auth`."""

    def __init__(self, config: GatewayConfig, failures: NetworkLimiter | None = None) -> None:
        self.config = config
        self.failures = failures or NetworkLimiter(MAX_FAILURES, 60.0)
        self._tokens = _token_access(config)
        self._key = config.secret_keys[-1].encode("utf-8")
        self._session_keys = {self._mac(t): access for t, access in self._tokens.items()}
        self._serializer = URLSafeTimedSerializer(list(config.secret_keys), salt=_SALT)
        self._share_serializer = URLSafeTimedSerializer(list(config.secret_keys), salt=_SHARE_SALT)
        self._ended: OrderedDict[str, float] = OrderedDict()  # session id -> when it would have expired
        # Sessions made at or before this time count as ended: when the ended ids overflow, the oldest is forgotten
        # and this moves up to when it was ended, so a forgotten id's cookie does not open anything again.
        self._ended_before = 0.0

    @property
    def has_tokens(self) -> bool:
        return bool(self._tokens)

    def _mac(self, token: str) -> str:
        return hmac.new(self._key, b"consentgate.stats-session\n" + token.encode("utf-8"), hashlib.sha256).hexdigest()

    def access_for(self, token: str) -> StatsAccess | None:
        """The access a token gives, or None. Every configured token is compared, in constant time:
        no early exit that times which one nearly matched."""
        found: StatsAccess | None = None
        for known, access in self._tokens.items():
            if hmac.compare_digest(token.encode("utf-8"), known.encode("utf-8")):
                found = access
        return found if token else None

    # ---- failure limit ----------------------------------------------------------------------

    def blocked_for(self, request: Request) -> int:
        """Seconds the client's network must wait before its next token check; 0 when it may check now."""
        return self.failures.retry_after(client_network(request, self.config))

    def refuse_if_blocked(self, request: Request) -> None:
        _refuse_for(self.blocked_for(request))

    def count_failure(self, request: Request) -> None:
        self.failures.add(client_network(request, self.config))

    def give_back_attempt(self, request: Request) -> None:
        """Takes back an attempt that turned out not to be a guess (a shared link that exists)."""
        self.failures.give_back(client_network(request, self.config))

    def take_attempt(self, request: Request) -> None:
        """Counts a guess before it is checked, and refuses it (429) past the limit: check and count in one step,
        with no await between them, so parallel guesses cannot all pass the limit first."""
        _refuse_for(self.failures.add(client_network(request, self.config)))

    # ---- sessions -----------------------------------------------------------------------------

    def new_session(self, token: str) -> str:
        return self._serializer.dumps({"sid": secrets.token_urlsafe(18), "k": self._mac(token)})

    def _live_session(self, request: Request, cookie: str,
                      serializer: URLSafeTimedSerializer) -> dict[str, str] | None:
        """The data of the request's session cookie `cookie`: signed, at most SESSION_MAX_AGE old, and not ended
        (logged out, or made before a forgotten ended id was ended). None otherwise."""
        raw = request.cookies.get(cookie, "")
        if not raw or len(raw) > 512:
            return None
        try:
            data, made = serializer.loads(raw, max_age=SESSION_MAX_AGE, return_timestamp=True)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        return None if data["sid"] in self._ended or made.timestamp() <= self._ended_before else data

    def _session(self, request: Request) -> dict[str, str] | None:
        data = self._live_session(request, SESSION_COOKIE, self._serializer)
        return data if data is not None and isinstance(data.get("k"), str) else None

    def dashboard_access(self, request: Request) -> StatsAccess | None:
        """The access of the request's dashboard session (logged in with a stats token), or None."""
        data = self._session(request)
        return None if data is None else self._session_keys.get(data["k"])

    # ---- shared links' sessions -------------------------------------------------------------------

    def new_share_session(self, link_id: str) -> str:
        return self._share_serializer.dumps({"sid": secrets.token_urlsafe(18), "l": link_id})

    def share_session_link(self, request: Request) -> str | None:
        """The link_id of the request's shared-link session (signature and age checked), or None."""
        data = self._live_session(request, SHARE_COOKIE, self._share_serializer)
        return None if data is None or not isinstance(data.get("l"), str) or len(data["l"]) > 64 else data["l"]

    @staticmethod
    def link_access(link: SharedLink | None) -> StatsAccess | None:
        """Read-only access to the site of a live shared link (None: no link, or no longer live)."""
        return None if link is None else StatsAccess(frozenset({link.site}), read_only=True, shared_link=link.link_id)

    def end_session(self, request: Request) -> None:
        """Logs out: the dashboard session and the shared-link session of the request, each ended on the server,
        so a copy of either cookie no longer opens anything."""
        sessions = (self._session(request), self._live_session(request, SHARE_COOKIE, self._share_serializer))
        ended = [data["sid"] for data in sessions if data]
        now = time.time()
        for sid in ended:
            while self._ended and (len(self._ended) >= MAX_ENDED_SESSIONS or next(iter(self._ended.values())) < now):
                _, expires = self._ended.popitem(last=False)  # oldest first: they expire first too
                if expires >= now:  # forgotten before it expired: end every session made until it was ended
                    self._ended_before = max(self._ended_before, expires - SESSION_MAX_AGE)
            self._ended[sid] = now + SESSION_MAX_AGE

    # ---- checks ---------------------------------------------------------------------------------

    def require_stats(self, request: Request, session: StatsAccess | None = None) -> StatsAccess:
        """The access of the request's bearer token or, without one, `session`: the access of its dashboard or
        shared-link session, which the caller found (see session_access)."""
        if not self.has_tokens:
            raise GatewayError(401, "unauthorized", "this gateway has no stats tokens: add stats_tokens = [\"...\"] "
                               "to its [gateway] table (every site) or to a [sites.NAME] table (that site)")
        header = request.headers.get("authorization", "")
        if not header:
            access = session
            if access is None:
                raise GatewayError(401, "unauthorized", "send 'Authorization: Bearer <stats token>', "
                                   "or log in at /dashboard")
            return access
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GatewayError(401, "unauthorized", "send the stats token as 'Authorization: Bearer <token>'")
        self.refuse_if_blocked(request)
        access = self.access_for(token)
        if access is None:
            self.count_failure(request)
            raise GatewayError(401, "unauthorized", "the stats token is wrong: send 'Authorization: Bearer <token>' "
                               "with one of the gateway's stats_tokens")
        return access

    def require_metrics(self, request: Request) -> None:
        expected = self.config.metrics_token
        if not expected:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GatewayError(401, "unauthorized", "this gateway's /metrics needs 'Authorization: Bearer "
                               "<metrics_token>' (Prometheus: authorization { credentials: ... })")
        self.refuse_if_blocked(request)
        if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
            self.count_failure(request)
            raise GatewayError(401, "unauthorized", "the metrics token is wrong: send the gateway's metrics_token")


def refuse_foreign_origin(request: Request, config: GatewayConfig) -> None:
    """403 unless the form (or a dashboard script's change) was posted from the gateway's own origin (its Host,
    or public_url). Browsers send Origin with every POST; without one (a script, an old browser) the Referer,
    if any, must match."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = urlsplit(request.headers.get("referer", ""))
        if not referer.scheme:
            return
        origin = f"{referer.scheme}://{referer.netloc}"
    scheme = "https" if is_https(request, config.trusted_proxies) else "http"
    own = {f"{scheme}://{request.headers.get('host', '')}"}
    if config.public_url:
        public = urlsplit(config.public_url)
        own.add(f"{public.scheme}://{public.netloc}")
    if origin not in own:
        raise GatewayError(403, "bad_origin", f"log in, log out and edit on the dashboard's own page ({sorted(own)[0]}"
                           f"/dashboard): this request came from {origin[:100]!r}")


async def require_write_access(config: GatewayConfig, request: Request, site: str, refusal: str) -> StatsAccess:
    """The access of a request that changes a site's settings (goals, funnels, shared links): a stats token or a
    dashboard login that reads the site, never a shared link (403 with `refusal`); a dashboard session's change
    must come from the gateway's own page (its cookie would be sent by any page of the same site)."""
    access = await require_stats_access(config, request, site)
    if not access.can_write(site):
        raise GatewayError(403, "forbidden", refusal)
    if not request.headers.get("authorization"):
        refuse_foreign_origin(request, config)
    return access


async def shared_session_link(request: Request) -> SharedLink | None:
    """The live link of the request's shared-link session (signature, age and logout checked on the loop), looked up
    in the store off the event loop: a query of ~6 ms there would stop every other request, collect included."""
    from gateway.shared_links import SharedLinks

    link_id = request.app.state.token_auth.share_session_link(request)
    if link_id is None:
        return None
    return await run_in_threadpool(SharedLinks(request.app.state.services.store).live, link_id)


async def session_access(request: Request) -> StatsAccess | None:
    """The access of the request's dashboard session or, failing that, of its shared-link session (the link is
    looked up only then)."""
    auth: TokenAuth = request.app.state.token_auth
    return auth.dashboard_access(request) or auth.link_access(await shared_session_link(request))


async def require_stats_access(config: GatewayConfig, request: Request, site: str | None = None) -> StatsAccess:
    """Raises 401 without a valid stats token or dashboard session, 429 while the client's network is
    blocked, and, when `site` is given, 403 unless the token may read that site. Returns what it may read.
    A shared-link session's link is looked up (off the event loop) only when neither a token nor a dashboard
    session gives access."""
    auth: TokenAuth = request.app.state.token_auth
    session = None if request.headers.get("authorization") else await session_access(request)
    access = auth.require_stats(request, session)
    if access.shared_link:
        endpoint = request.scope.get("endpoint")
        if getattr(endpoint, "__module__", "") not in SHARED_LINK_ENDPOINTS or request.method not in ("GET", "HEAD"):
            raise GatewayError(403, "forbidden", "a shared link reads its site's statistics only: log in at "
                               "/dashboard with a stats token for anything else")
    if site is not None:
        if not access.can_read(site):
            raise GatewayError(403, "forbidden", f"this stats token does not read site {site[:64]!r}: use a token "
                               f"listed in that site's stats_tokens, or one of [gateway] stats_tokens")
        if site not in config.sites:
            raise unknown_site(site)
    return access
