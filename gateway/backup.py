"""Backups of the store: `consentgate backup` (through the running gateway) and `consentgate restore` (offline).

chDB lets one process open the embedded store, so a backup is taken by the gateway itself
(`GET /api/admin/backup`, an admin token) and streamed to the command as a tar. ClickHouse's own
`BACKUP ... TO File()` needs `backups.allowed_path` fixed when the engine starts; instead each table
goes out as its `CREATE TABLE` and its rows in ClickHouse's Native format, which any ClickHouse
(embedded or server, this version or a later one) reads back.

Consistent: the spool is written out first, then the batch writer holds still while the tables are
read, so every table is cut at the same point of the spool (hits arriving meanwhile wait in the spool,
acknowledged as usual). The manifest holds each table's row count and checksum
(`sum(cityHash64(*))`), taken under the same hold; `restore` checks them after loading.

The stats' derived tables (analytics/visits.py) are saved as schema only: the gateway rebuilds them
from `events` after a restore.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from analytics.schema import SETTINGS_TABLES, TABLES
from analytics.store import Store
from analytics.writer import BatchWriter
from gateway.config import GatewayConfig

FORMAT = "consentgate-backup/1"
MANIFEST = "manifest.json"
# Tables whose rows are saved: every spooled record kind's table, the settings tables (shared links, sent
# reports, goals) and the migration log. The others are derived from events and rebuilt (visits, visit_days,
# hit_hours) or live minutes (report_claims).
DATA_TABLES: frozenset[str] = frozenset({t for t, _, _ in TABLES.values()} | set(SETTINGS_TABLES) | {"schema_migrations"})
CHECKSUM_SQL = "SELECT count(), toString(sum(cityHash64(*))) FROM {db}.`{table}`"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says what to do."""


def table_checksums(store: Store, tables: list[str]) -> dict[str, dict[str, Any]]:
    """Rows and checksum of each table, as the manifest records them and the restore test compares them."""
    out = {}
    for table in tables:
        rows, checksum = store.query(CHECKSUM_SQL.replace("{table}", table))[0]
        out[table] = {"rows": int(rows), "checksum": checksum}
    return out


def _tables(store: Store) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the store's tables, views left out (consentgate makes none)."""
    rows = store.query("SELECT name, create_table_query FROM system.tables WHERE database = {db:String} "
                       "AND engine NOT LIKE '%View%' ORDER BY name", {"db": store.db})
    return [(name, ddl) for name, ddl in rows]


def write_snapshot(store: Store, writer: BatchWriter, folder: Path) -> dict[str, Any]:
    """Writes the store's schema and rows into `folder` (manifest.json, schema/*.sql, data/*.native)."""
    if store.cluster:
        raise BackupError("a cluster store is backed up with ClickHouse's own BACKUP on its servers "
                          "(docs/deploy.md); consentgate backup covers one store")
    (folder / "schema").mkdir(parents=True)
    (folder / "data").mkdir()
    writer.flush_pending()  # what was acknowledged is in the store, not only in the spool
    started = time.monotonic()
    with writer.paused():  # no batch lands between two tables: one cut for all of them
        tables = _tables(store)
        saved = [name for name, _ in tables if name in DATA_TABLES]
        for name, ddl in tables:
            (folder / "schema" / f"{name}.sql").write_text(ddl + "\n", encoding="utf-8")
        for name in saved:
            with open(folder / "data" / f"{name}.native", "wb") as out, \
                    store.client.raw_stream(f"SELECT * FROM {store.db}.`{name}`", fmt="Native") as stream:
                for chunk in stream:
                    out.write(chunk)
        checksums = table_checksums(store, saved)
    manifest = {
        "format": FORMAT,
        "database": store.db,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "schema_versions": sorted(int(r[0]) for r in store.query(f"SELECT version FROM {store.db}.schema_migrations")),
        "tables": [{"name": name, "data": name in saved, **checksums.get(name, {})} for name, _ in tables],
        "seconds_held": round(time.monotonic() - started, 3),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def tar_stream(folder: Path) -> Iterator[bytes]:
    """The folder as an uncompressed tar, file by file, without building it on disk or in memory."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        info = tarfile.TarInfo(str(path.relative_to(folder)))
        info.size = path.stat().st_size
        info.mtime = int(path.stat().st_mtime)
        info.mode = 0o600
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
        if info.size % tarfile.BLOCKSIZE:
            yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)  # end of archive


SCRATCH_PREFIX = "backup-"


def remove_backup_scratch(data_dir: Path) -> int:
    """Removes the scratch copies a stopped gateway left behind (killed while streaming one): a full copy of
    the store that erasure and retention would never reach. Returns how many there were."""
    left = [p for p in data_dir.glob(SCRATCH_PREFIX + "*") if p.is_dir()]
    for folder in left:
        shutil.rmtree(folder, ignore_errors=True)
    return len(left)


async def backup_response(store: Store, writer: BatchWriter, data_dir: Path) -> StreamingResponse:
    """Takes the snapshot into a scratch folder of data_dir, streams it as a tar, then removes it."""
    folder = data_dir / f"{SCRATCH_PREFIX}{uuid.uuid4().hex}"
    try:
        await run_in_threadpool(write_snapshot, store, writer, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(tar_stream(folder), media_type="application/x-tar",
                             headers={"Content-Disposition": f'attachment; filename="consentgate-backup-{stamp}.tar"',
                                      "Cache-Control": "no-store"},
                             background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


# ---- the commands ---------------------------------------------------------------------------------

def run_backup(config: GatewayConfig, to: str, url: str = "", token: str = "") -> int:
    """`consentgate backup`: downloads the running gateway's snapshot into the empty folder `to`."""
    from gateway.admin_api import ADMIN_TOKEN_ENV
    from gateway.gateway_client import GatewayRequestFailed, download, gateway_url

    target = Path(to)
    if target.exists() and any(target.iterdir()):
        print(f"consentgate backup: {to} is not empty: give a new folder for each backup", file=sys.stderr)
        return 2
    token = token or os.environ.get(ADMIN_TOKEN_ENV, "") or (config.admin_tokens[0] if config.admin_tokens else "")
    if not token:
        print(f"consentgate backup: no admin token: set [gateway] admin_tokens, {ADMIN_TOKEN_ENV} or --token",
              file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "backup.tar"
    try:
        size = download(f"{gateway_url(config, url)}/api/admin/backup", {}, token, archive)
        with tarfile.open(archive, "r:") as tar:
            tar.extractall(target, filter="data")  # no path leaves the folder, no links, no devices
    except (GatewayRequestFailed, tarfile.TarError) as exc:
        print(f"consentgate backup: {exc}", file=sys.stderr)
        return 1
    finally:
        archive.unlink(missing_ok=True)
    manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    rows = ", ".join(f"{t['name']} {t['rows']}" for t in manifest["tables"] if t["data"] and t["name"] != "schema_migrations")
    print(f"consentgate backup: {size} bytes into {to}; rows: {rows}", file=sys.stderr)
    return 0


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder} holds no readable {MANIFEST} ({exc}): give a folder made by "
                          "`consentgate backup`") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{folder} is a backup of format {manifest.get('format')!r}; this version reads {FORMAT}")
    return manifest


