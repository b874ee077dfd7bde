"""Who the client is, and the truncated form that is all we ever keep of its address."""
from __future__ import annotations

import ipaddress
from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def truncate_ip(ip: str) -> str:
    """IPv4 to its /24, IPv6 to its /48; anything unparsable to ''. Never returns the full address."""
    if _is_ipv4(ip):
        # String work is several times cheaper than ipaddress on the hot path.
        return ip.rsplit(".", 1)[0] + ".0"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return truncate_ip(str(address.ipv4_mapped))
    if isinstance(address, ipaddress.IPv4Address):
        return truncate_ip(str(address))
    return str(ipaddress.IPv6Network((address, 48), strict=False).network_address)


def _in(ip: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in networks)


def client_ip(request: Request, trusted_proxies: tuple[Network, ...]) -> str:
    """The socket peer; or, when the peer is a trusted proxy, the right-most X-Forwarded-For
    address that is not itself a trusted proxy (left-most entries can be forged by anyone)."""
    peer = request.client.host if request.client else ""
    if not trusted_proxies or not _in(peer, trusted_proxies):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def is_https(request: Request, trusted_proxies: tuple[Network, ...]) -> bool:
    """Whether the browser spoke https: directly, or to a trusted proxy that says so (X-Forwarded-Proto)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    return bool(trusted_proxies) and _in(peer, trusted_proxies) and \
        request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
