from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CHROMIUM, CHROMIUM_ARGS, GatewayProcess, write_config  # noqa: E402


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator:
    """Starts real gateways: make_gateway(gateway={...}, sites={...}) -> running GatewayProcess."""
    started: list[GatewayProcess] = []

    def make(gateway: dict | None = None, sites: dict | None = None, start: bool = True, env: dict | None = None,
             folder: Path | None = None) -> GatewayProcess:
        target = folder or tmp_path / f"gw{len(started)}"
        target.mkdir(exist_ok=True)
        gw = GatewayProcess(write_config(target, gateway, sites), target, env=env or {})
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        gw.kill()


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway shared by a module's tests that do not need a fresh store."""
    folder = tmp_path_factory.mktemp("gateway")
    gw = GatewayProcess(write_config(folder, sites={
        "demo": {"origins": ["https://www.example.com"]},
        "other": {"origins": ["https://www.other.example"]},
    }), folder).start()
    yield gw
    gw.kill()


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One Chromium for the whole run: Playwright's sync API allows one instance per process."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
