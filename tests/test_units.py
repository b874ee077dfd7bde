"""Pure functions: IP truncation, tokens, user agents, revocations."""
import importlib.util
import ipaddress
import re

import pytest

from gateway.clientip import truncate_ip
from gateway.collect.useragent import parse_user_agent
from gateway.revocations import RevocationList
from gateway.tokens import TokenInvalid, TokenSigner


@pytest.mark.parametrize("ip", ["203.0.113.77", "198.51.100.1", "2001:db8:1234:5678::1", "::ffff:203.0.113.9", "2001:db8::"])
def test_truncate_ip_keeps_only_the_network(ip):
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    expected = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    assert truncate_ip(ip) == expected
    if str(address) != expected:
        assert str(address) not in truncate_ip(ip)


@pytest.mark.parametrize("junk", ["", "not-an-ip", "999.1.1.1", "1.2.3", "203.0.113.77; DROP", "::g"])
def test_truncate_ip_gives_nothing_for_junk(junk):
    assert truncate_ip(junk) == ""


def test_token_round_trip_and_binding():
    signer = TokenSigner(("k" * 32,), 182)
    token = signer.issue("cid", "demo", {"analytics": True}, 3)
    raw = signer.dumps(token)
    assert signer.loads(raw, "demo", 3) == token
    for site, version, reason in (("other", 3, "other_site_token"), ("demo", 4, "old_policy")):
        with pytest.raises(TokenInvalid) as exc:
            signer.loads(raw, site, version)
        assert exc.value.reason == reason


def test_token_tampering_and_expiry_are_refused():
    signer = TokenSigner(("k" * 32,), 182)
    raw = signer.dumps(signer.issue("cid", "demo", {"analytics": False}, 1))
    payload, sig = raw.rsplit(".", 1)
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + sig
    with pytest.raises(TokenInvalid):
        signer.loads(forged, "demo", 1)
    with pytest.raises(TokenInvalid):
        TokenSigner(("x" * 32,), 182).loads(raw, "demo", 1)  # another gateway's secret
    old = signer.issue("cid", "demo", {"analytics": True}, 1, now_ms=0)
    with pytest.raises(TokenInvalid) as exc:
        signer.loads(signer.dumps(old), "demo", 1)
    assert exc.value.reason == "expired_token"


def test_rotated_secret_still_verifies_old_tokens():
    old_signer = TokenSigner(("old-secret-0123456789",), 182)
    raw = old_signer.dumps(old_signer.issue("cid", "demo", {"analytics": True}, 1))
    rotated = TokenSigner(("old-secret-0123456789", "new-secret-0123456789"), 182)
    assert rotated.loads(raw, "demo", 1).consent_id == "cid"
    new_raw = rotated.dumps(rotated.issue("cid2", "demo", {}, 1))
    with pytest.raises(TokenInvalid):
        old_signer.loads(new_raw, "demo", 1)  # new tokens are signed with the newest key


def test_revocation_applies_to_tokens_issued_before_it_only():
    revocations = RevocationList()
    revocations.revoke("a", 1000)
    assert revocations.is_revoked("a", 999) and revocations.is_revoked("a", 1000)
    assert not revocations.is_revoked("a", 1001)
    assert not revocations.is_revoked("b", 1)


@pytest.mark.parametrize("ua", [
    "curl/8.5.0", "python-requests/2.31.0", "Wget/1.21.3", "Go-http-client/1.1", "okhttp/4.12.0",
    "axios/1.6.2", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "PostmanRuntime/7.36.0", "",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "AdsBot-Google (+http://www.google.com/adsbot.html)", "Mediapartners-Google",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "facebookexternalhit/1.1",
    "Wget/1.21.4", "WhatsApp/2.23.20.0",
])
def test_bots_and_tools_are_recognised(ua):
    assert parse_user_agent(ua).is_bot


@pytest.mark.parametrize("ua,browser,os,device", [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
     "Chrome", "Windows", "desktop"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
     "Mobile Safari", "iOS", "mobile"),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
     "Mobile Safari", "iOS", "tablet"),
    ("Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
     "Chrome", "Android", "tablet"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox", "Mac OS X", "desktop"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
     "Chrome Mobile", "Android", "mobile"),
    ("Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-T220) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 "
     "Chrome/115.0.0.0 Mobile Safari/537.36", "Samsung Internet", "Android", "tablet"),  # sm-t<digit>, though "Mobile"
    ("Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/118.4.1 like Chrome/118.0.0.0 "
     "Safari/537.36", "Amazon Silk", "Android", "tablet"),
    ("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063", "Edge Mobile", "Windows Phone", "mobile"),
])
def test_browsers_os_and_device_class(ua, browser, os, device):
    info = parse_user_agent(ua)
    assert (info.browser, info.os, info.device, info.is_bot) == (browser, os, device, False)


