"""Properties over random input (hypothesis): IP truncation, URL cleaning, token verification.
Expected values are computed independently (the ipaddress module, urllib's own parse)."""
from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs, urlsplit

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.clientip import truncate_ip
from gateway.collect.hit import parse_page_url
from gateway.tokens import TokenSigner

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ipv4 = st.integers(min_value=0x01000000, max_value=2**32 - 1).map(ipaddress.IPv4Address)  # 1.0.0.0 and up
ipv6 = st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address)


def _v6(prefix: str, ipv4_int: int, shift: int, other: int = 0) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address(prefix)) | (ipv4_int << shift) | other)


@st.composite
def carried_ipv4(draw: st.DrawFn) -> tuple[str, ipaddress.IPv4Address]:
    """An IPv6 address carrying an IPv4 address, written in any textual form Python can print."""
    v4 = draw(ipv4)
    n = int(v4)
    low80 = draw(st.integers(0, 2**80 - 1))
    kind = draw(st.sampled_from(["6to4", "teredo", "nat64", "nat64-local", "mapped", "compatible"]))
    if kind == "6to4":
        addr = _v6("2002::", n, 80, low80)
    elif kind == "teredo":  # server IPv4, flags and port are random; the client is inverted in the last 32 bits
        addr = _v6("2001::", n ^ 0xFFFFFFFF, 0, draw(st.integers(0, 2**64 - 1)) << 32)
    elif kind == "nat64":
        addr = _v6("64:ff9b::", n, 0)
    elif kind == "nat64-local":
        addr = _v6("64:ff9b:1::", n, 0)
    elif kind == "mapped":
        addr = _v6("::ffff:0:0", n, 0)
    else:
        addr = _v6("::", n, 0)
    text = draw(st.sampled_from([addr.compressed, addr.exploded, addr.compressed.upper()]))
    if kind in ("nat64", "mapped", "compatible") and draw(st.booleans()):
        text = text.rsplit(":", 2)[0] + ":" + str(v4) if kind != "compatible" else f"::{v4}"
    return text, v4


def _host_bytes_absent(stored: str, v4: ipaddress.IPv4Address) -> bool:
    """The IPv4 address, written any way, is not in the stored text (its last byte is zeroed)."""
    if int(v4) & 0xFF == 0:
        return True  # nothing to hide: the address is its own /24
    hex32 = f"{int(v4):08x}"
    forms = {str(v4), f"{hex32[:4].lstrip('0') or '0'}:{hex32[4:].lstrip('0') or '0'}", hex32}
    return not any(form in stored.lower() for form in forms)


@SETTINGS
@given(ipv4)
def test_ipv4_is_cut_to_its_24(address):
    assert truncate_ip(str(address)) == str(ipaddress.ip_network(f"{address}/24", strict=False).network_address)


@SETTINGS
@given(ipv6)
def test_ipv6_is_cut_to_its_48_unless_it_carries_ipv4(address):
    stored = truncate_ip(address.compressed)
    assert truncate_ip(address.exploded) == stored  # the textual form does not matter
    network = ipaddress.ip_address(stored)
    if network.version == 6:
        assert network == ipaddress.ip_network(f"{address}/48", strict=False).network_address
    else:  # an embedded IPv4 cut to /24: the stored value holds no more than 24 of the address's bits
        assert int(network) & 0xFF == 0
    assert stored != address.compressed or int(address) & ((1 << 80) - 1) == 0


@SETTINGS
@given(carried_ipv4())
def test_ipv4_carried_in_ipv6_is_stored_as_its_ipv4_24(case):
    text, v4 = case
    stored = truncate_ip(text)
    assert stored == str(ipaddress.ip_network(f"{v4}/24", strict=False).network_address), text
    assert _host_bytes_absent(stored, v4)


@SETTINGS
@given(st.text(max_size=60))
def test_anything_else_is_never_returned_as_is(text):
    try:
        ipaddress.ip_address(text)
        assume(False)
    except ValueError:
        pass
    assert truncate_ip(text) == ""


