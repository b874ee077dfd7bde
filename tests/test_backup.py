"""`consentgate backup` through a running gateway and `consentgate restore` into a fresh store, compared
table by table (rows and sum(cityHash64(*))) with the original; the backup route's auth; damaged backups."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from forwarding_helpers import send_hit, wait_until
from harness import ROOT, SITE_ORIGIN, STATS_TOKEN, UA_CHROME, GatewayProcess, grant, write_config

ADMIN_TOKEN = "admin-token-for-backup-tests-0123456789"
H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}
# Tables whose rows a backup carries (the derived stats tables are rebuilt from events).
# What a backup must carry: every record table, the settings made at run time (goals, shared links, sent
# reports) and the migration log.
DATA_TABLES = ("banner_versions", "consents", "erasures", "events", "forwards", "restrictions", "goals",
               "shared_links", "report_runs", "schema_migrations")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def checksums(gw: GatewayProcess) -> dict[str, tuple[int, str]]:
    """Rows and checksum per table, read from a stopped gateway's store with `consentgate sql`."""
    out = {}
    for table in DATA_TABLES:
        row = gw.sql(f"SELECT count() AS n, toString(sum(cityHash64(*))) AS h FROM {{db}}.{table}")[0]
        out[table] = (int(row["n"]), row["h"])
    return out


def test_backup_while_running_restores_into_a_fresh_store_with_equal_tables(make_gateway, tmp_path: Path):
    gw = make_gateway(gateway={"admin_tokens": [ADMIN_TOKEN]})
    with gw.client() as c:
        stays = grant(c, analytics=True, marketing=False, preferences=False)
        c.cookies.clear()
        leaves = grant(c, analytics=True, marketing=True, preferences=True)
        c.cookies.clear()
        for i in range(5):
            send_hit(c, stays["token"], f"/page-{i}")
        send_hit(c, leaves["token"], "/before-withdrawal")
        r = c.request("DELETE", "/s/demo/consent", headers={**H, "X-Consent-Token": leaves["token"]})
        assert r.status_code == 200, r.text
        c.cookies.clear()
        # A goal made in the dashboard lives only in the store (table `goals`): the backup must keep it.
        r = c.post("/api/stats/demo/goals", json={"name": "Signup", "event": "signup"},
                   headers={"Authorization": f"Bearer {STATS_TOKEN}"})
        assert r.status_code == 201, r.text
        # Hits keep arriving while the backup runs: they wait in the spool, and the backup holds each
        # table at one cut (the restore check below proves the manifest matches what was saved).
        stop = threading.Event()
        during: list[int] = []

        def keep_sending() -> None:
            with gw.client() as c2:
                while not stop.is_set() and len(during) < 200:
                    during.append(send_hit(c2, stays["token"], f"/during-{len(during)}").status_code)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        backup_dir = tmp_path / "backup-1"
        done = cli("backup", "--config", str(gw.config_path), "--to", str(backup_dir), "--url", gw.url)
        stop.set()
        sender.join(30)
        assert done.returncode == 0, done.stderr
        assert during and set(during) == {202}
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    saved = {t["name"]: t for t in manifest["tables"]}
    assert {n for n, t in saved.items() if t["data"]} == set(DATA_TABLES)
    assert saved["goals"]["rows"] == 1
    assert not saved["visits"]["data"] and (backup_dir / "schema" / "visits.sql").exists()  # rebuilt, not copied
    gw.stop()
    original = checksums(gw)
    # Every hit sent before the backup is in it (the spool was written out first); the ones during it
    # are in the backup or not, each whole.
    assert 6 <= saved["events"]["rows"] <= 6 + len(during)
    assert original["events"][0] == 6 + len(during)
    assert saved["consents"]["rows"] == original["consents"][0] == 3  # two decisions and a withdrawal

    fresh = tmp_path / "restored"
    fresh.mkdir()
    restored = GatewayProcess(write_config(fresh, {"admin_tokens": [ADMIN_TOKEN]}), fresh)
    done = cli("restore", "--config", str(restored.config_path), "--from", str(backup_dir))
    assert done.returncode == 0, done.stderr
    after = checksums(restored)
    assert after == {t: (saved[t]["rows"], saved[t]["checksum"]) for t in DATA_TABLES}
    # With no traffic during the backup window the stores would be equal; here: every table but
    # events is equal, and the restored events are the original's first ones, by id.
    assert {t: v for t, v in after.items() if t != "events"} == {t: v for t, v in original.items() if t != "events"}
    ids = lambda g: {r["id"] for r in g.sql("SELECT toString(event_id) AS id FROM {db}.events")}  # noqa: E731
    assert ids(restored) <= ids(gw)

    # The restored store serves: old tokens keep their rights, the withdrawal still holds.
    restored.start()
    with restored.client() as c:
        assert send_hit(c, stays["token"], "/after-restore").headers["x-consentgate-result"] == "stored"
        assert send_hit(c, leaves["token"], "/after-restore").headers["x-consentgate-result"].startswith("dropped")
    restored.stop()

    # A second restore into the same store is refused: it already holds rows.
    again = cli("restore", "--config", str(restored.config_path), "--from", str(backup_dir))
    assert again.returncode == 1 and "already holds rows" in again.stderr