def _device_reference(ua: str) -> str:
    """The device-class rule written with Python's `re`, as the gateway had it up to round 5."""
    if re.search(r"ipad|tablet|kindle|silk/|playbook|sm-t\d|tab\b", ua, re.IGNORECASE) or (
            "Android" in ua and "Mobile" not in ua):
        return "tablet"
    if re.search(r"mobi|iphone|ipod|android.*mobile|windows phone|blackberry|opera mini", ua, re.IGNORECASE):
        return "mobile"
    return "desktop"


def test_device_class_follows_the_rule_on_many_user_agents():
    """The gateway's RE2 set gives each UA the class the rule gives it (the benchmark's browser UAs of every
    kind, odd cases and spellings)."""
    from harness import ROOT

    spec = importlib.util.spec_from_file_location("collect_bench", ROOT / "bench" / "collect_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    corpus = [ua.format(v=v, m=m) for _, ua in bench.USER_AGENTS for v in (118, 125) for m in (1, 8)]
    corpus += ["Mozilla/5.0 (Linux; Android 9; TAB-A8) Chrome/99", "x TABLET y", "tab", "table", "MOBILE", "moBi",
               "Android; Mobile", "Android 10", "SM-T5", "sm-tx", "Windows Phone 8", "Opera Mini/7", "BlackBerry9700",
               "Kindle/3.0", "Mozilla/5.0 Silk/1.0", "PlayBook", "iPod touch", "android foo mobile", "Mobile Android"]
    checked = 0
    for ua in corpus:
        info = parse_user_agent(ua)
        if not info.is_bot:
            assert info.device == _device_reference(ua[:512]), ua
            checked += 1
    assert checked == len(corpus)  # none of them is taken for a bot


def test_browser_and_os_equal_the_parser_librarys_own_answer():
    """The gateway calls ua-parser's two Rust extractors directly (gateway/collect/useragent.py): the browser, its
    major version and the OS must be what the library's public `ua_parser.parse` says for the same UA."""
    import ua_parser

    from harness import ROOT

    spec = importlib.util.spec_from_file_location("collect_bench", ROOT / "bench" / "collect_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    corpus = [ua.format(v=v, m=m) for _, ua in bench.USER_AGENTS for v in (99, 118, 125) for m in (1, 8)]
    corpus += ["Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Opera/9.80 (J2ME/MIDP)",
               "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2)", "no browser at all", "Mozilla/5.0"]
    for ua in corpus:
        info, reference = parse_user_agent(ua), ua_parser.parse(ua)
        if info.is_bot:
            continue
        expected = (reference.user_agent.family if reference.user_agent else "",
                    (reference.user_agent.major or "") if reference.user_agent else "",
                    reference.os.family if reference.os else "")
        assert (info.browser, info.browser_version, info.os) == expected, ua
    assert sum(not parse_user_agent(ua).is_bot for ua in corpus) >= len(corpus) - 1


def test_event_ids_are_distinct_version_4_uuids():
    import uuid

    from gateway.collect.pipeline import random_uuid
    ids = [random_uuid() for _ in range(20_000)]
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == len(ids)
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == i for u, i in zip(parsed, ids))


@pytest.mark.parametrize("url,clean,host,utm", [
    ("https://www.example.com/a/b?email=x@y.example&utm_source=news&utm_medium=mail#frag",
     "https://www.example.com/a/b", "www.example.com", ("news", "mail", "")),
    ("http://user:secret@shop.example:8080?q=1", "http://shop.example:8080/", "shop.example", ("", "", "")),
])
def test_page_urls_lose_query_fragment_and_credentials(url, clean, host, utm):
    from gateway.collect.hit import parse_page_url
    page = parse_page_url(url)
    assert (page.clean, page.host, page.utm) == (clean, host, utm)
    assert "secret" not in page.clean and "email" not in page.clean


@pytest.mark.parametrize("bad", ["ftp://x.example/", "javascript:alert(1)", "https://[::1", "https://x.example:99999/", "/relative"])
def test_non_http_urls_are_refused(bad):
    from gateway.collect.hit import parse_page_url
    assert parse_page_url(bad) is None


def test_revocations_forget_what_no_live_token_can_need():
    revocations = RevocationList(token_max_age_ms=1000)
    revocations._prune_at = 3  # prune early so the test stays small
    revocations.revoke("old", 0)
    revocations.revoke("mid", 5000)
    revocations.revoke("new", 5500)  # prunes: "old" (revoked before now - max age) can matter to no token
    assert len(revocations) == 2
    assert revocations.is_revoked("mid", 4999) and not revocations.is_revoked("old", 0)


def test_no_log_message_can_break_its_line():
    """A vendor's error text or an exception message with a newline cannot forge a second log line."""
    import io
    import logging

    from gateway.logtext import OneLineFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("consentgate.test.oneline")
    log.addHandler(handler)
    log.propagate = False
    log.warning("vendor said %s", 'bad\n203.0.113.9 "GET /admin" 200\u2028x')
    log.removeHandler(handler)
    text = out.getvalue()
    assert text.count("\n") == 1 and "\\x0a203.0.113.9" in text and "\\u2028x" in text