def restore_into(store: Store, folder: Path) -> dict[str, dict[str, Any]]:
    """Loads a backup into an empty store, checks every table against the manifest, then applies the
    migrations the backup predates. Returns the checksums found."""
    manifest = read_manifest(folder)
    present = store.query("SELECT name, total_rows FROM system.tables WHERE database = {db:String}", {"db": store.db})
    if any(rows for _, rows in present):
        raise BackupError(f"database {store.db} of the store already holds rows: restore into an empty store "
                          "(point store at a new folder, restore, then start the gateway on it)")
    store.command(f"CREATE DATABASE IF NOT EXISTS {store.db}")
    source_db = manifest["database"]
    for table in manifest["tables"]:
        name = table["name"]
        ddl = (folder / "schema" / f"{name}.sql").read_text(encoding="utf-8").strip()
        # The statement names its database: the one backed up, or this store's.
        ddl = ddl.replace(f"CREATE TABLE {source_db}.", f"CREATE TABLE IF NOT EXISTS {store.db}.", 1)
        store.command(ddl)
        if table["data"]:
            with open(folder / "data" / f"{name}.native", "rb") as data:
                store.client.raw_insert(f"{store.db}.`{name}`", insert_block=data.read(), fmt="Native")
    saved = [t["name"] for t in manifest["tables"] if t["data"]]
    found = table_checksums(store, saved)
    wrong = [f"{t['name']}: {found[t['name']]} instead of {t['rows']} rows, checksum {t['checksum']}"
             for t in manifest["tables"] if t["data"] and found[t["name"]] != {"rows": t["rows"], "checksum": t["checksum"]}]
    if wrong:
        raise BackupError("the restored tables differ from the backup (a damaged file?): " + "; ".join(wrong))
    store.migrate()  # a backup of an earlier version gets the later migrations now
    return found


def run_restore(config: GatewayConfig, source: str) -> int:
    """`consentgate restore`: the backup in folder `source` into the config's store (gateway stopped)."""
    store = Store(config.store, config.retention_days, consent_retention_days=config.consent_retention_days)
    store.cluster = config.cluster
    try:
        found = restore_into(store, Path(source))
    except BackupError as exc:
        print(f"consentgate restore: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - shown to the operator, with the likely cause
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        hint = (" (is the gateway running? the embedded store can be opened by one process only: stop it first)"
                if "lock" in text.lower() else "")
        print(f"consentgate restore: {text}{hint}", file=sys.stderr)
        return 1
    rows = ", ".join(f"{name} {c['rows']}" for name, c in found.items() if name != "schema_migrations")
    print(f"consentgate restore: restored into {config.store.split('@')[-1]}; rows (checked): {rows}", file=sys.stderr)
    return 0
