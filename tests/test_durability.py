"""Acknowledged means on disk (issue: group commit).

The gateway runs under `strace -f -y`, which logs every write, fdatasync and socket
write of every thread in the order they happen, with the file each descriptor
names. For each 2xx of a consent and of a collect, the test finds the write of
that record's spool line and the write of the response, and checks that an
fdatasync of the same spool segment completed in between. With
`durability = "process"` no such fdatasync exists, which the test also checks,
so it can fail.

The second test goes one step further, in the manner of crash-state tools such as
ALICE (OSDI '14): from the same trace it rebuilds what a file system that keeps
only fdatasync'ed data would hold after a power cut at a moment right after the
last acknowledgement, starts a gateway on that spool, and finds every
acknowledged record in the store. This machine offers no dm-flakey (no
device-mapper in its kernel), so the cut is reconstructed from the real trace
rather than done to a real block device; what it proves is the order of writes,
flushes and answers that a real power cut depends on.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import SITE_ORIGIN, UA_CHROME, GatewayProcess, grant, write_config

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is installed by scripts/setup")
H = {"Origin": SITE_ORIGIN, "User-Agent": UA_CHROME}

# 1234 12:00:00.123456 write(7</x/spool/000000000001.jsonl>, "{...}", 300) = 300
CALL = re.compile(r'^(?P<pid>\d+)\s+(?P<time>[\d:.]+)\s+(?P<name>\w+)\((?P<fd>\d+)(?:<(?P<path>[^>]*)>)?(?P<rest>.*)$')
RESUMED = re.compile(r'^(?P<pid>\d+)\s+(?P<time>[\d:.]+)\s+<\.\.\. (?P<name>\w+) resumed>(?P<rest>.*)$')


@dataclass
class Call:
    index: int  # position in the trace: the order things happened
    pid: str
    name: str
    path: str
    data: str
    done: int  # index of the line where the call returned


def parse_trace(text: str) -> list[Call]:
    calls: list[Call] = []
    open_calls: dict[tuple[str, str], Call] = {}
    for index, line in enumerate(text.splitlines()):
        m = CALL.match(line)
        if m:
            call = Call(index, m["pid"], m["name"], m["path"] or "", m["rest"], index)
            calls.append(call)
            if line.endswith("<unfinished ...>"):
                open_calls[(m["pid"], m["name"])] = call
            continue
        m = RESUMED.match(line)
        if m and (m["pid"], m["name"]) in open_calls:
            open_calls.pop((m["pid"], m["name"])).done = index
    return calls


@pytest.fixture
def traced():
    """Starts traced gateways; whatever a test leaves running is killed afterwards (strace and its child)."""
    started: list[GatewayProcess] = []

    def start(tmp_path: Path, durability: str) -> tuple[GatewayProcess, Path]:
        gw, trace = traced_gateway(tmp_path, durability)
        started.append(gw)
        return gw, trace

    yield start
    for gw in started:
        if gw.process is not None and gw.process.poll() is None:
            kill_traced(gw)


def traced_gateway(tmp_path: Path, durability: str) -> tuple[GatewayProcess, Path]:
    folder = tmp_path / durability
    folder.mkdir()
    trace = folder / "strace.txt"
    gw = GatewayProcess(write_config(folder, {"durability": durability}), folder)
    gw.wrapper = [STRACE, "-f", "-y", "-tt", "-s", "8192", "-o", str(trace),
                  "-e", "trace=write,writev,pwrite64,sendto,sendmsg,fsync,fdatasync"]
    gw.start(timeout=120)
    return gw, trace


def traced_child(gw: GatewayProcess) -> int:
    assert gw.process is not None
    pid = gw.process.pid
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def kill_traced(gw: GatewayProcess) -> None:
    """SIGKILL to the gateway itself (killing strace would leave the gateway running without it)."""
    assert gw.process is not None
    os.kill(traced_child(gw), signal.SIGKILL)
    gw.process.wait(60)


def stop_traced(gw: GatewayProcess) -> None:
    """SIGTERM to the gateway itself (strace's child), as an operator would; strace ends with it."""
    assert gw.process is not None
    os.kill(traced_child(gw), signal.SIGTERM)
    assert gw.process.wait(120) in (0, -signal.SIGTERM, 128 + signal.SIGTERM), gw.logs()[-2000:]


def run_requests(gw: GatewayProcess, n: int) -> list[str]:
    """n consents and n consented collects, one at a time; returns the marker each record's line holds."""
    markers = []
    with gw.client() as c:
        for i in range(n):
            consent = grant(c, analytics=True)
            markers.append(consent["consent_id"])
            r = c.post("/s/demo/collect", json={"url": f"https://www.example.com/durable-{i}", "consent": consent["token"]},
                       headers=H)
            assert r.status_code == 202 and r.headers["x-consentgate-result"] == "stored", r.text
            markers.append(f"/durable-{i}")
    return markers


def acknowledgements(calls: list[Call], markers: list[str]) -> list[tuple[Call, Call]]:
    """(spool line write, response write) per marker, in request order."""
    spool_writes = [c for c in calls if c.name == "write" and c.path.endswith(".jsonl") and "/spool/" in c.path]
    responses = [c for c in calls if c.name in ("write", "writev", "sendto", "sendmsg") and "HTTP/1.1 2" in c.data
                 and not c.path.endswith(".jsonl")]
    pairs = []
    for marker in markers:
        line = next(c for c in spool_writes if marker in c.data)
        response = next(c for c in responses if c.index > line.index)
        pairs.append((line, response))
    return pairs


def synced_between(calls: list[Call], line: Call, response: Call) -> bool:
    return any(c.name in ("fdatasync", "fsync") and c.path == line.path and line.index < c.done < response.index
               for c in calls)


def test_every_acknowledgement_waits_for_an_fdatasync_of_its_spool_segment(tmp_path, traced):
    machine, machine_trace = traced(tmp_path, "machine")
    markers = run_requests(machine, 8)
    stop_traced(machine)
    calls = parse_trace(machine_trace.read_text())
    pairs = acknowledgements(calls, markers)
    assert len(pairs) == 16
    unsynced = [(line.data[:80], response.data[:40]) for line, response in pairs if not synced_between(calls, line, response)]
    assert unsynced == []

    # The same check on durability = "process" must fail: there, nothing is synced before the answer.
    process, process_trace = traced(tmp_path, "process")
    markers = run_requests(process, 4)
    stop_traced(process)
    calls = parse_trace(process_trace.read_text())
    pairs = acknowledgements(calls, markers)
    assert len(pairs) == 8
    assert not any(synced_between(calls, line, response) for line, response in pairs)


def durable_state(calls: list[Call], cut: int) -> dict[str, bytes]:
    """What each spool segment holds after a power cut at trace index `cut`, on a file system that keeps
    exactly the data an fdatasync/fsync returned for (and the names whose directory was fsynced; segment
    names are created before any of their data is synced, so a synced segment's name exists)."""
    written: dict[str, list[tuple[int, bytes]]] = {}
    synced_upto: dict[str, int] = {}
    for c in calls:
        if c.index >= cut:
            break
        if c.name == "write" and c.path.endswith(".jsonl") and "/spool/" in c.path:
            m = re.match(r', "(.*)", \d+(?:\) = \d+| <unfinished)', c.data)
            assert m, c.data[:100]
            raw = m.group(1).encode().decode("unicode_escape").encode("latin-1")
            written.setdefault(c.path, []).append((c.index, raw))
        elif c.name in ("fdatasync", "fsync") and c.done < cut and c.path.endswith(".jsonl"):
            synced_upto[c.path] = max(synced_upto.get(c.path, -1), c.index)
    return {path: b"".join(data for index, data in writes if index < synced_upto.get(path, -1))
            for path, writes in written.items()}


def test_a_power_cut_right_after_the_acknowledgements_loses_none_of_them(tmp_path, traced):
    gw, trace = traced(tmp_path, "machine")
    markers = run_requests(gw, 5)
    calls = parse_trace(trace.read_text())  # read while the gateway runs: the cut comes before any shutdown flush
    kill_traced(gw)
    pairs = acknowledgements(calls, markers)
    cut = max(response.index for _, response in pairs) + 1
    state = durable_state(calls, cut)
    assert state, "no spool data was synced before the cut"

    # A fresh gateway whose spool is exactly what survived the cut (the store starts empty: nothing in it
    # was synced before the first acknowledgement either, since its batch writer flushes later).
    fresh = tmp_path / "after-cut"
    fresh.mkdir()
    spool = fresh / "store" / "spool"
    spool.mkdir(parents=True)
    for path, data in state.items():
        (spool / Path(path).name).write_bytes(data)
    after = GatewayProcess(write_config(fresh), fresh).start()
    after.stop()
    consent_ids = {r["consent_id"] for r in after.sql("SELECT consent_id FROM {db}.consents")}
    paths = {r["path"] for r in after.sql("SELECT path FROM {db}.events")}
    acknowledged_consents = set(markers[0::2])
    acknowledged_paths = set(markers[1::2])
    assert acknowledged_consents <= consent_ids
    assert acknowledged_paths <= paths