# --- URL cleaning --------------------------------------------------------------------------------

segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%@!$&'()*+,;=:", min_size=0, max_size=12)
param = st.tuples(st.sampled_from(["utm_source", "utm_medium", "utm_campaign", "email", "session", "utm_term", "q"]),
                  st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.@", max_size=12))


@st.composite
def page_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    userinfo = draw(st.sampled_from(["", "user@", "USER:SECRET@", "A%40B:P%3ASS@"]))
    host = draw(st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True))
    port = draw(st.sampled_from(["", ":8080", ":443"]))
    path = "/" + "/".join(draw(st.lists(segment, max_size=4)))
    query = "&".join(f"{k}={v}" for k, v in draw(st.lists(param, max_size=5)))
    fragment = draw(st.sampled_from(["", "#top", "#email=a@b.c", "#?utm_source=frag"]))
    return f"{scheme}://{userinfo}{host}{port}{path}" + (f"?{query}" if query else "") + fragment


@SETTINGS
@given(page_urls())
def test_url_cleaning_keeps_no_query_but_utm_no_userinfo_no_fragment(url):
    page = parse_page_url(url)
    assert page is not None, url
    parts = urlsplit(url)
    assert "?" not in page.clean and "#" not in page.clean
    assert "@" not in page.clean.split("/", 3)[2]  # no userinfo in the authority
    assert not any(word in page.clean for word in ("USER", "SECRET", "P%3ASS"))  # the other parts are lowercase
    assert page.clean == f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "") + (parts.path or "/")
    query = parse_qs(parts.query)
    expected_utm = tuple(query.get(k, [""])[-1] for k in ("utm_source", "utm_medium", "utm_campaign"))
    assert page.utm == expected_utm


@SETTINGS
@given(st.text(max_size=80))
def test_url_cleaning_refuses_anything_not_http(value):
    assume(not value.lower().lstrip().startswith(("http://", "https://")))
    page = parse_page_url(value)
    assert page is None or urlsplit(value).scheme in ("http", "https")


# --- token verification --------------------------------------------------------------------------

SIGNER = TokenSigner(("property-secret-0123456789abcdef",), 30)
VALID = SIGNER.dumps(SIGNER.issue("c" * 32, "demo", {"analytics": True, "marketing": False}, 1))
ALPHABET = sorted(set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") | {"=", "~", " "})


def test_no_single_character_change_of_a_valid_token_verifies():
    """Exhaustive rather than sampled: every position, every Latin-1 character (the signature's last
    base64 character has two unused bits, so a sample would rarely hit the three that once verified)."""
    signer = TokenSigner(("property-secret-0123456789abcdef",), 30)  # its own cache, not filled by other tests
    verified = [(i, chr(c)) for i in range(len(VALID)) for c in range(256) if chr(c) != VALID[i]
                and signer.consent_id_of(VALID[:i] + chr(c) + VALID[i + 1:], "demo") is not None]
    assert verified == []
    assert signer.consent_id_of(VALID, "demo") == "c" * 32  # the original still does


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.sampled_from(ALPHABET)), min_size=1, max_size=6))
def test_no_mutation_of_several_characters_verifies(changes):
    mutated = list(VALID)
    for position, replacement in changes:
        mutated[position] = replacement
    assume("".join(mutated) != VALID)
    assert SIGNER.consent_id_of("".join(mutated), "demo") is None


@SETTINGS
@given(st.integers(0, len(VALID)), st.integers(0, 255))
def test_no_byte_inserted_or_removed_verifies(position, byte):
    inserted = VALID[:position] + chr(byte) + VALID[position:]
    removed = VALID[:position] + VALID[position + 1:]
    assert SIGNER.consent_id_of(inserted, "demo") is None
    assert SIGNER.consent_id_of(removed, "demo") is None or removed == VALID
