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
