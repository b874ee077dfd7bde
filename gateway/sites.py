"""Which site a request is for, and whether its Origin may call it: checked here, once per request."""
from __future__ import annotations

from collections.abc import Iterable

from gateway.config import GatewayConfig, SiteConfig
from gateway.errors import GatewayError, unknown_site


def site_named(config: GatewayConfig, name: str) -> SiteConfig:
    """The configured site of this name, or a 404 saying so."""
    site = config.sites.get(name)
    if site is None:
        raise unknown_site(name)
    return site


def check_origin(site: SiteConfig, origin: str, own: Iterable[str] = ()) -> None:
    """Refuses (403) an Origin that is neither one of the site's origins nor the gateway's own (`own`).
    No Origin at all passes: sendBeacon and same-origin navigations may send none."""
    if origin and origin not in site.origins and origin not in own:
        raise GatewayError(403, "bad_origin", f"origin {origin[:100]!r} is not configured for site {site.name!r}")


def site_origin_allowed(config: GatewayConfig, path: str, origin: str) -> bool | None:
    """For CORS: None when `path` names no configured site (/s/SITE/...), else whether `origin` may call it."""
    parts = path.split("/", 3)
    if len(parts) < 4 or parts[1] != "s":
        return None
    site = config.sites.get(parts[2])
    return None if site is None else origin in site.origins
