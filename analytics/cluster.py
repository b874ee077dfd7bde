"""Cluster DDL: the schema's migrations rewritten for `[gateway] cluster = "NAME"`.

As ClickHouse's replication and sharding guides describe: each table `T` becomes a
replicated local table `T_local` on every node (`ReplicatedMergeTree`, its Keeper path
by shard) and a `Distributed` table `T` over them, sharded by visitor, so every query
and insert of the gateway keeps naming `T`. Every statement runs `ON CLUSTER`. The
rewrite works on any migration text of analytics/schema.py (CREATE TABLE, ALTER TABLE,
CREATE DATABASE) and on the store's mutations (ALTER TABLE, lightweight DELETE: they go to the local
tables, since a Distributed table refuses them), so new migrations need nothing here; tests check the output with
ClickHouse's own parser (`formatQuery`).
"""
from __future__ import annotations

import re

LOCAL_SUFFIX = "_local"
_CREATE = re.compile(r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)\s*\(", re.I)
_ALTER = re.compile(r"^\s*ALTER\s+TABLE\s+(\w+)\.(\w+)\s+(.*)$", re.I | re.S)
_DELETE = re.compile(r"^\s*DELETE\s+FROM\s+(\w+)\.(\w+)\s+(WHERE\s.*)$", re.I | re.S)
_DATABASE = re.compile(r"^\s*CREATE\s+DATABASE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s*$", re.I)
_ENGINE = re.compile(r"ENGINE\s*=\s*(Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing)?MergeTree(\s*\(([^)]*)\))?",
                     re.I)
# Which column shards a table's rows: one visitor's rows stay on one shard (erasure, visits, uniq counts).
_SHARD_COLUMNS = (("visitor_id", "cityHash64(visitor_id)"), ("consent_id", "cityHash64(consent_id)"),
                  ("visitor_hash", "visitor_hash"))


class ClusterDDLError(ValueError):
    """A migration statement the cluster rewrite does not know how to run on a cluster."""


def _split_columns(body: str) -> str:
    """The column list of a CREATE TABLE: the text between its first '(' and the matching ')'."""
    depth = 0
    for i, ch in enumerate(body):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return body[1:i]
    raise ClusterDDLError("unbalanced parentheses in CREATE TABLE")


def sharding_key(columns: str) -> str:
    names = set(re.findall(r"^\s*(\w+)\s", columns, re.M))
    for column, key in _SHARD_COLUMNS:
        if column in names:
            return key
    return "rand()"


def on_cluster(statement: str, cluster: str) -> list[str]:
    """The statements that apply one migration statement to every node of `cluster`."""
    on = f"ON CLUSTER {cluster}"
    if m := _DATABASE.match(statement):
        return [f"CREATE DATABASE {m.group(1) or ''}{m.group(2)} {on}"]
    if m := _CREATE.match(statement):
        if_not, db, table = m.group(1) or "", m.group(2), m.group(3)
        local = table + LOCAL_SUFFIX
        rest = statement[m.end() - 1:]
        columns = _split_columns(rest)
        engine = _ENGINE.search(rest)
        if engine is None:
            raise ClusterDDLError(f"{db}.{table}: only MergeTree-family tables can be replicated")
        args = (engine.group(3) or "").strip()
        replicated = (f"ENGINE = Replicated{engine.group(1) or ''}MergeTree("
                      f"'/clickhouse/tables/{{shard}}/{db}/{local}', '{{replica}}'{', ' + args if args else ''})")
        local_sql = (f"CREATE TABLE {if_not}{db}.{local} {on} "
                     + rest[:engine.start()] + replicated + rest[engine.end():])
        distributed = (f"CREATE TABLE {if_not}{db}.{table} {on} AS {db}.{local} "
                       f"ENGINE = Distributed({cluster}, {db}, {local}, {sharding_key(columns)})")
        return [local_sql, distributed]
    if m := _ALTER.match(statement):
        db, table, action = m.group(1), m.group(2), m.group(3)
        statements = [f"ALTER TABLE {db}.{table}{LOCAL_SUFFIX} {on} {action}"]
        # A Distributed table mirrors the columns (not the TTL, indexes or materialization) of its local table.
        if re.match(r"\s*(ADD|DROP|MODIFY|RENAME)\s+COLUMN\b", action, re.I):
            statements.append(f"ALTER TABLE {db}.{table} {on} {action}")
        return statements
    if m := _DELETE.match(statement):
        # A Distributed table refuses mutations (ClickHouse issue #19089): a lightweight delete runs on the
        # replicated local table of every node, as do ALTERs above.
        return [f"DELETE FROM {m.group(1)}.{m.group(2)}{LOCAL_SUFFIX} {on} {m.group(3)}"]
    raise ClusterDDLError(f"no cluster form for: {statement.strip()[:80]}")
