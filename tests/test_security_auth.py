"""Issue 8, findings 1, 4, 5, 9 (rate part) and 10 (auth part), against real gateways:
the secret's precedence and strength, per-site stats tokens, brute-force limits and dashboard
sessions, the metrics token, and the per-network rate of consent decisions.

Client networks are told apart the way production does it: the gateway trusts the loopback
proxy (trusted_proxies) and reads the client from X-Forwarded-For, with documentation addresses.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from gateway.config import PUBLIC_SECRETS, SECRET_ENV, ConfigError, parse_config
from gateway.ratelimit import NetworkLimiter
from gateway.tokens import TokenSigner
from harness import ROOT, SECRET, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, grant, write_config

GLOBAL_TOKEN = STATS_TOKEN
SHOP_TOKEN = "shop-only-stats-token-0123456789"
OTHER_TOKEN = "other-only-stats-token-0123456789"
METRICS_TOKEN = "metrics-token-0123456789abcdef"
NET_A = "203.0.113.77"  # the attacker's network (203.0.113.0/24)
NET_A2 = "203.0.113.200"  # same /24: the same network
NET_B = "198.51.100.20"  # another network
PROXIED = {"trusted_proxies": ["127.0.0.1/32"]}
SITES = {"shop": {"origins": [SITE_ORIGIN], "stats_tokens": [SHOP_TOKEN]},
         "other": {"origins": ["https://www.other.example"], "stats_tokens": [OTHER_TOKEN]}}


def from_net(ip: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **headers}


def bearer(token: str, ip: str = NET_B) -> dict[str, str]:
    return from_net(ip, Authorization=f"Bearer {token}")


# ---- finding 1: the secret -------------------------------------------------------------------------


def secrets_shown_in_the_docs() -> dict[str, str]:
    """Every secret_key / old_secret_keys / CONSENTGATE_SECRET_KEY value in README.md, docs/*.md and examples/*."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*"))]
    found: dict[str, str] = {}
    for path in files:
        text = path.read_text(errors="replace")
        values = re.findall(r"secret_key\s*=\s*[\"']([^\"']*)[\"']", text)
        for old in re.findall(r"old_secret_keys\s*=\s*\[([^\]]*)\]", text):
            values += re.findall(r"[\"']([^\"']*)[\"']", old)
        values += [v for v in re.findall(rf"{SECRET_ENV}=([^\s\"']+)", text) if v not in ("...", "$SECRET")]
        for value in values:
            found.setdefault(value, str(path.relative_to(ROOT)))
    return found


def config_with_secret(secret: str) -> dict:
    return {"gateway": {"secret_key": secret}, "sites": {"s": {"origins": ["https://www.example.com"]}}}


def test_every_secret_shown_in_readme_docs_and_examples_is_refused(tmp_path):
    shown = secrets_shown_in_the_docs()
    assert "replace-me-with-the-output-of-secrets.token_urlsafe(32)" in shown  # the scan finds the placeholder
    for value, where in {**shown, **{s: "gateway.config.PUBLIC_SECRETS" for s in PUBLIC_SECRETS}}.items():
        with pytest.raises(ConfigError) as exc:
            parse_config(config_with_secret(value), tmp_path, env={})
        assert exc.value.problems[0].startswith("gateway.secret_key:"), (value, where)
        assert "secrets.token_urlsafe(32)" in exc.value.problems[0]  # says how to make one
        with pytest.raises(ConfigError):  # from the environment too
            parse_config(config_with_secret(""), tmp_path, env={SECRET_ENV: value})


@pytest.mark.parametrize("command", ["serve", "check-config"])
@pytest.mark.parametrize("secret,says", [("dev-only-secret-change-me-please", "published example value"),
                                         ("sixteen-chars-ok", "too short (16 characters)")])
def test_serve_and_check_config_refuse_a_public_or_short_secret(tmp_path, command, secret, says):
    """Finding 1: the shipped example's secret (32 characters) and a 16-character one used to start a gateway."""
    config = write_config(tmp_path, gateway={"secret_key": secret})
    args = ["serve", "--config", str(config), "--port", "9"] if command == "serve" else ["check-config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    out = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert says in out.stderr and 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"' in out.stderr


def test_the_environment_secret_wins_in_a_running_gateway(make_gateway):
    """Finding 1: with CONSENTGATE_SECRET_KEY set, the file's secret_key used to sign and verify tokens."""
    env_secret = "the-operators-own-secret-0123456789abcdef"
    gw = make_gateway(env={SECRET_ENV: env_secret})  # the file holds harness.SECRET
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        assert TokenSigner((env_secret,), 182).loads(token, "demo", 1).choices["analytics"]
        forged = TokenSigner((SECRET,), 182)  # whoever read the config file (or a published example)
        forged_token = forged.dumps(forged.issue("f00d", "demo", {"analytics": True}, 1))
        r = c.post("/s/demo/collect", json={"url": "https://www.example.com/", "consent": forged_token},
                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
        assert r.headers["x-consentgate-result"] == "dropped: bad_token"
    assert f"secret key from {SECRET_ENV}" in gw.logs() and env_secret not in gw.logs()


# ---- finding 4: per-site stats tokens -----------------------------------------------------------------


@pytest.fixture(scope="module")
def scoped_gateway(tmp_path_factory):
    from harness import GatewayProcess

    folder = tmp_path_factory.mktemp("scoped")
    gw = GatewayProcess(write_config(folder, gateway=PROXIED, sites=SITES), folder).start()
    yield gw
    gw.kill()


def test_a_site_token_reads_only_its_site(scoped_gateway):
    with scoped_gateway.client() as c:
        assert c.get("/api/stats/shop/summary", headers=bearer(SHOP_TOKEN)).status_code == 200
        for path in ("/api/stats/other/summary", "/api/stats/other/breakdown/page", "/api/stats/other/realtime",
                     "/api/stats/other/consent", "/api/stats/other/timeseries?format=csv", "/api/stats/nosuch/summary"):
            r = c.get(path, headers=bearer(SHOP_TOKEN))
            assert r.status_code == 403, (path, r.text)  # an unknown site too: no probing for site names
            assert r.json()["error"] == "forbidden" and "stats_tokens" in r.json()["detail"]
        assert c.get("/api/stats/sites", headers=bearer(SHOP_TOKEN)).json()["sites"] == [
            {"name": "shop", "timezone": "Europe/Amsterdam", "can_write": True}]
        assert [s["name"] for s in c.get("/api/stats/sites", headers=bearer(OTHER_TOKEN)).json()["sites"]] == ["other"]
        # a global token reads every site; an unknown site is then a plain 404
        assert [s["name"] for s in c.get("/api/stats/sites", headers=bearer(GLOBAL_TOKEN)).json()["sites"]] == ["shop", "other"]
        assert c.get("/api/stats/other/summary", headers=bearer(GLOBAL_TOKEN)).status_code == 200
        assert c.get("/api/stats/nosuch/summary", headers=bearer(GLOBAL_TOKEN)).status_code == 404
        assert c.get("/api/stats/shop/summary", headers=from_net(NET_B)).status_code == 401


def test_a_site_token_dashboard_session_lists_and_reads_only_its_site(scoped_gateway):
    with scoped_gateway.client(headers=from_net(NET_B)) as c:
        assert c.post("/dashboard/login", data={"token": OTHER_TOKEN}).status_code == 303
        assert [s["name"] for s in c.get("/api/stats/sites").json()["sites"]] == ["other"]
        assert c.get("/api/stats/other/summary").status_code == 200
        assert c.get("/api/stats/shop/summary").status_code == 403


# ---- finding 5: brute force -------------------------------------------------------------------------------


def test_ten_failed_token_checks_block_the_network_for_the_right_token_too(make_gateway):
    """Finding 5: 200 wrong logins took 0.4 s and were all answered 401."""
    gw = make_gateway(gateway={**PROXIED, "metrics_token": METRICS_TOKEN}, sites=SITES)
    with gw.client() as c:
        # a marketing colleague behind the same NAT logged in before the attack
        c.post("/dashboard/login", data={"token": GLOBAL_TOKEN}, headers=from_net(NET_A2))
        session = dict(c.cookies)
        c.cookies.clear()
        for i in range(10):
            if i % 2:
                r = c.get("/api/stats/shop/summary", headers=bearer(f"guess-{i}-0123456789abcdefgh", NET_A))
            else:
                r = c.post("/dashboard/login", data={"token": f"guess-{i}"}, headers=from_net(NET_A))
            assert r.status_code == 401, (i, r.text)
        blocked = [
            c.get("/api/stats/shop/summary", headers=bearer(GLOBAL_TOKEN, NET_A)),
            c.get("/api/stats/shop/summary", headers=bearer(SHOP_TOKEN, NET_A2)),  # same /24
            c.get("/metrics", headers=bearer(METRICS_TOKEN, NET_A)),
        ]
        for r in blocked:
            assert r.status_code == 429, r.text
            assert r.json()["error"] == "rate_limited" and "failed token checks" in r.json()["detail"]
            assert 1 <= int(r.headers["retry-after"]) <= 60
        page = c.post("/dashboard/login", data={"token": GLOBAL_TOKEN}, headers=from_net(NET_A))
        assert page.status_code == 429 and 1 <= int(page.headers["retry-after"]) <= 60
        assert "failed logins from your network" in page.text and "cg_stats" not in page.headers.get("set-cookie", "")
        # another network is not affected, nor is an existing session (a session id cannot be guessed)
        assert c.get("/api/stats/shop/summary", headers=bearer(GLOBAL_TOKEN, NET_B)).status_code == 200
        assert httpx.get(f"{gw.url}/api/stats/shop/summary", headers=from_net(NET_A2), cookies=session).status_code == 200
    gw.stop()
    assert NET_A not in gw.logs() and NET_A2 not in gw.logs()


def test_the_limiter_window_passes_and_its_memory_is_bounded():
    """The one limiter class, on an injected clock (a minute is not waited for in a test)."""
    now = [1000.0]
    limiter = NetworkLimiter(limit=10, window=60.0, max_networks=100, clock=lambda: now[0])
    for _ in range(10):
        assert limiter.retry_after("203.0.113.0") == 0
        assert limiter.add("203.0.113.0") == 0
    assert limiter.retry_after("203.0.113.0") == 60
    now[0] += 59.5
    assert limiter.retry_after("203.0.113.0") == 1 and limiter.add("203.0.113.0") == 1
    now[0] += 0.5
    assert limiter.retry_after("203.0.113.0") == 0  # the window has passed
    for i in range(1000):  # a flood from many networks
        limiter.add(f"2001:db8:{i:x}::")
    assert len(limiter) == 100
    assert limiter.retry_after("203.0.113.0") == 0  # forgotten, at worst: never an unbounded table


# ---- finding 5: the session cookie --------------------------------------------------------------------


def session_cookie(response: httpx.Response) -> str:
    match = re.search(r"cg_stats=([^;]+)", response.headers.get("set-cookie", ""))
    assert match, response.headers
    return match.group(1).strip('"')


def test_the_session_cookie_is_secure_over_https_and_holds_no_token_digest(scoped_gateway):
    with scoped_gateway.client() as c:
        https = c.post("/dashboard/login", data={"token": GLOBAL_TOKEN},
                       headers=from_net(NET_B, **{"X-Forwarded-Proto": "https"}))
        attributes = https.headers["set-cookie"].lower()
        assert "secure" in attributes and "httponly" in attributes and "samesite=strict" in attributes
        plain = c.post("/dashboard/login", data={"token": GLOBAL_TOKEN}, headers=from_net(NET_B))
        assert "secure" not in plain.headers["set-cookie"].lower()  # plain http (a local test): a Secure cookie would be lost
    values = [session_cookie(https), session_cookie(plain)]
    assert values[0] != values[1]  # a random session id per login
    digests = {getattr(hashlib, name)(GLOBAL_TOKEN.encode()).hexdigest() for name in ("sha256", "sha1", "md5", "sha512")}
    for value in values:
        assert GLOBAL_TOKEN not in value
        _, payload = URLSafeTimedSerializer("any key").loads_unsafe(value)  # the readable part of the cookie
        assert isinstance(payload, dict) and not set(map(str, payload.values())) & digests, payload


def test_logout_ends_the_session_in_the_gateway(scoped_gateway):
    """Finding 5: logout only cleared the browser's cookie; a copied cookie kept working for 12 hours."""
    with scoped_gateway.client(headers=from_net(NET_B)) as c:
        value = session_cookie(c.post("/dashboard/login", data={"token": GLOBAL_TOKEN}))
        assert c.get("/api/stats/sites").status_code == 200
        out = c.post("/dashboard/logout")
        assert out.status_code == 303 and out.headers["location"] == "/dashboard"
    with scoped_gateway.client(headers=from_net(NET_B), cookies={"cg_stats": value}) as copied:
        r = copied.get("/api/stats/sites")
        assert r.status_code == 401, r.text
        assert 'name="token"' in copied.get("/dashboard").text  # the login page again


def test_a_logged_out_session_stays_ended_when_the_ended_ids_overflow(tmp_path, monkeypatch):
    """The gateway keeps at most MAX_ENDED_SESSIONS ended ids. Anyone with a link without a password can open and
    end sessions at will; forgetting the oldest ended id used to let its (copied) cookie in again. Now every
    session made until the forgotten one was ended counts as ended. In-process: TokenAuth with a real
    config, real signed cookies and Starlette requests, the cap lowered to 3."""
    from starlette.requests import Request

    from gateway import stats_auth
    from gateway.config import parse_config

    monkeypatch.setattr(stats_auth, "MAX_ENDED_SESSIONS", 3)
    config = parse_config({"gateway": {"secret_key": SECRET, "stats_tokens": [GLOBAL_TOKEN]},
                           "sites": {"demo": {"origins": ["https://www.example.com"]}}}, tmp_path, env={})
    auth = stats_auth.TokenAuth(config)

    def request(cookie: str) -> Request:
        return Request({"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", cookie.encode())]})

    stolen = f"{stats_auth.SESSION_COOKIE}={auth.new_session(GLOBAL_TOKEN)}"
    assert auth.dashboard_access(request(stolen)) is not None
    auth.end_session(request(stolen))  # the owner logs out; someone kept a copy of the cookie
    assert auth.dashboard_access(request(stolen)) is None
    for _ in range(5):  # more logouts than the gateway remembers ended ids
        auth.end_session(request(f"{stats_auth.SHARE_COOKIE}={auth.new_share_session('link0123')}"))
    assert auth.dashboard_access(request(stolen)) is None


def test_login_and_logout_refuse_a_foreign_origin(scoped_gateway):
    own = scoped_gateway.url
    with scoped_gateway.client(headers=from_net(NET_B)) as c:
        for origin in ("https://evil.example", "null", own.replace("127.0.0.1", "localhost")):
            r = c.post("/dashboard/login", data={"token": GLOBAL_TOKEN}, headers={"Origin": origin})
            assert r.status_code == 403 and r.json()["error"] == "bad_origin", r.text
            assert "cg_stats" not in r.headers.get("set-cookie", "")
        r = c.post("/dashboard/login", data={"token": GLOBAL_TOKEN}, headers={"Referer": "https://evil.example/x"})
        assert r.status_code == 403
        ok = c.post("/dashboard/login", data={"token": GLOBAL_TOKEN}, headers={"Origin": own})
        assert ok.status_code == 303
        evil_logout = c.post("/dashboard/logout", headers={"Origin": "https://evil.example"})
        assert evil_logout.status_code == 403 and c.get("/api/stats/sites").status_code == 200
        assert c.post("/dashboard/logout", headers={"Origin": own}).status_code == 303
        assert c.get("/api/stats/sites").status_code == 401


# ---- finding 10: the metrics token -------------------------------------------------------------------------


def test_metrics_need_the_metrics_token_when_one_is_set(make_gateway, scoped_gateway):
    gw = make_gateway(gateway={**PROXIED, "metrics_token": METRICS_TOKEN})
    with gw.client() as c:
        for headers in ({}, bearer("wrong-metrics-token-0123456789"), {"Authorization": f"Basic {METRICS_TOKEN}"},
                        bearer(GLOBAL_TOKEN)):  # a stats token is not the metrics token
            r = c.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", r.text
            assert "consentgate_" not in r.text
        r = c.get("/metrics", headers=bearer(METRICS_TOKEN))
        assert r.status_code == 200 and "consentgate_spool_backlog_bytes" in r.text
    # without a metrics_token, /metrics stays open (nginx keeps it to internal networks)
    assert httpx.get(f"{scoped_gateway.url}/metrics").status_code == 200


# ---- finding 9 (rate part): consent, withdraw and erase per client network -------------------------


def test_consent_withdraw_and_erase_are_rate_limited_per_network(make_gateway):
    gw = make_gateway(gateway={**PROXIED, "consent_rate_per_minute": 5})
    h = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
    body = {"choices": {"analytics": True}, "method": "custom"}
    tokens = []
    with gw.client() as c:
        for _ in range(4):  # four visitors of one office
            tokens.append(c.post("/s/demo/consent", json=body, headers=from_net(NET_A, **h)).json()["token"])
            c.cookies.clear()
        assert c.request("DELETE", "/s/demo/consent", headers=from_net(NET_A2, **h, **{"X-Consent-Token": tokens[0]})
                         ).status_code == 200  # the 5th decision of 203.0.113.0/24
        refused = [
            c.post("/s/demo/consent", json=body, headers=from_net(NET_A, **h)),
            c.request("DELETE", "/s/demo/consent", headers=from_net(NET_A, **h, **{"X-Consent-Token": tokens[1]})),
            c.request("DELETE", "/s/demo/privacy/me", headers=from_net(NET_A, **h, **{"X-Consent-Token": tokens[2]})),
        ]
        for r in refused:
            assert r.status_code == 429 and r.json()["error"] == "rate_limited", r.text
            assert "consent decisions or privacy requests a minute from your network" in r.json()["detail"]
            assert 1 <= int(r.headers["retry-after"]) <= 60
        assert c.post("/s/demo/consent", json=body, headers=from_net(NET_B, **h)).status_code == 200
        # collecting is not a decision: not limited by this rate
        r = c.post("/s/demo/collect", json={"url": "https://www.example.com/", "consent": tokens[3]},
                   headers=from_net(NET_A, **h))
        assert r.headers["x-consentgate-result"] == "stored"
    gw.stop()
    rows = gw.sql("SELECT action, count() AS n FROM {db}.consents GROUP BY action ORDER BY action")
    assert rows == [{"action": "grant", "n": 5}, {"action": "withdraw", "n": 1}]  # nothing of the refused ones
    assert NET_A not in gw.logs()


def test_the_default_consent_rate_leaves_room_for_an_office(tmp_path):
    config = parse_config({"gateway": {"secret_key": SECRET}, "sites": {"s": {"origins": [SITE_ORIGIN]}}},
                          Path(tmp_path), env={})
    assert config.consent_rate_per_minute == 600  # 10 decisions a second from one /24 or /48


# ---- issue 12: shared links' sessions -----------------------------------------------------------------


def test_stats_access_says_whether_it_may_write():
    from gateway.stats_auth import StatsAccess

    shared = StatsAccess(frozenset({"shop"}), read_only=True, shared_link="0123abcd")
    assert shared.can_read("shop") and not shared.can_write("shop") and not shared.can_read("other")
    site_token = StatsAccess(frozenset({"shop"}))
    assert site_token.can_write("shop") and not site_token.can_write("other")
    assert StatsAccess(None).can_write("any-site")


def test_a_shared_link_cookie_cannot_be_forged_or_swapped_for_a_login(scoped_gateway):
    with scoped_gateway.client(headers=from_net(NET_B)) as c:
        made = c.post("/api/stats/shop/shared-links", json={}, headers=bearer(GLOBAL_TOKEN))
        assert made.status_code == 201, made.text
        path = "/" + made.json()["url"].split("/", 3)[3]
        https = c.get(path, headers={"X-Forwarded-Proto": "https"})
        assert https.status_code == 200, https.text
        attributes = https.headers["set-cookie"].lower()
        assert all(a in attributes for a in ("httponly", "secure", "samesite=none", "partitioned"))
        plain = c.get(path)  # the client has a session now: no new cookie; a fresh client gets a Lax one
    with scoped_gateway.client(headers=from_net(NET_B)) as fresh:
        lax = fresh.get(path).headers["set-cookie"].lower()
        assert "samesite=lax" in lax and "secure" not in lax and plain.status_code == 200
        value = fresh.cookies["cg_share"]
        link_id = URLSafeTimedSerializer("any key").loads_unsafe(value)[1]["l"]
        assert fresh.get("/api/stats/shop/summary").status_code == 200
    forged = URLSafeTimedSerializer(["another-secret-key-0123456789abcdef"], salt="consentgate-share-session.v1")
    with scoped_gateway.client(headers=from_net(NET_B)) as c:
        login = c.post("/dashboard/login", data={"token": SHOP_TOKEN})
        stats_session = session_cookie(login)
    for cookie in (forged.dumps({"sid": "x", "l": link_id}), stats_session, value[:-2] + "xx"):
        with scoped_gateway.client(headers=from_net(NET_B), cookies={"cg_share": cookie}) as c:
            assert c.get("/api/stats/shop/summary").status_code == 401
