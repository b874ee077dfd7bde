"""Who the client is, and the truncated form that is all we ever keep of its address.

Addresses are parsed with socket.inet_pton: strict (no "1.2" or octal forms), and
~20 times cheaper than the ipaddress module on this per-hit path.
"""
from __future__ import annotations

import ipaddress
import socket

from starlette.requests import Request
from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"  # ::ffff:a.b.c.d
_COMPATIBLE_PREFIX = b"\x00" * 12  # ::a.b.c.d (deprecated IPv4-compatible form)
_6TO4_PREFIX = b"\x20\x02"  # 2002:AABB:CCDD::/48 carries the IPv4 AA.BB.CC.DD
_TEREDO_PREFIX = b"\x20\x01\x00\x00"  # 2001::/32: the client's IPv4 is the last 32 bits, inverted
_NAT64_PREFIX = b"\x00\x64\xff\x9b" + b"\x00" * 8  # 64:ff9b::/96 (RFC 6052): IPv4 in the last 32 bits
_NAT64_LOCAL_PREFIX = b"\x00\x64\xff\x9b\x00\x01"  # 64:ff9b:1::/48 (RFC 8215), used here with a /96 layout
_FORWARDED_FOR = b"x-forwarded-for"


def _packed(ip: str) -> bytes | None:
    """4 bytes for IPv4 (IPv4-mapped IPv6 included), 16 for IPv6, None for anything else."""
    try:
        if ":" not in ip:  # an IPv6 address has a colon, an IPv4 one none: one parse, no exception to catch
            return socket.inet_pton(socket.AF_INET, ip)
        packed = socket.inet_pton(socket.AF_INET6, ip)
    except (OSError, ValueError):
        return None
    return packed[12:] if packed.startswith(_MAPPED_PREFIX) else packed


def embedded_ipv4(packed: bytes) -> bytes | None:
    """The IPv4 address an IPv6 address carries (6to4, Teredo client, NAT64, IPv4-compatible), or None.
    Its /48 alone would keep the whole IPv4 address for 6to4, so these are cut as IPv4."""
    if packed.startswith(_6TO4_PREFIX):
        return packed[2:6]
    if packed.startswith(_TEREDO_PREFIX):
        return bytes(b ^ 0xFF for b in packed[12:])
    if packed.startswith(_NAT64_PREFIX):
        return packed[12:]
    if packed.startswith(_NAT64_LOCAL_PREFIX):
        # Only the /96 layout is recognisable; with a longer prefix the IPv4 sits in bytes 6-12,
        # beyond the /48 cut, so the /48 then keeps none of it.
        return packed[12:] if packed[6:12] == b"\x00" * 6 else None
    if packed.startswith(_COMPATIBLE_PREFIX) and packed[12] != 0:
        return packed[12:]  # ::1 and :: (first byte 0) stay IPv6: their /48 is ::
    return None


def truncate_ip(ip: str) -> str:
    """IPv4 to its /24, IPv6 to its /48, an IPv4 carried in IPv6 to its IPv4 /24;
    anything unparsable to ''. Never returns the full address."""
    packed = _packed(ip)
    if packed is None:
        return ""
    if len(packed) == 16:
        packed = embedded_ipv4(packed) or packed
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed[:3] + b"\x00")
    return socket.inet_ntop(socket.AF_INET6, packed[:6] + b"\x00" * 10)


# Both caches below find the config's networks by identity: hashing a tuple of ipaddress networks runs
# Python code per network, three times a hit (5.8 us of a hit's client_ip_of, measured in-process).
_RANGES: dict[int, tuple[tuple[Network, ...], tuple[tuple[int, int, int], ...]]] = {}


def _ranges(networks: tuple[Network, ...]) -> tuple[tuple[int, int, int], ...]:
    """(byte length, network, mask) as ints, for membership tests without ipaddress objects."""
    entry = _RANGES.get(id(networks))
    if entry is None or entry[0] is not networks:  # the entry holds its tuple, so its id is not reused
        if len(_RANGES) >= 16:
            _RANGES.clear()
        ranges = tuple((4 if n.version == 4 else 16, int(n.network_address), int(n.netmask)) for n in networks)
        entry = _RANGES[id(networks)] = (networks, ranges)
    return entry[1]


def _in(ip: str, networks: tuple[Network, ...]) -> bool:
    packed = _packed(ip)
    return packed is not None and _packed_in(packed, networks)


def _packed_in(packed: bytes, networks: tuple[Network, ...]) -> bool:
    value = int.from_bytes(packed, "big")
    return any(len(packed) == size and value & mask == net for size, net, mask in _ranges(networks))


_TRUSTED_PEERS: dict[str, tuple[Network, ...]] = {}  # a proxy's address -> the trusted networks it is in


def _is_trusted_peer(peer: str, trusted_proxies: tuple[Network, ...]) -> bool:
    # Behind a proxy the peer is the same few proxy addresses on every hit: remember those.
    # Only trusted (proxy) addresses are remembered, never a client's; at most 256 (~40 KB).
    if _TRUSTED_PEERS.get(peer) is trusted_proxies:
        return True
    trusted = _in(peer, trusted_proxies)
    if trusted and len(_TRUSTED_PEERS) < 256:
        _TRUSTED_PEERS[peer] = trusted_proxies
    return trusted


def client_ip_of(scope: Scope, trusted_proxies: tuple[Network, ...]) -> str:
    """The client address of an ASGI request, the same way on every route: the socket peer; or,
    when the peer is a trusted proxy, the right-most X-Forwarded-For hop that is not itself a
    trusted proxy, reading every X-Forwarded-For header line in order as one list."""
    peer = scope["client"][0] if scope.get("client") else ""
    if not trusted_proxies or not _is_trusted_peer(peer, trusted_proxies):
        return peer
    forwarded = ",".join(v.decode("latin-1") for k, v in scope["headers"] if k == _FORWARDED_FOR)
    return client_ip_from(peer, forwarded, trusted_proxies)


def client_ip(request: Request, trusted_proxies: tuple[Network, ...]) -> str:
    return client_ip_of(request.scope, trusted_proxies)


def client_ip_from(peer: str, forwarded: str, trusted_proxies: tuple[Network, ...]) -> str:
    """The right-most hop of a trusted peer's X-Forwarded-For list that is not a trusted proxy.
    Left-most entries can be forged by anyone. A hop that is no IP address ("unknown", a port,
    junk) means the chain cannot be followed further: the peer is the best address known."""
    if not trusted_proxies or not _is_trusted_peer(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        packed = _packed(hop)
        if packed is None:
            return peer
        if not _packed_in(packed, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def is_https(request: Request, trusted_proxies: tuple[Network, ...]) -> bool:
    """Whether the browser spoke https: directly, or to a trusted proxy that says so (X-Forwarded-Proto)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    return bool(trusted_proxies) and _in(peer, trusted_proxies) and \
        request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
