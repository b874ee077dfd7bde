"""Upgrade from a store made by an earlier version of this code (commit 47b1d6a, schema migrations 1-3)
to the current one: the data is kept, the later migrations apply, and old tokens get what today's rules say.

The old version runs from `git archive 47b1d6a` with the same venv: `env --chdir` puts its folder first
on sys.path (python -m puts the working directory before PYTHONPATH and the installed project)."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from forwarding_helpers import send_hit
from harness import ROOT, SITE_ORIGIN, UA_CHROME, GatewayProcess, grant, write_config

from analytics.schema import MIGRATIONS

OLD_COMMIT = "47b1d6a"  # the last landed version before migrations 4 and 5
OLD_VERSIONS = [1, 2, 3]
H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}


@pytest.fixture(scope="module")
def old_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"]).returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT} is not in this clone's history (a shallow clone?): fetch it to run this test")
    folder = tmp_path_factory.mktemp("old-code")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    assert "(4, [" not in (folder / "analytics" / "schema.py").read_text()  # really the version before 4
    yield folder


def result(r: httpx.Response) -> str:
    return r.headers["x-consentgate-result"]


def test_a_store_made_by_the_previous_version_upgrades_with_its_data_and_tokens(old_code: Path, tmp_path: Path):
    config = write_config(tmp_path)
    old = GatewayProcess(config, tmp_path, wrapper=["env", f"--chdir={old_code}", f"PYTHONPATH={old_code}"]).start()
    with old.client() as c:
        # C: one decision. A: analytics, then more (marketing too) under the same consent id.
        # B: a decision, then a withdrawal.
        c1 = grant(c, analytics=True)["token"]
        c.cookies.clear()
        a1 = grant(c, analytics=True)["token"]
        c.cookies.clear()
        a2 = c.post("/s/demo/consent", headers=H, json={"choices": {"analytics": True, "marketing": True},
                                                        "method": "custom", "consent": a1}).json()
        c.cookies.clear()
        b1 = grant(c, analytics=True)["token"]
        c.cookies.clear()
        assert c.request("DELETE", "/s/demo/consent", headers={**H, "X-Consent-Token": b1}).status_code == 200
        c.cookies.clear()
        before = {name: result(send_hit(c, token, f"/old-{name}"))
                  for name, token in (("c1", c1), ("a1", a1), ("a2", a2["token"]), ("b1", b1))}
    old.stop()
    # The old rule: only a narrower choice or a withdrawal revoked older tokens, so a1 still counted.
    assert before == {"c1": "stored", "a1": "stored", "a2": "stored", "b1": "dropped: withdrawn"}
    assert sorted(r["version"] for r in old.sql("SELECT version FROM {db}.schema_migrations")) == OLD_VERSIONS

    new = GatewayProcess(config, tmp_path).start()  # the current code on the old store
    with new.client() as c:
        assert c.get("/readyz").status_code == 200
        # Today's rule (gateway/revocations.py): every later decision supersedes the id's older tokens,
        # so a1 (issued before A's second decision) no longer counts; a2 and c1 do; b1 stays withdrawn.
        after = {name: result(send_hit(c, token, f"/new-{name}"))
                 for name, token in (("c1", c1), ("a1", a1), ("a2", a2["token"]), ("b1", b1))}
        assert after == {"c1": "stored", "a1": "dropped: withdrawn", "a2": "stored", "b1": "dropped: withdrawn"}
        assert c.get("/s/demo/consent", headers={**H, "X-Consent-Token": a2["token"]}).json()["choices"]["marketing"] is True
        assert c.get("/s/demo/consent", headers={**H, "X-Consent-Token": a1}).json()["choices"] is None
    new.stop()

    assert sorted(r["version"] for r in new.sql("SELECT version FROM {db}.schema_migrations")) == \
        sorted(v for v, _ in MIGRATIONS)
    tables = {r["name"] for r in new.sql("SELECT name FROM system.tables WHERE database = 'consentgate'")}
    assert {"banner_versions", "erasures", "restrictions"} <= tables  # migrations 4 and 5
    columns = {r["name"] for r in new.sql("SELECT name FROM system.columns WHERE database = 'consentgate' "
                                          "AND table = 'consents'")}
    assert {"banner_version", "page"} <= columns
    # The old rows are all there, next to the new ones; old consent rows got the new columns' defaults.
    paths = sorted(r["path"] for r in new.sql("SELECT path FROM {db}.events"))
    assert paths == ["/new-a2", "/new-c1", "/old-a1", "/old-a2", "/old-c1"]
    consents = new.sql("SELECT action, banner_version, page FROM {db}.consents ORDER BY timestamp")
    assert [r["action"] for r in consents] == ["grant", "grant", "grant", "grant", "withdraw"]
    assert {(r["banner_version"], r["page"]) for r in consents} == {("", "")}

    # And the answers hold across a restart of the current code (one revocation rule, live and at start).
    again = GatewayProcess(config, tmp_path).start()
    with again.client() as c:
        assert {name: result(send_hit(c, token, f"/again-{name}"))
                for name, token in (("c1", c1), ("a1", a1), ("a2", a2["token"]), ("b1", b1))} == after
    again.stop()
