"""Who may read statistics: a configured stats token, as a Bearer header or a dashboard session cookie.

The session cookie holds no token, only a signed digest of it, so removing a token
from the config ends the sessions made with it.
"""
from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from gateway.config import GatewayConfig
from gateway.errors import GatewayError

SESSION_COOKIE = "cg_stats"
SESSION_MAX_AGE = 12 * 3600
_SALT = "consentgate-stats-session"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_stats_token(config: GatewayConfig, token: str) -> bool:
    # Compare every token in constant time: no early exit that times which one nearly matched.
    matches = [hmac.compare_digest(token.encode("utf-8"), t.encode("utf-8")) for t in config.stats_tokens]
    return bool(token) and any(matches)


def _serializer(config: GatewayConfig) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(list(config.secret_keys), salt=_SALT)


def session_value(config: GatewayConfig, token: str) -> str:
    return _serializer(config).dumps({"k": _digest(token)})


def has_session(config: GatewayConfig, request: Request) -> bool:
    raw = request.cookies.get(SESSION_COOKIE, "")
    if not raw:
        return False
    try:
        data = _serializer(config).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return False
    digest = data.get("k", "") if isinstance(data, dict) else ""
    return any(hmac.compare_digest(digest, _digest(t)) for t in config.stats_tokens)


def require_stats_access(config: GatewayConfig, request: Request) -> None:
    """Raises 401 unless the request carries a stats token or a valid dashboard session."""
    if not config.stats_tokens:
        raise GatewayError(401, "unauthorized", "this gateway has no stats tokens: add stats_tokens = [\"...\"] "
                           "to the [gateway] table of its config")
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not is_stats_token(config, token.strip()):
            raise GatewayError(401, "unauthorized", "the stats token is wrong: send 'Authorization: Bearer <token>' "
                               "with one of the gateway's stats_tokens")
        return
    if not has_session(config, request):
        raise GatewayError(401, "unauthorized", "send 'Authorization: Bearer <stats token>', or log in at /dashboard")
