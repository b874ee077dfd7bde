"""POST/GET/DELETE /s/{site}/consent against a real gateway, and CORS for the banner's calls."""
from datetime import datetime, timezone

from harness import SITE_ORIGIN, UA_CHROME, grant

H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}


def test_grant_returns_token_and_sets_a_strict_cookie(module_gateway):
    with module_gateway.client() as c:
        r = c.post("/s/demo/consent", json={"choices": {"analytics": True, "marketing": False},
                                            "method": "custom", "language": "nl"}, headers=H)
    assert r.status_code == 200
    body = r.json()
    assert body["choices"] == {"necessary": True, "preferences": False, "analytics": True, "marketing": False}
    assert body["policy_version"] == 1 and len(body["consent_id"]) == 32
    expires = datetime.fromisoformat(body["expires_at"])
    days = (expires - datetime.now(timezone.utc)).days
    assert 180 <= days <= 182
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"cg_consent={body['token']}")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" not in cookie  # plain http here


def test_get_returns_current_consent_or_null(module_gateway):
    with module_gateway.client() as c:
        assert c.get("/s/demo/consent", headers=H).json()["choices"] is None
        token = grant(c, analytics=True)["token"]
        # the cookie jar now holds cg_consent; the header works too for cross-site callers
        assert c.get("/s/demo/consent", headers=H).json()["choices"]["analytics"] is True
    with module_gateway.client() as fresh:
        assert fresh.get("/s/demo/consent", headers={**H, "X-Consent-Token": token}).json()["choices"]["analytics"] is True


def test_withdraw_clears_cookie_and_keeps_the_consent_id(module_gateway):
    with module_gateway.client() as c:
        first = grant(c, analytics=True, marketing=True)
        r = c.request("DELETE", "/s/demo/consent", headers=H)
        assert r.status_code == 200 and r.json()["withdrawn"] is True and r.json()["consent_id"] == first["consent_id"]
        assert 'cg_consent=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
        assert c.get("/s/demo/consent", headers={**H, "X-Consent-Token": first["token"]}).json()["choices"] is None
        # the same visitor decides again, with the token their withdrawal returned
        again = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "consent": r.json()["token"]}, headers=H).json()
        assert again["consent_id"] == first["consent_id"]


def test_narrowing_a_choice_revokes_the_broader_token(module_gateway):
    with module_gateway.client() as c:
        broad = grant(c, analytics=True, marketing=True)
        narrow = c.post("/s/demo/consent", json={"choices": {"analytics": True}, "method": "custom"}, headers=H).json()
        assert narrow["consent_id"] == broad["consent_id"]
        assert c.get("/s/demo/consent", headers={"X-Consent-Token": broad["token"]}).json()["choices"] is None
        assert c.get("/s/demo/consent", headers={"X-Consent-Token": narrow["token"]}).json()["choices"]["marketing"] is False


def test_bad_consent_bodies_get_400_with_a_reason(module_gateway):
    cases = [
        ({"choices": {"analytics": "yes"}}, "choices.analytics"),
        ({"choices": {"tracking": True}}, "unknown category"),
        ({"choices": []}, "'choices' must be an object"),
        ({"choices": {"analytics": True}, "method": "accept_all"}, "accept_all"),
        ({"choices": {"analytics": True}, "method": "reject_all"}, "reject_all"),
        ({"choices": {}, "method": "shrug"}, "'method' must be one of"),
        ({"choices": {}, "language": 7}, "'language' must be a string"),
    ]
    with module_gateway.client() as c:
        for body, detail in cases:
            r = c.post("/s/demo/consent", json=body, headers=H)
            assert r.status_code == 400, body
            assert r.json()["error"] == "bad_request" and detail in r.json()["detail"], r.json()


def test_unknown_site_and_foreign_origin(module_gateway):
    with module_gateway.client() as c:
        r = c.post("/s/nosuchsite/consent", json={"choices": {}}, headers=H)
        assert r.status_code == 404 and r.json()["error"] == "unknown_site"
        r = c.post("/s/demo/consent", json={"choices": {}}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["error"] == "bad_origin"
        r = c.post("/s/demo/consent", json={"choices": {}}, headers={"Origin": "https://www.other.example"})
        assert r.status_code == 403  # another configured site's origin is foreign here


def test_cors_answers_only_the_sites_own_origins(module_gateway):
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with module_gateway.client() as c:
        ok = c.options("/s/demo/collect", headers={"Origin": SITE_ORIGIN, **pre})
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == SITE_ORIGIN
        assert ok.headers["access-control-allow-credentials"] == "true"
        bad = c.options("/s/demo/collect", headers={"Origin": "https://www.other.example", **pre})
        assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
        r = c.post("/s/demo/collect", json={"url": "https://www.example.com/"}, headers=H)
        assert r.headers["access-control-allow-origin"] == SITE_ORIGIN
        assert "X-Consentgate-Result" in r.headers["access-control-expose-headers"]


def test_cookie_is_secure_when_a_trusted_proxy_says_https(make_gateway):
    gw = make_gateway(gateway={"trusted_proxies": ["127.0.0.1/32"]})
    with gw.client() as c:
        r = c.post("/s/demo/consent", json={"choices": {}}, headers={**H, "X-Forwarded-Proto": "https"})
        assert "Secure" in r.headers["set-cookie"]
    untrusted = make_gateway()
    with untrusted.client() as c:
        r = c.post("/s/demo/consent", json={"choices": {}}, headers={**H, "X-Forwarded-Proto": "https"})
        assert "Secure" not in r.headers["set-cookie"]  # anyone can send the header; only a trusted proxy counts
