"""The collect pipeline in-process, without a server: each step's drops and the record it builds.

These run the real pieces (token signer, revocation list, User-Agent parser, IP truncation)
on a `Hit` from `parse_hit`; the end-to-end tests (test_invariants.py, test_collect_input.py)
cover the same path over HTTP. Expected values are written out here, not taken from the code.
"""
from __future__ import annotations

import dataclasses
import time

import orjson
import pytest

from analytics.records import EventRecord, columns_of
from analytics.schema import MIGRATIONS, TABLES
from gateway.collect.geo import CountryLookup
from gateway.collect.hit import Hit, parse_hit
from gateway.collect.pipeline import CollectPipeline, Dropped
from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.revocations import RevocationList
from gateway.tokens import TokenSigner
from harness import SECRET

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


@pytest.fixture()
def world(tmp_path):
    config = parse_config({"gateway": {"secret_key": SECRET},
                           "sites": {"shop": {"origins": ["https://shop.example"]},
                                     "blog": {"origins": ["https://blog.example"]}}}, tmp_path, env={})
    signer = TokenSigner(config.secret_keys, config.consent_max_age_days)
    revocations = RevocationList(config.consent_max_age_days * 86_400_000)
    kept: list[Hit] = []

    def store_sink(hit: Hit) -> None:
        if hit.token is not None and hit.token.grants("analytics"):
            kept.append(hit)
            hit.stored = True

    fast: set[str] = set()
    pipeline = CollectPipeline(signer, revocations, CountryLookup(None), sinks=[store_sink],
                               too_fast=lambda visitor, now: visitor in fast)
    return config, signer, revocations, pipeline, kept, fast


def token_for(signer: TokenSigner, site: str = "shop", policy: int = 1, **choices: bool) -> str:
    return signer.dumps(signer.issue("ab" * 16, site, choices, policy))


def hit_of(config, body: dict, token: str = "", ua: str = FIREFOX, ip: str = "203.0.113.77", site: str = "shop") -> Hit:
    return parse_hit(config.sites[site], body, token, ua, ip)


PAGE = {"type": "pageview", "url": "https://shop.example/cart?utm_source=mail&email=a%40b.nl#top",
        "referrer": "https://www.google.com/search?q=x"}


def test_a_consented_hit_becomes_one_record_with_every_field(world):
    config, signer, _, pipeline, kept, _ = world
    hit = pipeline.run(hit_of(config, {**PAGE, "props": {"plan": "pro"}}, token_for(signer, analytics=True)))
    assert hit.stored and kept == [hit]
    record = hit.record
    assert isinstance(record, EventRecord)
    assert (record.site, record.type, record.visitor_id) == ("shop", "pageview", "ab" * 16)
    assert (record.url, record.hostname, record.path) == ("https://shop.example/cart", "shop.example", "/cart")
    assert (record.referrer, record.referrer_host, record.utm_source) == ("https://www.google.com/search", "google.com", "mail")
    assert (record.browser, record.os, record.device) == ("Firefox", "Linux", "desktop")
    assert record.ip == "203.0.113.0" and hit.client_ip == ""  # the full address left the hit
    assert record.props == {"plan": "pro"}
    line = orjson.loads(orjson.dumps(record))
    assert line["kind"] == "event" and set(line) == {*columns_of(EventRecord), "kind"}
    assert abs(record.timestamp - time.time()) < 60


@pytest.mark.parametrize("token_args, reason", [
    (None, "no_consent"),
    ({"site": "blog", "analytics": True}, "other_site_token"),
    ({"policy": 2, "analytics": True}, "old_policy"),
    ({"preferences": True}, "no_consent"),
])
def test_the_consent_step_drops_without_a_valid_granting_token(world, token_args, reason):
    config, signer, _, pipeline, kept, _ = world
    token = "" if token_args is None else token_for(signer, **token_args)
    with pytest.raises(Dropped) as drop:
        pipeline.run(hit_of(config, PAGE, token))
    assert (drop.value.step, drop.value.reason) == ("consent", reason) and kept == []


def test_a_forged_token_is_a_bad_token(world):
    config, signer, _, pipeline, kept, _ = world
    other = TokenSigner(("another-secret-0123456789abcdefgh",), 30)
    with pytest.raises(Dropped) as drop:
        pipeline.run(hit_of(config, PAGE, token_for(other, analytics=True)))
    assert (drop.value.step, drop.value.reason) == ("consent", "bad_token") and kept == []


def test_a_withdrawn_consent_drops_in_the_consent_step(world):
    config, signer, revocations, pipeline, kept, _ = world
    token = token_for(signer, analytics=True)
    revocations.revoke("ab" * 16, int(time.time() * 1000) + 1)
    with pytest.raises(Dropped) as drop:
        pipeline.run(hit_of(config, PAGE, token))
    assert (drop.value.step, drop.value.reason) == ("consent", "withdrawn") and kept == []


