"""Real gateways for tests: a uvicorn subprocess per gateway, each with its own config and store.

chDB lets one process open one data path, so every gateway runs in its own
process and tests read its store with `consentgate sql` after stopping it
(or through the gateway's HTTP API while it runs).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-key-0123456789abcdef"
STATS_TOKEN = "test-stats-token-0123456789"  # stats tokens need >= 24 characters
UA_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")
SITE_ORIGIN = "https://www.example.com"
# Debian's Chromium (scripts/setup installs it); Playwright's own browser download does not work here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(folder: Path, gateway: dict[str, Any] | None = None, sites: dict[str, dict[str, Any]] | None = None) -> Path:
    """A config file with one site `demo` (origin https://www.example.com) unless told otherwise.
    Site tables may hold `vendors = [ {...}, ... ]` (written as [[sites.X.vendors]])."""
    gw = {"secret_key": SECRET, "store": f"chdb://{folder / 'store'}", "flush_interval": 0.2,
          "stats_tokens": [STATS_TOKEN], **(gateway or {})}
    sites = sites if sites is not None else {"demo": {"origins": [SITE_ORIGIN]}}
    lines = ["[gateway]"] + [f"{k} = {toml_value(v)}" for k, v in gw.items()]
    for name, site in sites.items():
        site = dict(site)
        vendors = site.pop("vendors", [])
        lines += ["", f"[sites.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in site.items()]
        for vendor in vendors:
            lines += ["", f"[[sites.{name}.vendors]]"] + [f"{k} = {toml_value(v)}" for k, v in vendor.items()]
    path = folder / "consentgate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class GatewayProcess:
    """One real gateway: `consentgate serve` in a subprocess on a free port."""

    config_path: Path
    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    wrapper: list[str] = field(default_factory=list)  # a command the gateway runs under, e.g. strace

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "GatewayProcess":
        self.log_path = self.folder / f"gateway-{int(time.time() * 1000)}.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config_path),
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"gateway did not start within {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, as an operator or systemd would: the gateway drains its spool and exits.
        uvicorn re-raises the signal after a clean shutdown, so -SIGTERM is a clean exit too."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        assert code in (0, -signal.SIGTERM), f"gateway exited with {code}:\n{self.logs()[-3000:]}"

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("gateway-*.log")))

    def sql(self, query: str) -> list[dict[str, Any]]:
        """Reads the store with `consentgate sql` (the gateway must be stopped: chDB's lock)."""
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "sql", "--config", str(self.config_path), query],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)


def written_files(folder: Path) -> list[Path]:
    """Everything a gateway wrote under its folder (store, spool, logs)."""
    return [p for p in folder.rglob("*") if p.is_file()]


def grant(client: httpx.Client, site: str = "demo", origin: str = SITE_ORIGIN, **choices: bool) -> dict[str, Any]:
    """Gives consent like the banner does; returns the JSON answer (with `token`)."""
    method = "accept_all" if choices and all(choices.values()) and len(choices) == 3 else "custom"
    r = client.post(f"/s/{site}/consent", json={"choices": choices, "method": method, "language": "en"},
                    headers={"Origin": origin, "User-Agent": UA_CHROME})
    r.raise_for_status()
    return r.json()


def rss_mib(pid: int) -> float:
    """A process's resident memory now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class PeakRSS:
    """Samples a process's resident memory in a thread while the `with` block runs: `.before`, `.peak` (MiB)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import threading

        self.pid = pid
        self.interval = interval
        self.before = self.peak = rss_mib(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self._done.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


@contextlib.contextmanager
def gateways_on_one_store(folder: Path, settings: list[dict[str, Any]]) -> Iterator[list[httpx.Client]]:
    """Gateways, one per `settings` ([gateway] keys), on one chDB store, with a client each. They run in one child
    process (`python tests/test_scale_out.py CONFIG...`: chDB allows one data path per process), each a real
    Services and app under its own uvicorn server, with its own spool."""
    store = f"chdb://{folder / 'shared-store'}"
    configs = []
    for i, gateway in enumerate(settings):
        own = folder / f"gateway-{i}"
        own.mkdir()
        configs.append(str(write_config(own, {"store": store, "data_dir": str(own / "data"), "durability": "process",
                                              **gateway})))
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "test_scale_out.py"), *configs], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ports = [int(proc.stdout.readline()) for _ in configs]
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in ports]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()
        proc.stdin.close()
        proc.wait(30)
