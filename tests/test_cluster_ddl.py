"""Cluster DDL (analytics/cluster.py): every migration, rewritten ON CLUSTER, parses in ClickHouse.

No ClickHouse cluster runs here: the generated DDL is checked with ClickHouse's own parser
(`SELECT formatQuery(...)` on chDB, in a child process so this test process opens no chDB)
and by the structure each statement must have.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from analytics.cluster import ClusterDDLError, on_cluster
from analytics.schema import MIGRATIONS
from harness import ROOT

CLUSTER = "cg_cluster"

PARSE = """
import json, sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
out = []
for q in json.load(sys.stdin):
    try:
        out.append(["ok", client.query("SELECT formatQuery({q:String})", parameters={"q": q}).result_rows[0][0]])
    except Exception as exc:
        out.append(["error", str(exc).splitlines()[0]])
print(json.dumps(out))
"""


def parse_with_clickhouse(statements: list[str], tmp_path) -> list[tuple[str, str]]:
    r = subprocess.run([sys.executable, "-c", PARSE, str(tmp_path / "parser")], input=json.dumps(statements),
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return [tuple(x) for x in json.loads(r.stdout)]


def cluster_statements() -> list[str]:
    return [stmt for _, statements in MIGRATIONS for sql in statements
            for stmt in on_cluster(sql.format(db="consentgate", ttl_days=395, consent_ttl_days=1826), CLUSTER)]


def test_every_migration_parses_on_cluster(tmp_path):
    statements = cluster_statements() + on_cluster("CREATE DATABASE IF NOT EXISTS consentgate", CLUSTER)
    broken = "CREATE TABLE x.y ON CLUSTER c (a UInt8) ENGINE = Distributed(c, x"  # proves the parser is strict
    results = parse_with_clickhouse(statements + [broken], tmp_path)
    assert results[-1][0] == "error" and "Syntax error" in results[-1][1]
    for statement, (status, formatted) in zip(statements, results):
        assert status == "ok", (statement, formatted)
        assert f"ON CLUSTER {CLUSTER}" in formatted


def test_each_table_is_replicated_locally_and_distributed_by_visitor():
    statements = cluster_statements()
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    local = {re.search(r"\.(\w+)_local ON CLUSTER", s).group(1): s for s in creates if "_local ON CLUSTER" in s}
    distributed = {re.search(r"\.(\w+) ON CLUSTER", s).group(1): s for s in creates if "Distributed(" in s}
    assert set(local) == set(distributed) >= {"events", "consents", "forwards", "visits"}
    for table, sql in local.items():
        assert re.search(rf"Replicated\w*MergeTree\('/clickhouse/tables/{{shard}}/consentgate/{table}_local', "
                         r"'\{replica\}'", sql), sql
    assert distributed["events"].endswith(f"Distributed({CLUSTER}, consentgate, events_local, cityHash64(visitor_id))")
    assert distributed["consents"].endswith("consents_local, cityHash64(consent_id))")
    assert distributed["visits"].endswith("visits_local, visitor_hash)")  # one visitor's visits on one shard


def test_alters_go_to_the_local_tables_and_columns_to_both():
    add = on_cluster("ALTER TABLE db.events ADD COLUMN IF NOT EXISTS x UInt8", "c")
    assert add == ["ALTER TABLE db.events_local ON CLUSTER c ADD COLUMN IF NOT EXISTS x UInt8",
                   "ALTER TABLE db.events ON CLUSTER c ADD COLUMN IF NOT EXISTS x UInt8"]
    ttl = on_cluster("ALTER TABLE db.events MODIFY TTL toDateTime(timestamp) + INTERVAL 5 DAY", "c")
    assert ttl == ["ALTER TABLE db.events_local ON CLUSTER c MODIFY TTL toDateTime(timestamp) + INTERVAL 5 DAY"]


def test_engine_arguments_are_kept_after_the_keeper_path():
    sql = on_cluster("CREATE TABLE db.v (site String, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY site",
                     "c")[0]
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/v_local', '{replica}', version)" in sql


def test_a_statement_without_a_cluster_form_is_refused():
    with pytest.raises(ClusterDDLError):
        on_cluster("CREATE TABLE db.m (a UInt8) ENGINE = Memory", "c")
    with pytest.raises(ClusterDDLError):
        on_cluster("CREATE VIEW db.v AS SELECT 1", "c")


def test_erasure_deletes_and_retention_run_on_the_local_tables(tmp_path):
    """A Distributed table refuses mutations (ClickHouse issue #19089): on a cluster, an erasure's deletes, its
    purge and a retention change go to `T_local ON CLUSTER`, and the wait reads the local tables' mutations.
    No cluster runs here: the Store's statements are recorded instead of sent (a stand-in for the cluster,
    the one part that cannot run), and ClickHouse's own parser checks each of them."""
    from analytics.store import Store

    sent: list[str] = []
    waited: list[list[str]] = []
    store = Store.__new__(Store)
    store.db, store.cluster = "consentgate", CLUSTER
    store.command = lambda sql, parameters=None: sent.append(sql)  # type: ignore[method-assign]
    store.query = lambda sql, parameters=None: waited.append(parameters["tables"]) or []  # type: ignore[method-assign]
    store.delete([("events", "site = {site:String} AND visitor_id = {cid:String}", {"site": "s", "cid": "c"})],
                 purge=True)
    assert sent == [f"DELETE FROM consentgate.events_local ON CLUSTER {CLUSTER} WHERE site = {{site:String}} AND "
                    "visitor_id = {cid:String} SETTINGS lightweight_deletes_sync = 0",
                    f"ALTER TABLE consentgate.events_local ON CLUSTER {CLUSTER} APPLY DELETED MASK"]
    assert waited == [["events_local"], ["events_local"]]
    ttl = store._cluster_form("ALTER TABLE consentgate.events MODIFY TTL toDateTime(timestamp) + INTERVAL 5 DAY")
    bound = [s.replace("{site:String}", "'s'").replace("{cid:String}", "'c'") for s in sent + ttl]
    for statement, (status, formatted) in zip(bound, parse_with_clickhouse(bound, tmp_path)):
        assert status == "ok" and "events_local ON CLUSTER" in formatted, (statement, formatted)
