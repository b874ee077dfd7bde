"""The marketing channel of a visit (analytics/channels.py), evaluated by the embedded ClickHouse.

The expected channels are written out by hand from the documented rules (docs/stats.md: a host is a
search engine or social network when it is one of the listed hosts or a subdomain of one; `google.`
matches any TLD), with the look-alikes an attacker or an odd referrer brings: a host that only ends with
a listed name's letters, a listed name inside a longer host, a path in the host.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = [  # (referrer host, utm_source, utm_medium) -> channel
    (("", "", ""), "direct"),
    (("google.com", "", ""), "search"),
    (("www.google.co.uk", "", ""), "search"),
    (("mail.google.com", "", ""), "search"),
    (("notgoogle.com", "", ""), "referral"),
    (("google", "", ""), "referral"),
    (("fr.search.yahoo.com", "", ""), "search"),
    (("myyahoo.com", "", ""), "referral"),
    (("bing.com", "", ""), "search"),
    (("www.bing.com", "", ""), "search"),
    (("xbing.com", "", ""), "referral"),
    (("bing.com.evil.example", "", ""), "referral"),
    (("search.brave.com", "", ""), "search"),
    (("brave.com", "", ""), "referral"),
    (("t.co", "", ""), "social"),
    (("a.t.co", "", ""), "social"),
    (("at.co", "", ""), "referral"),
    (("x.com", "", ""), "social"),
    (("box.com", "", ""), "referral"),
    (("news.ycombinator.com", "", ""), "social"),
    (("ycombinator.com", "", ""), "referral"),
    (("lnkd.in", "", ""), "social"),
    (("evil.example/kagi.com", "", ""), "referral"),
    (("kagi.com", "", ""), "search"),
    (("evil.example", "", ""), "referral"),
    (("", "newsletter", ""), "email"),
    (("", "", "E-Mail"), "email"),
    (("google.com", "", "cpc"), "paid"),
    (("", "", "social"), "social"),
    (("", "spring", ""), "campaign"),
]

EVALUATE = """
import json, sys
from analytics.channels import source_sql
from analytics.store import Store

store = Store("chdb://" + sys.argv[1])
cases = json.loads(sys.stdin.read())
sql = "SELECT " + source_sql("{h:String}", "{s:String}", "{m:String}")
print(json.dumps([store.query_value(sql, {"h": h, "s": s, "m": m}) for h, s, m in cases]))
store.close()
"""


def test_each_referrer_gets_its_channel(tmp_path):
    out = subprocess.run([sys.executable, "-c", EVALUATE, str(tmp_path / "store")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, input=json.dumps([list(c) for c, _ in CASES]))
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert dict(zip([c for c, _ in CASES], got)) == dict(CASES)