def test_restore_refuses_a_backup_that_does_not_match_its_manifest(make_gateway, tmp_path: Path):
    gw = make_gateway(gateway={"admin_tokens": [ADMIN_TOKEN]})
    with gw.client() as c:
        send_hit(c, grant(c, analytics=True)["token"], "/one")
    backup_dir = tmp_path / "b"
    assert cli("backup", "--config", str(gw.config_path), "--to", str(backup_dir), "--url", gw.url).returncode == 0
    gw.stop()
    # A data file that lost its last block of rows: the row count no longer matches the manifest.
    manifest_path = backup_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for table in manifest["tables"]:
        if table["name"] == "events":
            table["rows"] += 1
    manifest_path.write_text(json.dumps(manifest))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    done = cli("restore", "--config", str(write_config(fresh)), "--from", str(backup_dir))
    assert done.returncode == 1 and "differ from the backup" in done.stderr and "events" in done.stderr
    # Not a backup folder at all.
    other = tmp_path / "other"
    other.mkdir()
    done = cli("restore", "--config", str(write_config(other)), "--from", str(tmp_path / "nothing-here"))
    assert done.returncode == 1 and "consentgate backup" in done.stderr


def test_backup_route_needs_an_admin_token_and_the_command_a_new_folder(make_gateway, tmp_path: Path):
    gw = make_gateway(gateway={"admin_tokens": [ADMIN_TOKEN]})
    with gw.client() as c:
        assert c.get("/api/admin/backup").status_code == 401
        wrong = c.get("/api/admin/backup", headers={"Authorization": f"Bearer {STATS_TOKEN}"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "bad_admin_token"
        ok = c.get("/api/admin/backup", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/x-tar"
    # The scratch folder of the snapshot is removed once it was sent.
    wait_until(lambda: not list(gw.folder.glob("store/backup-*")), 10, "scratch folder removed")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    done = cli("backup", "--config", str(gw.config_path), "--to", str(busy), "--url", gw.url)
    assert done.returncode == 2 and "not empty" in done.stderr
    off = make_gateway()  # no admin_tokens: the route does not exist
    assert httpx.get(f"{off.url}/api/admin/backup", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 404


def test_a_backup_scratch_copy_left_by_a_killed_gateway_is_removed_at_start(make_gateway):
    """A backup's scratch folder is a full copy of the store, out of reach of erasure and retention. A gateway
    killed while sending one leaves it behind; the next start removes it (uvicorn removes it itself after a
    finished or dropped download: the response's background task)."""
    gw = make_gateway(gateway={"admin_tokens": [ADMIN_TOKEN]})
    gw.kill()
    left = gw.folder / "store" / "backup-0123456789abcdef"  # what a gateway killed mid-download leaves
    (left / "store").mkdir(parents=True)
    (left / "store" / "events.bin").write_bytes(b"203.0.113.77 a copy of the visitors' rows")
    gw.start()
    assert not left.exists()
    assert "removed 1 backup scratch copies" in gw.logs()
