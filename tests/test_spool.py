"""The spool in-process: group commit tickets, erasure by blanking, the disk-bytes account, outbox limits."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import orjson

from analytics.spool import GroupCommit, SpoolReader, SpoolWriter, remove_finished_segments, replace_file


def run_async(coro) -> None:
    """asyncio.run in a thread of its own: a browser test earlier in the session may leave a loop
    running in the main thread (Playwright's sync API), where asyncio.run refuses to start."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]


def segment_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def test_a_ticket_is_released_only_by_a_flush_that_came_after_its_write(tmp_path):
    commit = GroupCommit(durable=True, interval=0)
    spool = SpoolWriter(tmp_path, commit=commit)
    first = spool.append({"n": 1})
    assert first > 0 and not commit.covers(first)  # written, not yet flushed
    commit.flush()
    assert commit.covers(first)
    second = spool.append({"n": 2})
    assert second > first and not commit.covers(second)  # the flush before it does not count
    assert commit.wait_sync(second, timeout=5) and commit.covers(second)  # a thread flushes for itself
    spool.close()


def test_one_flush_covers_every_request_waiting_and_every_spool(tmp_path):
    commit = GroupCommit(durable=True, interval=0.005)
    main = SpoolWriter(tmp_path / "main", commit=commit)
    outbox = SpoolWriter(tmp_path / "outbox", commit=commit)
    synced: list[str] = []
    for w in (main, outbox):
        original = w.sync

        def counting(w=w, original=original) -> None:
            if w.appended != w._synced:
                synced.append(w.folder.name)
            original()
        w.sync = counting  # type: ignore[method-assign]

    async def requests() -> None:
        async def one(i: int) -> None:
            ticket = max(main.append({"i": i}), outbox.append({"i": i}))
            await commit.wait(ticket)
        await asyncio.gather(*(one(i) for i in range(200)))

    commit.start()
    try:
        run_async(asyncio.wait_for(requests(), 30))
    finally:
        commit.stop()
    # 400 appends from 200 concurrent requests: far fewer syncs than appends, each file synced per flush
    assert 0 < len(synced) < 200, len(synced)
    assert set(synced) == {"main", "outbox"}
    main.close()
    outbox.close()


def test_process_durability_never_waits_nor_syncs(tmp_path):
    commit = GroupCommit(durable=False)
    spool = SpoolWriter(tmp_path, commit=commit)
    assert spool.append({"n": 1}) == 0
    run_async(asyncio.wait_for(commit.wait(0), 1))
    spool.close()


def test_erase_blanks_matching_lines_keeps_offsets_and_readers_skip_them(tmp_path):
    spool = SpoolWriter(tmp_path)
    records = [{"kind": "event", "visitor_id": "a" if i % 3 == 0 else "b", "i": i} for i in range(30)]
    for r in records:
        spool.append(r)
    reader = SpoolReader(tmp_path, "store")
    head, pos = reader.read(5)  # a reader part-way through the segment
    sizes_before = {p.name: p.stat().st_size for p in segment_files(tmp_path)}
    erased = spool.erase(lambda r: r.get("visitor_id") == "a")
    assert erased == 10
    sizes_after = {p.name: p.stat().st_size for p in segment_files(tmp_path) if p.name in sizes_before}
    assert sizes_after == sizes_before  # same length: every reader's offset still points at a line start
    text = b"".join(p.read_bytes() for p in segment_files(tmp_path))
    assert b'"visitor_id":"a"' not in text
    rest, _ = reader.read(100, pos)
    assert [r["i"] for r in rest] == [r["i"] for r in records[5:] if r["visitor_id"] == "b"]
    spool.append({"kind": "event", "visitor_id": "a", "i": 99})  # the writer moved on to a new segment
    assert len(segment_files(tmp_path)) == 2
    spool.close()


def test_disk_bytes_follow_appends_and_removed_segments(tmp_path):
    spool = SpoolWriter(tmp_path, segment_bytes=200)
    for i in range(20):
        spool.append({"i": i, "pad": "x" * 40})
    on_disk = sum(p.stat().st_size for p in segment_files(tmp_path))
    assert spool.disk_bytes == on_disk
    reader = SpoolReader(tmp_path, "store")
    _, pos = reader.read(1000)
    reader.commit(pos)
    remove_finished_segments(tmp_path, [reader], spool)
    assert spool.disk_bytes == sum(p.stat().st_size for p in segment_files(tmp_path))
    assert spool.disk_bytes < on_disk
    spool.close()
    assert SpoolWriter(tmp_path).disk_bytes == spool.disk_bytes  # counted again from the files at start


def test_replace_file_is_all_or_nothing(tmp_path):
    target = tmp_path / "store.checkpoint"
    replace_file(target, b'{"segment": 1, "offset": 0}')
    replace_file(target, b'{"segment": 2, "offset": 7}')
    assert json.loads(target.read_text()) == {"segment": 2, "offset": 7}
    assert [p.name for p in tmp_path.iterdir()] == ["store.checkpoint"]  # no temporary file left behind


def test_appends_from_many_threads_all_get_a_released_ticket(tmp_path):
    commit = GroupCommit(durable=True, interval=0.001)
    spool = SpoolWriter(tmp_path, commit=commit)
    commit.start()
    failures: list[int] = []

    def worker(n: int) -> None:
        for i in range(50):
            if not commit.wait_sync(spool.append({"t": n, "i": i}), timeout=10):
                failures.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    commit.stop()
    spool.close()
    assert failures == []
    lines = b"".join(p.read_bytes() for p in segment_files(tmp_path)).splitlines()
    assert len(lines) == 400 and all(orjson.loads(x) for x in lines)


def test_pending_of_some_kinds_parses_only_their_lines(tmp_path):
    spool = SpoolWriter(tmp_path)
    for i in range(6):
        spool.append({"kind": "event" if i % 3 else "consent", "i": i})
    spool.append({"kind": "restriction", "i": 6})
    reader = SpoolReader(tmp_path, "store")
    assert [r["i"] for r in reader.pending(kinds=("consent", "restriction"))] == [0, 3, 6]
    assert [r["i"] for r in reader.pending()] == list(range(7))
    spool.close()


def test_a_batch_inserts_what_records_refer_to_before_them():
    """A decision names its banner version: inserted in the other order, an export taken between the two
    inserts would list a decision whose wording is missing (seen in CI before the order was fixed)."""
    from analytics.writer import INSERT_ORDER

    assert INSERT_ORDER.index("banner_version") < INSERT_ORDER.index("consent")
    assert INSERT_ORDER.index("event") < INSERT_ORDER.index("forward")  # a recipient row names its event


def _file_lines(folder: Path) -> list[dict]:
    return [orjson.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_bytes().splitlines()
            if line.strip()]


def test_only_a_hits_line_waits_in_memory_for_its_flush_and_order_is_kept(tmp_path):
    # durability = machine: a hit's line (defer=True: its answer waits for the flush) reaches the file with the
    # flush; any other line (a delivery's outcome, a consent) is written at once, after the hits before it, so
    # it survives a killed process as before (an outcome lost to kill -9 meant a vendor got a hit twice).
    commit = GroupCommit(durable=True)
    spool = SpoolWriter(tmp_path / "spool", commit=commit)
    spool.append({"i": 1}, defer=True)
    assert _file_lines(tmp_path / "spool") == []  # in memory until a flush
    spool.append({"i": 2}, defer=True)
    spool.append({"i": 3})  # not deferred: written at once, the two before it first
    assert [r["i"] for r in _file_lines(tmp_path / "spool")] == [1, 2, 3]
    ticket = spool.append({"i": 4}, defer=True)
    commit.flush()
    assert commit.covers(ticket) and [r["i"] for r in _file_lines(tmp_path / "spool")] == [1, 2, 3, 4]
    process = SpoolWriter(tmp_path / "process", commit=GroupCommit(durable=False))
    process.append({"i": 5}, defer=True)  # durability = process: the write() is the acknowledgement
    assert [r["i"] for r in _file_lines(tmp_path / "process")] == [5]
    spool.close()
    process.close()
