"""Bot detection by User-Agent: the maintained list (crawler-user-agents, in one RE2 expression) against
the former hand-written ~30-name pattern, side by side in one run (not a test: figures to read).

    .venv/bin/python bench/bot_bench.py
    .venv/bin/python bench/bot_bench.py --uas 20000

Cost is per UNSEEN user agent (each one distinct, as in a flood that defeats the parse cache): what an
attacker buys. False positives are counted on realistic browser UAs: every variant of
bench/collect_bench.py's USER_AGENTS and the browser UAs in tests/. Caught is counted on the list's own
2,100 example bot UAs and on the tools the gateway flagged before.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from collect_bench import USER_AGENTS  # noqa: E402
from crawleruseragents import CRAWLER_USER_AGENTS_DATA  # noqa: E402

from gateway.collect.useragent import bot_pattern, edge_user_agent  # noqa: E402

# The pattern gateway/collect/useragent.py used before the maintained list (kept here as the baseline).
FORMER_PATTERN = (
    r"bot\b|bot/|crawl|spider|slurp|headless|phantomjs|lighthouse|pagespeed|curl/|wget/|"
    r"python-requests|python-urllib|aiohttp|httpx|go-http-client|okhttp|axios/|node-fetch|"
    r"undici|postmanruntime|insomnia|java/|apache-httpclient|libwww-perl|scrapy|"
    r"facebookexternalhit|preview|monitor|uptime|pingdom|feedfetcher|mediapartners|google-inspectiontool|"
    r"whatsapp|embedly|^$"
)
TOOLS = ["curl/8.4.0", "Wget/1.21.4", "python-requests/2.31.0", "Python-urllib/3.11", "Python/3.11 aiohttp/3.9.1",
         "python-httpx/0.27.0", "Go-http-client/1.1", "okhttp/4.12.0", "axios/1.6.2", "node-fetch/1.0", "undici",
         "PostmanRuntime/7.36.0", "insomnia/2023.5.8", "Java/17.0.9", "Apache-HttpClient/4.5.14 (Java/17.0.9)",
         "libwww-perl/6.72", "Scrapy/2.11.0 (+https://scrapy.org)", "Mediapartners-Google", "WhatsApp/2.23.20.0",
         "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
         "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/119.0.0.0 Mobile Safari/537.36 Lighthouse",
         "FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)", ""]


def browser_uas() -> list[str]:
    """Every variant of collect_bench's UAs (versions 100-130, minor 1-9) and the browser UAs of tests/."""
    out = {ua.format(v=v, m=m) for _, ua in USER_AGENTS for v in range(100, 131) for m in range(1, 10)}
    for path in (ROOT / "tests").rglob("*.py"):
        for ua in re.findall(r'"(Mozilla/5\.0 \([^"{}]*\)[^"{}]*)"', path.read_text()):
            if not re.search(FORMER_PATTERN, ua, re.IGNORECASE):  # the tests' bots are not browsers
                out.add(ua)
    return sorted(out)


def unseen_uas(n: int, seed: int = 7) -> list[str]:
    """n distinct realistic browser UAs: what a flood of new UAs costs (no cache helps)."""
    rng = random.Random(seed)
    weights = [w for w, _ in USER_AGENTS]
    return [rng.choices(USER_AGENTS, weights)[0][1].format(v=rng.randint(100, 130), m=rng.randint(1, 9))
            + f" u{i:07d}" for i in range(n)]


def per_ua_us(match: Callable[[str], object], uas: list[str]) -> float:
    started = time.perf_counter()
    for ua in uas:
        match(ua)
    return (time.perf_counter() - started) / len(uas) * 1e6


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uas", type=int, default=10_000, help="distinct unseen UAs to time (default 10000)")
    args = parser.parse_args()
    started, rss = time.perf_counter(), rss_mib()
    former = re.compile(FORMER_PATTERN, re.IGNORECASE)
    former_compile = time.perf_counter() - started
    started, rss = time.perf_counter(), rss_mib()
    listed = bot_pattern()
    listed_compile, listed_rss = time.perf_counter() - started, rss_mib() - rss
    matchers = {"former pattern": former.search, "maintained list (RE2)": listed.search}
    unseen = unseen_uas(args.uas)
    browsers = browser_uas()
    examples = [edge_user_agent(i) for e in CRAWLER_USER_AGENTS_DATA for i in e.get("instances", [])]
    print(f"{len(CRAWLER_USER_AGENTS_DATA)} listed patterns; {len(unseen):,} unseen browser UAs timed; "
          f"{len(browsers)} realistic browser UAs; {len(examples)} example bot UAs; {len(TOOLS)} tools")
    print(f"{'matcher':24s} {'us/unseen UA':>13s} {'false pos.':>11s} {'bots caught':>12s} {'tools caught':>13s}")
    cost = {}
    for name, match in matchers.items():
        per_ua_us(match, unseen[:500])  # warm-up: RE2 builds its DFA states lazily
        cost[name] = per_ua_us(match, unseen)
        false_pos = [ua for ua in browsers if match(ua)]
        caught = sum(1 for ua in examples if match(ua))
        tools = sum(1 for ua in TOOLS if match(ua))
        print(f"{name:24s} {cost[name]:13.1f} {len(false_pos):11d} {caught:7d}/{len(examples)} {tools:8d}/{len(TOOLS)}")
        for ua in false_pos:
            print(f"    false positive: {ua}")
    print(f"ratio maintained/former per unseen UA: {cost['maintained list (RE2)'] / cost['former pattern']:.2f}")
    print(f"compile: former {former_compile * 1000:.1f} ms, maintained list {listed_compile * 1000:.0f} ms "
          f"(+{listed_rss:.1f} MiB resident)")


if __name__ == "__main__":
    main()