def test_the_bot_step_drops_tools_and_crawlers(world):
    config, signer, _, pipeline, kept, _ = world
    for ua in ("curl/8.5.0", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", ""):
        with pytest.raises(Dropped) as drop:
            pipeline.run(hit_of(config, PAGE, token_for(signer, analytics=True), ua=ua))
        assert (drop.value.step, drop.value.reason) == ("bot", "bot")
    assert kept == []


def test_the_rate_step_drops_a_visitor_the_behaviour_check_flags(world):
    config, signer, _, pipeline, kept, fast = world
    fast.add("ab" * 16)
    with pytest.raises(Dropped) as drop:
        pipeline.run(hit_of(config, PAGE, token_for(signer, analytics=True)))
    assert (drop.value.step, drop.value.reason) == ("bot_rate", "bot_rate") and kept == []


def test_marketing_only_with_no_vendor_is_kept_nowhere(world):
    config, signer, _, pipeline, kept, _ = world
    with pytest.raises(Dropped) as drop:
        pipeline.run(hit_of(config, PAGE, token_for(signer, marketing=True)))
    assert (drop.value.step, drop.value.reason) == ("keep", "no_consent") and kept == []


def test_every_step_is_named_and_the_list_is_the_whole_path(world):
    pipeline = world[3]
    assert [name for name, _ in pipeline.steps] == ["consent", "bot", "bot_rate", "record", "keep"]


@pytest.mark.parametrize("body, message", [
    ({"type": "click", "url": "https://shop.example/"}, "'type' must be one of"),
    ({"type": "event", "url": "https://shop.example/"}, "an event needs a 'name'"),
    ({"type": "pageview"}, "'url' is missing"),
    ({"url": "javascript:alert(1)"}, "must be an http(s) URL"),
    ({"url": "https://shop.example/", "props": ["a"]}, "'props' must be an object"),
    ({"url": "https://shop.example/", "props": {f"k{i}": "v" for i in range(31)}}, "at most 30"),
    ({"url": "https://shop.example/", "props": {"k" * 65: "v"}}, "1 to 64 characters"),
    ({"url": "https://shop.example/", "props": {"k": "v" * 257}}, "longer than 256"),
    ({"url": "https://shop.example/", "props": {"k": 3}}, "must be a string"),
    ({"type": "event", "name": "signup jan@example.nl", "url": "https://shop.example/"}, "'name' looks like it holds"),
])
def test_bad_input_is_a_400_before_the_pipeline(world, body, message):
    config, *_ = world
    with pytest.raises(GatewayError) as error:
        hit_of(config, body)
    assert error.value.status == 400 and message in error.value.detail


def test_property_values_that_are_personal_data_are_dropped_and_named(world):
    config, signer, _, pipeline, kept, _ = world
    props = {"plan": "pro", "mail": "Jan <jan@example.nl>", "ip": "client 203.0.113.9.", "v6": "ip:2001:db8::7",
             "id": "0123456789abcdef0123456789abcdef", "version": "v1.2.3", "time": "12:30", "cpp": "std::string",
             "203.0.113.10": "a key that is an address"}
    hit = hit_of(config, {**PAGE, "props": props}, token_for(signer, analytics=True))
    assert sorted(hit.screened) == ["email", "id", "ip", "ip", "ip"]
    pipeline.run(hit)
    assert hit.record.props == {"plan": "pro", "version": "v1.2.3", "time": "12:30", "cpp": "std::string"}


def test_records_are_frozen_and_refuse_unknown_fields():
    fields = {c: "" for c in columns_of(EventRecord)}
    record = EventRecord(**{**fields, "timestamp": 1.0, "props": {}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.path = "/other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        EventRecord(**{**fields, "timestamp": 1.0, "props": {}, "pth": "/typo"})
    with pytest.raises(TypeError):
        EventRecord(**{k: v for k, v in fields.items() if k != "path"})


STORE_SCRIPT = """
import sys, time, orjson
from analytics.records import EventRecord, columns_of
from analytics.store import Store, StoreUnavailable
store = Store("chdb://" + sys.argv[1])
store.migrate()
good = {c: "" for c in columns_of(EventRecord)} | {"event_id": "00000000-0000-4000-8000-000000000001", "timestamp": time.time(), "props": {}}
store.insert_json_lines("event", [orjson.dumps(EventRecord(**good), option=orjson.OPT_APPEND_NEWLINE)])
bad = orjson.dumps({**good, "kind": "event", "pth": "/typo"}, option=orjson.OPT_APPEND_NEWLINE)
try:
    store.insert_json_lines("event", [bad])
    print("unknown field: stored")
except StoreUnavailable as exc:
    print("unknown field: refused", "pth" in str(exc))
store.client.command("ALTER TABLE consentgate.events DROP COLUMN utm_medium")
try:
    store.migrate()
    print("drifted table: accepted")
except RuntimeError as exc:
    print("drifted table: refused", "events lacks utm_medium" in str(exc))
print("rows", store.query_value("SELECT count() FROM consentgate.events"))
"""


def test_the_store_refuses_unknown_fields_and_tables_that_lack_a_field(tmp_path):
    """A misspelt field is an error at insert (not a silently empty column), and a table that lost a
    column a record writes stops the start. Real chDB in a subprocess (one chDB path per process)."""
    import subprocess
    import sys

    from harness import ROOT

    out = subprocess.run([sys.executable, "-c", STORE_SCRIPT, str(tmp_path / "store")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:3] == ["unknown field: refused True", "drifted table: refused True", "rows 1"]
