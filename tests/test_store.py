"""The store's connections and deletes.

Store.client: each thread has its own client, so a stats request never queues behind the writer's insert or
the visit builder; the clients of threads that have ended are closed, so a long-running gateway whose
worker threads come and go does not pile up engine handles.

Store.delete: deletes on several tables are applied when it returns; a failing one raises with the
engine's reason and is killed, so later deletes (erasures) on its table still apply.

Why Store.delete exists: a synchronous DELETE holds the connection ~1.3 s though applying it takes ~20 ms,
so a visit build of 90 days kept a stats request waiting for seconds (the dashboard test's realtime call
timed out on CI). That cost is measured by bench/build_bench.py, not timed here.

chDB runs in a subprocess: one chDB path per process."""
from __future__ import annotations

import json
import subprocess
import sys

from harness import ROOT

SCRIPT = r"""
import json, sys
from analytics.store import Store, StoreUnavailable

store = Store("chdb://" + sys.argv[1], database="deletes")
store.command("CREATE DATABASE IF NOT EXISTS deletes")
for table in ("a", "b"):
    store.command(f"CREATE TABLE deletes.{table} (k UInt32) ENGINE = MergeTree ORDER BY k")
    store.command(f"INSERT INTO deletes.{table} SELECT number FROM numbers(1000)")
count = lambda table, where="1": store.query_value(f"SELECT count() FROM {{db}}.{table} WHERE {where}")
out = {}
store.delete([("a", "k < {n:UInt32}", {"n": 100}), ("b", "k % 2 = 1", {})])
out["applied"] = [count("a"), count("a", "k < 100"), count("b"), count("b", "k % 2 = 1")]
try:
    store.delete([("a", "throwIf(k = 500, 'refused by the test') = 1", {})], timeout=60)
    out["failure"] = None
except StoreUnavailable as exc:
    out["failure"] = str(exc)
out["after_failure"] = count("a")
store.delete([("a", "k >= 900", {})], timeout=60)  # not held up by the failed one
out["later"] = count("a")
print(json.dumps(out))
store.close()
"""


def test_deletes_are_applied_when_it_returns_and_a_failed_one_raises_and_holds_up_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "store")], cwd=ROOT, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["applied"] == [900, 0, 500, 0]
    assert out["failure"] is not None and "refused by the test" in out["failure"] and "a:" in out["failure"]
    assert out["after_failure"] == 900
    assert out["later"] == len([k for k in range(100, 1000) if k < 900])


CLIENTS = r"""
import json, sys, threading
from analytics.store import Store

store = Store("chdb://" + sys.argv[1], database="clients")
store.command("CREATE DATABASE IF NOT EXISTS clients")
mine = store.client
seen = {}
def worker(i):
    seen[i] = (id(store.client), store.query_value("SELECT 1"))
for i in range(6):  # threads that come and go, one after another (as anyio's idle workers do)
    t = threading.Thread(target=worker, args=(i,))
    t.start()
    t.join()
out = {"same_in_one_thread": store.client is mine, "others_differ": all(c != id(mine) for c, _ in seen.values()),
       "answered": [v for _, v in seen.values()], "kept": len(store._clients)}
store.close()
try:
    store.query("SELECT 1")
    out["after_close"] = "answered"
except Exception as exc:
    out["after_close"] = type(exc).__name__
print(json.dumps(out))
"""


def test_each_thread_has_its_own_client_and_ended_threads_clients_are_closed(tmp_path):
    r = subprocess.run([sys.executable, "-c", CLIENTS, str(tmp_path / "store")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["same_in_one_thread"] and out["others_differ"]
    assert out["answered"] == [1] * 6
    assert out["kept"] == 2  # this thread's and the last worker's: the five before it were closed
    assert out["after_close"] == "StoreUnavailable"
