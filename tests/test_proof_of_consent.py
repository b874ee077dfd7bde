"""Proof of consent an auditor accepts (issue 9): what the visitor saw (banner_version, banner_versions,
page), the auditor export (API and CLI, streamed), and retention by kind. Real gateways, real chDB."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from harness import ROOT, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, GatewayProcess, PeakRSS, write_config

AUTH = {"Authorization": f"Bearer {STATS_TOKEN}"}
OTHER_SITE_TOKEN = "other-site-stats-token-0123456789"
H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
I18N = ROOT / "banner" / "i18n"
SITE = {
    "origins": [SITE_ORIGIN], "policy_version": 3, "policy_url": "https://www.example.com/privacy",
    "controller": "Voorbeeld B.V.", "languages": ["nl", "en"],
    "cookies": {"analytics": ["_ga", "_ga_*"]},
    "texts": {"en": {"title": "Cookies at Voorbeeld"}},
    "vendors": [{"name": "Voorbeeld CRM", "category": "marketing", "type": "webhook",
                 "url": "http://127.0.0.1:9/hook"}],
}
SITES = {"demo": SITE, "other": {"origins": ["https://www.other.example"], "stats_tokens": [OTHER_SITE_TOKEN]}}


def canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def expected_shown(language: str) -> dict[str, Any]:
    """What the demo site's banner shows in a language, built here from the i18n files and SITE."""
    texts = {**json.loads((I18N / f"{language}.json").read_text(encoding="utf-8")), **SITE["texts"].get(language, {})}
    return {
        "site": "demo", "language": language, "texts": texts,
        "categories": ["necessary", "preferences", "analytics", "marketing"],
        "cookies": {"analytics": ["_ga", "_ga_*"]}, "vendors": {"marketing": ["Voorbeeld CRM"]},
        "controller": "Voorbeeld B.V.", "policy_version": 3, "policy_url": "https://www.example.com/privacy",
    }


def version_hash(shown: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(shown).encode("utf-8")).hexdigest()[:32]


def served_versions(gw: GatewayProcess, site: str = "demo") -> dict[str, str]:
    """language -> hash, as inlined in the banner.js the gateway serves (what the banner sends)."""
    js = httpx.get(f"{gw.url}/s/{site}/banner.js").text
    found = re.search(r'"versions":(\{[^}]*\})', js)
    assert found, "banner.js holds no versions map"
    return json.loads(found.group(1))


