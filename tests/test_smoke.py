from harness import SITE_ORIGIN, UA_CHROME, grant


def test_consented_pageview_is_stored_after_stop(make_gateway):
    gw = make_gateway()
    with gw.client() as c:
        token = grant(c, analytics=True)["token"]
        r = c.post("/s/demo/collect", json={"url": "https://www.example.com/a", "consent": token},
                   headers={"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME})
    assert r.status_code == 202 and r.headers["x-consentgate-result"] == "stored"
    gw.stop()
    assert gw.sql("SELECT path FROM {db}.events") == [{"path": "/a"}]
