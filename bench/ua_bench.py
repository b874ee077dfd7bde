"""What an unseen User-Agent costs the collect path, part by part (not a test: figures to read).

    .venv/bin/python bench/ua_bench.py
    .venv/bin/python bench/ua_bench.py --uas 50000

A flood of distinct User-Agents (bench/collect_bench.py --flood) defeats the parse cache, so every hit
pays the whole parse: the bot list (RE2), ua-parser's Rust resolver (browser and OS) and the device class.
The device class is timed three ways, side by side: as the gateway does it (one RE2 set), as two RE2
searches, and with the same patterns in Python's `re`, as up to round 5. Each UA is a Chrome desktop UA with a version never seen before, as the
flood sends.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ua_parser import Domain  # noqa: E402

import re2  # noqa: E402

from gateway.collect.useragent import (MOBILE_MARKERS, TABLET_MARKERS, _parse_user_agent, _resolver, browser_and_os,  # noqa: E402
                                       device_markers, is_bot)

# The same patterns as two RE2 expressions, and in Python's `re` (the gateway's up to round 5).
RE2_TABLET, RE2_MOBILE = re2.compile(TABLET_MARKERS), re2.compile(MOBILE_MARKERS)
RE_TABLET = re.compile(TABLET_MARKERS.removeprefix("(?i)"), re.IGNORECASE)
RE_MOBILE = re.compile(MOBILE_MARKERS.removeprefix("(?i)"), re.IGNORECASE)


def device_set(ua: str) -> object:
    found = device_markers().Match(ua) or ()
    return 0 in found or ("Android" in ua and "Mobile" not in ua) or 1 in found


def device_re2(ua: str) -> object:
    return RE2_TABLET.search(ua) or ("Android" in ua and "Mobile" not in ua) or RE2_MOBILE.search(ua)


def device_re(ua: str) -> object:
    return RE_TABLET.search(ua) or ("Android" in ua and "Mobile" not in ua) or RE_MOBILE.search(ua)


def per_call_us(fn: Callable[[str], object], uas: list[str]) -> float:
    started = time.perf_counter()
    for ua in uas:
        fn(ua)
    return 1e6 * (time.perf_counter() - started) / len(uas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uas", type=int, default=20_000, help="distinct User-Agents per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    resolver = _resolver()
    is_bot("warm-up")  # compiles the bot list once (~0.2 s), as the gateway does at start
    parts: dict[str, Callable[[str], object]] = {
        "bot list (RE2)": is_bot,
        "browser and OS, extractors (now)": browser_and_os,
        "browser and OS, Resolver() (round 6)": lambda ua: resolver(ua, Domain.USER_AGENT | Domain.OS),
        "device class, one RE2 set (now)": device_set,
        "device class, two RE2 searches": device_re2,
        "device class, Python re (round 5)": device_re,
    }
    best = {name: float("inf") for name in [*parts, "whole parse (uncached)"]}
    for r in range(args.rounds):
        uas = [f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
               f"Chrome/{100 + i % 30}.0.{i}.{r} Safari/537.36" for i in range(args.uas)]
        for name, fn in parts.items():
            best[name] = min(best[name], per_call_us(fn, uas))
        _parse_user_agent.cache_clear()
        best["whole parse (uncached)"] = min(best["whole parse (uncached)"], per_call_us(_parse_user_agent, uas))
    print(f"{args.uas:,} unseen User-Agents, best of {args.rounds} rounds, us per UA")
    for name, us in best.items():
        print(f"  {name:36}{us:8.2f}")


if __name__ == "__main__":
    main()