def decide(c: httpx.Client, choices: dict[str, bool], method: str, language: str, **extra: Any) -> dict[str, Any]:
    headers = {**H, **extra.pop("headers", {})}
    r = c.post("/s/demo/consent", json={"choices": choices, "method": method, "language": language, **extra},
               headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def export(gw: GatewayProcess, site: str = "demo", **params: str) -> httpx.Response:
    return httpx.get(f"{gw.url}/api/consents/{site}", params=params, headers=AUTH, timeout=60)


def wait_until_stored(gw: GatewayProcess, decisions: int) -> dict[str, Any]:
    """The export once the batch writer has moved `decisions` rows into the store."""
    deadline = time.monotonic() + 60
    while True:
        body = export(gw).json()
        # A version and its first decision can reach the store in two batches: wait for both.
        named = {d.get("banner_version") for d in body["decisions"]} - {"unknown", "", None}
        if body["count"] >= decisions and named <= set(body["banner_versions"]):
            return body
        assert time.monotonic() < deadline, f"{body['count']} of {decisions} decisions stored after 60 s"
        time.sleep(0.2)


def test_the_banner_hashes_exactly_what_it_shows_per_language(make_gateway):
    gw = make_gateway(sites=SITES)
    versions = served_versions(gw)
    assert versions == {"nl": version_hash(expected_shown("nl")), "en": version_hash(expected_shown("en"))}
    assert versions["nl"] != versions["en"]


def test_a_text_or_policy_change_is_a_new_version(make_gateway):
    first = make_gateway(sites=SITES)
    changed = make_gateway(sites={"demo": {**SITE, "texts": {"en": {"title": "Cookies at Voorbeeld!"}}}})
    bumped = make_gateway(sites={"demo": {**SITE, "policy_version": 4}})
    a, b, c = served_versions(first), served_versions(changed), served_versions(bumped)
    assert a["nl"] == b["nl"] and a["en"] != b["en"]  # only the English text changed
    assert c["nl"] != a["nl"] and c["en"] != a["en"]  # the policy version is part of what was shown


def test_every_decision_keeps_the_version_it_was_shown_and_the_cleaned_page(make_gateway):
    gw = make_gateway(sites=SITES)
    versions = served_versions(gw)
    page = "https://www.example.com/shop/coffee?email=jan%40example.nl&utm_source=news#top"
    with gw.client() as c:
        accepted = decide(c, {"preferences": True, "analytics": True, "marketing": True}, "accept_all", "nl",
                          banner_version=versions["nl"], page=page)
    with gw.client() as c:
        refused = decide(c, {}, "reject_all", "en", banner_version=versions["en"], page="https://www.example.com/")
    with gw.client() as c:
        custom = decide(c, {"analytics": True}, "custom", "nl", banner_version="f" * 32, page="javascript:alert(1)")
    with gw.client() as c:
        # A served hash, but of the other language than the one the decision was made in: not what was shown.
        mismatched = decide(c, {}, "reject_all", "nl", banner_version=versions["en"])
    with gw.client() as c:
        gpc = decide(c, {"analytics": True}, "gpc", "en", banner_version=versions["en"], headers={"Sec-GPC": "1"})
        r = c.request("DELETE", "/s/demo/consent", headers=H)
        assert r.status_code == 200 and r.json()["withdrawn"] is True
    body = wait_until_stored(gw, 6)
    assert body["count"] == 6 and len(body["decisions"]) == 6
    by = {(d["consent_id"], d["action"]): d for d in body["decisions"]}
    a = by[(accepted["consent_id"], "grant")]
    assert (a["method"], a["language"], a["banner_version"]) == ("accept_all", "nl", versions["nl"])
    assert a["page"] == "https://www.example.com/shop/coffee"  # no query (e-mail!), no fragment
    assert a["analytics"] is a["marketing"] is a["preferences"] is True and a["policy_version"] == 3
    r = by[(refused["consent_id"], "grant")]
    assert (r["method"], r["banner_version"], r["analytics"], r["marketing"]) == ("reject_all", versions["en"], False, False)
    assert by[(custom["consent_id"], "grant")]["banner_version"] == "unknown"  # a script cannot choose the proof
    assert by[(custom["consent_id"], "grant")]["page"] == ""
    assert by[(mismatched["consent_id"], "grant")]["banner_version"] == "unknown"
    g = by[(gpc["consent_id"], "grant")]
    assert (g["method"], g["gpc"], g["banner_version"]) == ("gpc", True, versions["en"])
    w = by[(gpc["consent_id"], "withdraw")]
    assert w["analytics"] is w["marketing"] is False
    # Each version named in the range resolves, once, to the exact wording shown.
    assert set(body["banner_versions"]) == {versions["nl"], versions["en"]}
    for language in ("nl", "en"):
        resolved = body["banner_versions"][versions[language]]
        assert resolved["language"] == language and resolved["shown"] == expected_shown(language)
        assert version_hash(resolved["shown"]) == versions[language]  # an auditor can recompute the hash


def test_csv_export_repeats_the_wording_on_every_row(make_gateway):
    gw = make_gateway(sites=SITES)
    versions = served_versions(gw)
    with gw.client() as c:
        decide(c, {}, "reject_all", "nl", banner_version=versions["nl"])
        decide(c, {"analytics": True}, "custom", "nl", banner_version=versions["nl"])
    with gw.client() as c:
        decide(c, {}, "reject_all", "en")  # an API client that sent no version
    wait_until_stored(gw, 3)
    r = export(gw, format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="consents-demo-' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3
    assert [row["method"] for row in rows] == ["reject_all", "custom", "reject_all"]  # oldest first
    for row in rows[:2]:
        assert row["banner_version"] == versions["nl"] and row["banner_language"] == "nl"
        assert json.loads(row["wording"]) == expected_shown("nl")
        assert hashlib.sha256(row["wording"].encode()).hexdigest()[:32] == row["banner_version"]
    assert rows[1]["analytics"] == "1" and rows[1]["marketing"] == "0"
    assert (rows[2]["banner_version"], rows[2]["wording"]) == ("unknown", "")


def test_export_range_is_utc_days_inclusive(make_gateway):
    from stats_seed import Decision, seed, utc

    gw = make_gateway(sites=SITES, start=False)
    seed(gw.config_path, [], [
        Decision("demo", "a" * 32, utc(2026, 3, 1, 0, 0, 0), "accept_all", True, True, True),
        Decision("demo", "b" * 32, utc(2026, 3, 2, 23, 59, 59), "reject_all"),
        Decision("demo", "c" * 32, utc(2026, 3, 3, 0, 0, 0), "withdraw"),
        Decision("other", "d" * 32, utc(2026, 3, 2, 12, 0, 0), "reject_all"),
    ])
    gw.start()
    body = export(gw, **{"from": "2026-03-01", "to": "2026-03-02"}).json()
    assert [d["consent_id"][0] for d in body["decisions"]] == ["a", "b"]
    assert body["decisions"][0]["timestamp"] == "2026-03-01T00:00:00.000Z"
    assert body["decisions"][1]["banner_version"] == ""  # decided before versions were recorded
    assert export(gw, **{"from": "2026-03-03", "to": "2026-03-03"}).json()["decisions"][0]["action"] == "withdraw"
    assert export(gw, **{"from": "2026-03-04", "to": "2026-03-09"}).json()["count"] == 0


def test_export_needs_a_token_for_that_site_and_good_parameters(make_gateway):
    gw = make_gateway(sites=SITES)
    assert httpx.get(f"{gw.url}/api/consents/demo").status_code == 401
    other = httpx.get(f"{gw.url}/api/consents/demo", headers={"Authorization": f"Bearer {OTHER_SITE_TOKEN}"})
    assert other.status_code == 403 and other.json()["error"] == "forbidden"
    own = httpx.get(f"{gw.url}/api/consents/other", headers={"Authorization": f"Bearer {OTHER_SITE_TOKEN}"})
    assert own.status_code == 200 and own.json()["count"] == 0
    assert export(gw, "nosuchsite").status_code == 404
    for params, words in [({"from": "2026-05-02", "to": "2026-05-01"}, "after"),
                          ({"from": "yesterday"}, "YYYY-MM-DD"),
                          ({"format": "xml"}, "json or csv"),
                          ({"to": "9999-12-31"}, "between 2000-01-01 and 2199-12-31"),
                          ({"consent_id": "a" * 32}, "unknown parameter")]:
        r = export(gw, **params)
        assert r.status_code == 400 and words in r.json()["detail"], (params, r.text)


def test_consent_body_bounds_version_and_page(make_gateway):
    gw = make_gateway(sites=SITES)
    with gw.client() as c:
        for extra, words in [({"banner_version": "a" * 65}, "banner_version"), ({"banner_version": 7}, "string"),
                             ({"page": "https://www.example.com/" + "p" * 2100}, "page")]:
            r = c.post("/s/demo/consent", json={"choices": {}, "method": "reject_all", **extra}, headers=H)
            assert r.status_code == 400 and words in r.json()["detail"], r.text


def test_a_version_is_one_row_after_restarts_and_keeps_its_first_sighting(make_gateway):
    gw = make_gateway(sites=SITES)
    nl = served_versions(gw)["nl"]
    with gw.client() as c:
        decide(c, {}, "reject_all", "nl", banner_version=nl)
    first_seen = wait_until_stored(gw, 1)["banner_versions"][nl]["first_seen"]
    gw.stop()
    time.sleep(0.05)
    gw.start()  # a new process records the version again on its first use
    with gw.client() as c:
        decide(c, {}, "reject_all", "nl", banner_version=nl)
    body = wait_until_stored(gw, 2)
    assert list(body["banner_versions"]) == [nl] and body["banner_versions"][nl]["first_seen"] == first_seen
    gw.stop()
    rows = gw.sql("SELECT hash, toString(first_seen) AS f, toString(timestamp) AS t "
                  "FROM {db}.banner_versions FINAL WHERE site = 'demo'")
    assert len(rows) == 1 and rows[0]["hash"] == nl and rows[0]["f"] < rows[0]["t"]  # merged: first and last use


def test_cli_exports_through_the_running_gateway(make_gateway, tmp_path):
    gw = make_gateway(sites=SITES)
    versions = served_versions(gw)
    with gw.client() as c:
        decide(c, {"analytics": True}, "custom", "en", banner_version=versions["en"])
        c.request("DELETE", "/s/demo/consent", headers=H)
    wait_until_stored(gw, 2)
    out = tmp_path / "audit.json"
    cli = [sys.executable, "-m", "gateway.cli", "consents", "export", "--config", str(gw.config_path), "--site", "demo"]
    done = subprocess.run([*cli, "--url", gw.url, "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    body = json.loads(out.read_text())
    assert [d["action"] for d in body["decisions"]] == ["grant", "withdraw"]
    assert body["banner_versions"][versions["en"]]["shown"] == expected_shown("en")
    # CSV on standard output; the token from the environment wins over the config's.
    done = subprocess.run([*cli, "--url", gw.url, "--format", "csv"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "CONSENTGATE_STATS_TOKEN": "wrong-token-000000000000000"})
    assert done.returncode == 1 and "401" in done.stderr
    done = subprocess.run([*cli, "--url", gw.url, "--format", "csv"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and len(list(csv.DictReader(io.StringIO(done.stdout)))) == 2
    gw.stop()
    done = subprocess.run([*cli, "--url", gw.url, "--out", str(tmp_path / "none.json")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "is the gateway running" in done.stderr
    assert not (tmp_path / "none.json").exists() and not (tmp_path / "none.json.partial").exists()


# --- retention by kind -------------------------------------------------------------------------------

TTL_TABLES = ("events", "visits", "hit_hours", "forwards", "consents", "banner_versions")


def ttl_days(gw: GatewayProcess) -> dict[str, int]:
    rows = gw.sql("SELECT name, engine_full FROM system.tables WHERE database = 'consentgate'")
    found = {r["name"]: re.search(r"toIntervalDay\((\d+)\)", r["engine_full"]) for r in rows}
    return {t: int(found[t].group(1)) for t in TTL_TABLES}


def test_ttls_follow_the_config_on_every_start(make_gateway):
    gw = make_gateway(gateway={"retention_days": 30, "consent_retention_days": 400}, sites=SITES)
    gw.stop()
    assert ttl_days(gw) == {"events": 30, "visits": 30, "hit_hours": 30, "forwards": 30,
                            "consents": 400, "banner_versions": 401}
    modified = gw.sql("SELECT toString(metadata_modification_time) AS m FROM system.tables "
                      "WHERE database = 'consentgate' AND name = 'consents'")
    time.sleep(1.1)  # metadata_modification_time counts seconds
    gw.start()
    gw.stop()
    # An unchanged config changes no table (the old check never matched ClickHouse's toIntervalDay form
    # and re-applied every TTL on each start).
    assert gw.sql("SELECT toString(metadata_modification_time) AS m FROM system.tables "
                  "WHERE database = 'consentgate' AND name = 'consents'") == modified
    gw.config_path.write_text(gw.config_path.read_text().replace("retention_days = 30", "retention_days = 90")
                              .replace("consent_retention_days = 400", "consent_retention_days = 1825"))
    gw.start()
    gw.stop()
    assert ttl_days(gw) == {"events": 90, "visits": 90, "hit_hours": 90, "forwards": 90,
                            "consents": 1825, "banner_versions": 1826}


def test_consent_retention_must_cover_the_consent_lifetime(tmp_path):
    from gateway.config import ConfigError, load_config

    path = write_config(tmp_path, gateway={"consent_retention_days": 100, "consent_max_age_days": 182})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(p.startswith("gateway.consent_retention_days: must be at least consent_max_age_days (182)")
               for p in err.value.problems)
    assert load_config(write_config(tmp_path, gateway={})).consent_retention_days == 1825


# --- a large site's year, streamed -------------------------------------------------------------------

SEED_MILLION = """
import sys
from analytics.store import Store
from gateway.config import load_config
config = load_config(sys.argv[1])
store = Store(config.store, config.retention_days, consent_retention_days=config.consent_retention_days)
store.migrate()
n = int(sys.argv[2])
# A year of decisions, spread evenly; methods, choices and pages vary by row number.
store.command(
    "INSERT INTO {db}.consents (record_id, site, timestamp, consent_id, action, method, preferences, analytics, "
    "marketing, policy_version, language, ip, browser, os, gpc, banner_version, page) "
    "SELECT generateUUIDv4(), 'demo', toDateTime64('2025-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 31536), "
    "lower(hex(MD5(toString(number)))), if(number % 10 = 9, 'withdraw', 'grant'), "
    "['accept_all', 'reject_all', 'custom', 'gpc', 'custom'][number % 5 + 1], 0, number % 2, number % 3 = 0, 1, "
    "if(number % 2 = 0, 'nl', 'en'), '203.0.113.0', 'Chrome', 'Windows', number % 5 = 3, "
    "'0123456789abcdef0123456789abcdef', concat('https://www.example.com/p/', toString(number % 1000)) "
    "FROM numbers({n:UInt64})", {"n": n})
"""


MARK = b'"consent_id":'


def test_a_million_decisions_stream_out_within_bounded_memory(make_gateway):
    n = 1_000_000
    gw = make_gateway(sites=SITES, start=False)
    seeded = subprocess.run([sys.executable, "-c", SEED_MILLION, str(gw.config_path), str(n)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    gw.start()
    assert export(gw, **{"from": "2025-01-01", "to": "2025-01-01"}).status_code == 200  # warm: first query
    decisions = 0
    tail = b""
    with PeakRSS(gw.process.pid) as rss, httpx.stream(
            "GET", f"{gw.url}/api/consents/demo", params={"from": "2025-01-01", "to": "2025-12-31"},
            headers=AUTH, timeout=httpx.Timeout(30, read=300)) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            window = tail[-(len(MARK) - 1):] + chunk  # a mark may straddle two chunks
            decisions += window.count(MARK)
            tail = window[-200:]
    assert decisions == n
    assert tail.rstrip().endswith(b'"count":%d}' % n)
    # Holding every row at once costs ~580 MiB more before any JSON (bench/consent_export_bench.py), and the
    # JSON is ~320 MB; streamed, the gateway grew ~130 MiB. The bound is generous: chDB's buffers vary.
    grew = rss.peak - rss.before
    print(f"gateway RSS {rss.before:.0f} MiB before, peak {rss.peak:.0f} MiB while streaming {n} decisions")
    assert grew < 300, f"the gateway grew by {grew:.0f} MiB while streaming"
