"""The app factory for several worker processes: `consentgate serve --workers N` (a server store only).

uvicorn starts each worker by importing `gateway.asgi:app_from_env` (a factory) and
calling it; the config path comes from the environment. Each worker needs a spool of
its own: it claims the lowest free slot `data_dir/worker-<n>` by holding an exclusive
lock on `worker-<n>.lock` for its lifetime, so a restarted worker takes over the spool
(and checkpoint) its predecessor left, and two workers never share one.
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from starlette.applications import Starlette

from gateway.config import GatewayConfig, load_config

CONFIG_ENV = "CONSENTGATE_CONFIG"
log = logging.getLogger("consentgate")


def claim_worker_slot(data_dir: Path, limit: int = 1024) -> tuple[int, IO[bytes]]:
    """The lowest worker slot no living process holds, and its open lock file (keep it open)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for n in range(limit):
        lock = open(data_dir / f"worker-{n}.lock", "wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return n, lock
    raise RuntimeError(f"no free worker slot among {limit} in {data_dir}")


def worker_config(config: GatewayConfig, slot: int) -> GatewayConfig:
    """The worker's own data folder (spool, outboxes) under the configured one."""
    return dataclasses.replace(config, data_dir=config.data_dir / f"worker-{slot}")


def unclaimed_spools(data_dir: Path) -> list[Path]:
    """Worker folders whose lock nobody holds and whose spool still holds records: left by a restart with
    fewer workers. Start that many workers again (or one gateway with data_dir set to the folder) to drain them."""
    left = []
    for folder in sorted(data_dir.glob("worker-*")):
        if not folder.is_dir() or not any((folder / "spool").glob("*.jsonl")):
            continue
        with open(data_dir / f"{folder.name}.lock", "ab") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
                left.append(folder)
            except BlockingIOError:
                pass
    return left


def app_from_env() -> Starlette:
    from gateway.app import create_app

    config = load_config(os.environ[CONFIG_ENV])
    slot, lock = claim_worker_slot(config.data_dir)
    app = create_app(worker_config(config, slot))
    app.state.worker_lock = lock  # held while the worker lives
    log.info("worker %d (pid %d) spools into %s", slot, os.getpid(), config.data_dir / f"worker-{slot}")
    return app
