"""CLI commands that need a running gateway's data talk to it over HTTP: the embedded store
(chDB) can be opened by one process only, and that process is the gateway."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

import httpx

from gateway.config import GatewayConfig

STATS_TOKEN_ENV = "CONSENTGATE_STATS_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"  # `consentgate serve`'s default address


class GatewayRequestFailed(Exception):
    """The gateway could not be reached or refused the request; the message says what to do."""


def gateway_url(config: GatewayConfig, url: str | None) -> str:
    """--url, else the config's public_url, else where `consentgate serve` listens by default."""
    return (url or config.public_url or DEFAULT_URL).rstrip("/")


def stats_token(config: GatewayConfig, site: str, token: str | None) -> str:
    """--token, else the environment, else a token the config gives that site (its own first)."""
    site_tokens = config.sites[site].stats_tokens if site in config.sites else ()
    found = token or os.environ.get(STATS_TOKEN_ENV, "") or next(iter((*site_tokens, *config.stats_tokens)), "")
    if not found:
        raise GatewayRequestFailed(f"no stats token: pass --token, set {STATS_TOKEN_ENV}, or add stats_tokens to the config")
    return found


def download(url: str, params: dict[str, str], token: str, out: Path | None) -> int:
    """Streams a GET answer to `out` (written to a temporary name, renamed once complete) or stdout;
    returns the bytes written."""
    target: BinaryIO
    written = 0
    partial = out.with_name(out.name + ".partial") if out is not None else None
    try:
        with httpx.stream("GET", url, params=params, headers={"Authorization": f"Bearer {token}"},
                          timeout=httpx.Timeout(30.0, read=600.0)) as response:
            if response.status_code != 200:
                response.read()
                try:
                    detail = response.json().get("detail", response.text)
                except ValueError:
                    detail = response.text[:300]
                raise GatewayRequestFailed(f"the gateway answered {response.status_code}: {detail}")
            target = open(partial, "wb") if partial is not None else sys.stdout.buffer
            try:
                for chunk in response.iter_bytes():
                    target.write(chunk)
                    written += len(chunk)
            finally:
                if partial is not None:
                    target.close()
                else:
                    target.flush()
    except httpx.HTTPError as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        if written:
            raise GatewayRequestFailed(f"the answer broke off after {written} bytes ({exc.__class__.__name__}); "
                                       "nothing was kept: try again") from None
        raise GatewayRequestFailed(f"{exc.__class__.__name__}: {exc} (is the gateway running at {url.split('/api/')[0]}? "
                                   "pass --url, or set public_url in the config)") from None
    if partial is not None and out is not None:
        partial.replace(out)
    return written
