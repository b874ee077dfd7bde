"""A real `consentgate demo` (gateway, generated traffic, demo site) and Debian's Chromium via Playwright."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from harness import ROOT, free_port

DEMO_EVENTS = 60_000


@dataclass
class Demo:
    gateway: str
    site: str
    log: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("demo")
    port, site_port = free_port(), free_port()
    log = folder / "demo.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--events", str(DEMO_EVENTS),
                                    "--dir", str(folder / "data"), "--port", str(port), "--site-port", str(site_port)],
                                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    gateway = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"consentgate demo exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{gateway}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"consentgate demo did not start:\n{log.read_text()}")
    yield Demo(gateway, f"http://127.0.0.1:{site_port}", log)
    process.terminate()
    process.wait(30)

