"""What a shared link costs (not a test: figures to read).

    .venv/bin/python bench/share_bench.py

- scrypt: hashing a link's password once (creating it) and checking it (each password attempt);
- a stats request through a real gateway with a shared link's session (one extra lookup of the link in
  the store per request, so a revoked link ends at the next request) next to the same request with a
  Bearer token. Median of 200 sequential requests to /api/stats/demo/realtime on an empty store.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway.shared_links import check_password, hash_password  # noqa: E402
from harness import STATS_TOKEN, GatewayProcess, write_config  # noqa: E402


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    stored = hash_password("correct horse battery")
    print(f"scrypt hash  {median_ms(lambda: hash_password('correct horse battery'), 10):6.1f} ms")
    print(f"scrypt check {median_ms(lambda: check_password('correct horse battery', stored), 10):6.1f} ms")
    folder = Path(tempfile.mkdtemp(prefix="cg-share-bench-"))
    gw = GatewayProcess(write_config(folder), folder).start()
    try:
        with gw.client() as admin, gw.client() as shared:
            link = admin.post("/api/stats/demo/shared-links", json={},
                              headers={"Authorization": f"Bearer {STATS_TOKEN}"}).json()
            shared.get("/" + link["url"].split("/", 3)[3]).raise_for_status()
            bearer = median_ms(lambda: admin.get("/api/stats/demo/realtime",
                                                 headers={"Authorization": f"Bearer {STATS_TOKEN}"}), 200)
            session = median_ms(lambda: shared.get("/api/stats/demo/realtime"), 200)
        print(f"realtime with a Bearer token        {bearer:6.1f} ms")
        print(f"realtime with a shared link session {session:6.1f} ms (+{session - bearer:.1f} ms: the link lookup)")
    finally:
        gw.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
