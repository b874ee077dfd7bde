"""The local spool: every acknowledged record is appended here before the 2xx.

A spool is a folder of numbered segment files holding one JSON record per line.
`SpoolWriter.append` hands the whole line to the kernel in one `write()` and
returns a commit ticket; with `durability = "machine"` the request then waits
(`GroupCommit.wait`) until one `fdatasync` covering that line has returned, so a
power cut after the 2xx still finds it. One flush syncs every spool of the
gateway (the main spool and each vendor outbox), one fdatasync per dirty file,
however many requests wrote since the last flush: group commit.

A reader keeps its place in a checkpoint file (segment, byte offset) that it
replaces atomically (write, fsync, rename, fsync dir) once a batch is safely
elsewhere; finished segments before the checkpoint are deleted. Several readers
may follow one spool, each with its own checkpoint name.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("consentgate.spool")
SEGMENT_BYTES = 8 * 1024 * 1024


def kind_mark(kind: str) -> bytes:
    """How a record of this kind reads in its spooled line (orjson writes compact JSON): found without parsing."""
    return f'"kind":"{kind}"'.encode()


def _segments(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.glob("*.jsonl") if p.stem.isdigit())


def _segment_path(folder: Path, number: int) -> Path:
    return folder / f"{number:012d}.jsonl"


def fsync_dir(folder: Path) -> None:
    """Makes a created, renamed or deleted name in `folder` survive a machine crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, durable: bool = True) -> None:
    """Replaces `path` with `data` atomically: a crash leaves the old or the new file, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


class GroupCommit:
    """Flushes every registered spool with one fdatasync per dirty file, and wakes the requests waiting for it.

    Tickets are generations: an append made while generation g is open gets ticket g; a flush opens
    g+1 and then syncs, so every line with a ticket <= g is on stable storage once it returns.
    A request's `wait` queues a flush on its event loop (behind the requests that loop is handling, so
    a burst shares it); the flush opens the next generation on the loop and hands the fdatasync to one
    sync thread, so the loop goes on answering while the disk works (an fdatasync here costs 1-15 ms,
    measured: blocking the loop for it halved throughput). The sync thread holds the GIL only to start
    and to post one wake-up per flush; every waiter of that flush is released by that one callback.
    Threads that are not on a loop (the forwarder's outcome rows) flush with `wait_sync`.
    With `durable=False` (durability = "process") nothing is synced and nobody waits.
    """

    def __init__(self, durable: bool = True, interval: float = 0.002) -> None:
        self.durable = durable
        self.interval = interval  # the least time between two flushes: lets a burst share one
        self._writers: list[SpoolWriter] = []
        self._lock = threading.Lock()  # generation, synced mark and waiters
        self._flush_lock = threading.Lock()  # one fdatasync round at a time
        self._generation = 1
        self._synced = 0
        self._last_flush = 0.0
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self._scheduled: set[asyncio.AbstractEventLoop] = set()  # loops with a flush queued or running
        self._sync_thread: concurrent.futures.ThreadPoolExecutor | None = None
        self.flushes = 0
        self.failed: BaseException | None = None  # a flush that failed: acknowledging stops until it works

    def register(self, writer: "SpoolWriter") -> None:
        with self._lock:
            self._writers.append(writer)

    def unregister(self, writer: "SpoolWriter") -> None:
        with self._lock:
            if writer in self._writers:
                self._writers.remove(writer)

    def appended(self) -> int:
        """Called by a writer right after its write(): the ticket of that line."""
        return self._generation if self.durable else 0

    def start(self) -> None:
        if self.durable and self._sync_thread is None:
            self._sync_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="consentgate-fsync")

    def stop(self) -> None:
        if self.durable:
            self.flush()  # whatever was written and not yet waited for
        if self._sync_thread is not None:
            self._sync_thread.shutdown(wait=True)
            self._sync_thread = None

    def flush(self) -> None:
        """Syncs every dirty spool and releases the tickets it covers (in the calling thread)."""
        covered, writers = self._open_generation()
        self._sync(writers)
        self._release(self._close_generation(covered))

    def _open_generation(self) -> tuple[int, list["SpoolWriter"]]:
        """Starts a flush: lines appended from now on wait for the next one."""
        with self._lock:
            covered = self._generation
            self._generation += 1
            return covered, list(self._writers)

    def _sync(self, writers: list["SpoolWriter"]) -> None:
        with self._flush_lock:
            for writer in writers:
                writer.sync()

    def _close_generation(self, covered: int) -> list[tuple[int, asyncio.AbstractEventLoop, Callable[[], None]]]:
        """Marks everything up to `covered` synced; returns the waiters that may go."""
        with self._lock:
            self.failed = None
            self.flushes += 1
            self._last_flush = time.monotonic()
            self._synced = max(self._synced, covered)
            ready = [w for w in self._waiters if w[0] <= self._synced]
            self._waiters = [w for w in self._waiters if w[0] > self._synced]
            return ready

    @staticmethod
    def _release(ready: list[tuple[int, asyncio.AbstractEventLoop, Callable[[], None]]]) -> None:
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        by_loop: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        for _, loop, callback in ready:
            by_loop.setdefault(loop, []).append(callback)
        for loop, callbacks in by_loop.items():
            if loop is current:
                _call_each(callbacks)
                continue
            try:
                loop.call_soon_threadsafe(_call_each, callbacks)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                pass

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        covered, writers = self._open_generation()
        if self._sync_thread is None:
            self.start()
        assert self._sync_thread is not None
        done = loop.run_in_executor(self._sync_thread, self._sync, writers)
        done.add_done_callback(lambda result: self._flush_done(loop, covered, result))

    def _flush_done(self, loop: asyncio.AbstractEventLoop, covered: int, result: asyncio.Future[None]) -> None:
        self._scheduled.discard(loop)
        if result.cancelled():  # the loop is shutting down; stop() flushes what is left
            return
        error = result.exception()
        if error is not None:  # a disk that refuses: requests keep waiting, and the flush is tried again
            self.failed = error
            log.error("spool flush failed (%s): requests wait until the disk accepts writes again", error)
            self._schedule(loop, 0.5)
            return
        self._release(self._close_generation(covered))
        if self._waiters:  # written while this flush ran: the next one starts at once
            self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float = 0.0) -> None:
        if loop in self._scheduled:
            return
        self._scheduled.add(loop)
        delay = max(delay, self.interval - (time.monotonic() - self._last_flush))
        if delay > 0:
            loop.call_later(delay, self._start_flush, loop)
        else:
            # At once, not behind the requests this loop has queued: the disk works while the loop answers
            # them (they wait for the next flush). Queued behind them, every request of a burst waited
            # for one flush and the loop sat idle during it (measured: a quarter of the throughput).
            self._start_flush(loop)

    def covers(self, ticket: int) -> bool:
        """Whether the line with this ticket is on stable storage already."""
        return ticket <= self._synced

    def when_synced(self, ticket: int, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Calls `callback` on `loop` once the line with this ticket is on stable storage (at once if it is).
        The HTTP protocol's collect lane answers this way: no future, no task (gateway/http_protocol.py)."""
        if ticket > self._synced:
            with self._lock:
                waiting = ticket > self._synced
                if waiting:
                    self._waiters.append((ticket, loop, callback))
            if waiting:
                self._schedule(loop)
                return
        callback()

    async def wait(self, ticket: int) -> None:
        """Returns once the line with this ticket is on stable storage (at once for ticket 0)."""
        if ticket <= self._synced:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.when_synced(ticket, loop, lambda: future.done() or future.set_result(None))
        await future

    def wait_sync(self, ticket: int, timeout: float = 30.0) -> bool:
        """The same for threads that are not on an event loop: flushes itself if nobody did."""
        deadline = time.monotonic() + timeout
        while ticket > self._synced:
            if time.monotonic() > deadline:
                return False
            try:
                self.flush()
            except OSError as exc:
                self.failed = exc
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return True


def _call_each(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - one waiter's failure (a closed connection) must not hold back the rest
            log.exception("a commit waiter failed")


def blank_matching_lines(folder: Path, matches: Callable[[dict[str, Any]], bool], durable: bool = True,
                         below: int | None = None) -> int:
    """Blanks every line whose record `matches` in the segments of `folder` (those numbered below `below`: not
    the one being appended to) and returns how many. A line becomes spaces of the same length, so readers'
    offsets stay valid (they skip blank lines); each changed segment is replaced atomically."""
    blanked = 0
    for number in _segments(folder):
        if below is not None and number >= below:
            continue
        path = _segment_path(folder, number)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # a reader finished it meanwhile
        out = bytearray()
        changed = 0
        for line in data.splitlines(keepends=True):
            if line.strip() and line.endswith(b"\n"):
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    record = None
                if isinstance(record, dict) and matches(record):
                    line = b" " * (len(line) - 1) + b"\n"
                    changed += 1
            out += line
        if changed:
            if path.exists():
                replace_file(path, bytes(out), durable)
            blanked += changed
    return blanked


class SpoolWriter:
    """Appends records to the newest segment; starts a new one past SEGMENT_BYTES."""

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES, commit: GroupCommit | None = None) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.commit = commit or GroupCommit(durable=False)
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        existing = _segments(folder)
        self.disk_bytes = sum(_segment_path(folder, n).stat().st_size for n in existing)
        # Never append to a segment a reader may have half-read before a crash: start a new one.
        self._number = (existing[-1] + 1) if existing else 1
        self._fd = self._open(self._number)
        self._size = 0
        self.appended = 0
        self._synced = 0
        # durability = machine: a hit's line is acknowledged only once a group commit synced it, so it reaches
        # the file with that commit's write (one write() a flush, off the event loop): see append(defer=True).
        self._deferred = self.commit.durable
        self._pending: list[bytes] = []
        self.wakeup = threading.Event()
        self.commit.register(self)

    def _open(self, number: int) -> int:
        fd = os.open(_segment_path(self.folder, number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.commit.durable:
            fsync_dir(self.folder)  # the new segment's name must survive a crash too
        return fd

    def append(self, record: Any, defer: bool = False) -> int:
        """Writes the record (a typed record of analytics/records.py, or an outbox's delivery dict) as one
        JSON line; returns its commit ticket (for `GroupCommit.wait`).

        `defer` (a hit, whose answer waits for its ticket): with durability = machine the line stays in memory
        until the flush that syncs it writes it, one write() a flush instead of one a hit. Every other line is
        written at once (with the deferred lines before it, in order): a record nobody waits for right away,
        such as a delivery's outcome, must survive a killed process, as it did before."""
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)  # ~10x faster than json on every hit
        deferred = defer and self._deferred
        with self._lock:
            if self._size + len(line) > self.segment_bytes and self._size:
                self._rotate()
            if deferred:
                self._pending.append(line)
            else:
                self._write_pending()  # the deferred lines before it first: the file keeps the order of appends
                os.write(self._fd, line)
            self._size += len(line)
            self.disk_bytes += len(line)
            self.appended += 1
            ticket = self.commit.appended()
        if not deferred and not self.wakeup.is_set():  # set() takes a lock and notifies: once is enough
            self.wakeup.set()
        return ticket

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, memoryview(data)[written:])
        except OSError:
            self._pending.append(data[written:])  # tried again by the next flush
            raise
        finally:
            if written and not self.wakeup.is_set():
                self.wakeup.set()  # the readers (store writer, forwarder) have lines to read

    def _rotate(self) -> None:
        """Closes the current segment (synced first: no fd is left to sync it later) and opens the next."""
        self._write_pending()
        if self.commit.durable:
            os.fdatasync(self._fd)
        os.close(self._fd)
        self._number += 1
        self._fd = self._open(self._number)
        self._size = 0

    def sync(self) -> None:
        """fdatasync of the current segment if anything was appended since the last one."""
        with self._lock:
            if self.appended == self._synced:
                return
            self._write_pending()
            count = self.appended
            fd = os.dup(self._fd)  # sync outside the lock: appends go on meanwhile
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        with self._lock:
            self._synced = max(self._synced, count)

    @property
    def current_segment(self) -> int:
        return self._number

    def erase(self, matches: Callable[[dict[str, Any]], bool]) -> int:
        """Blanks every line whose record `matches`, in every segment, and returns how many.

        The writer first moves to a new segment, so no file being appended to is replaced. A line
        becomes spaces of the same length: readers' offsets stay valid and they skip blank lines.
        Each changed segment is replaced atomically (and durably)."""
        with self._lock:
            self._rotate()
            current = self._number
        return blank_matching_lines(self.folder, matches, self.commit.durable, below=current)

    def segment_removed(self, size: int) -> None:
        with self._lock:
            self.disk_bytes -= size

    def close(self) -> None:
        with self._lock:
            self._write_pending()
            if self.commit.durable:
                os.fdatasync(self._fd)
            os.close(self._fd)
        self.commit.unregister(self)


@dataclass
class Position:
    segment: int
    offset: int


class SpoolReader:
    """Reads what a spool holds past this reader's checkpoint, in order."""

    def __init__(self, folder: Path, name: str, durable: bool = True) -> None:
        self.folder = folder
        self.checkpoint_path = folder / f"{name}.checkpoint"
        self.durable = durable
        folder.mkdir(parents=True, exist_ok=True)
        self.position = self._load()

    def _load(self) -> Position:
        try:
            data = json.loads(self.checkpoint_path.read_text())
            return Position(int(data["segment"]), int(data["offset"]))
        except (FileNotFoundError, ValueError, KeyError):
            segments = _segments(self.folder)
            return Position(segments[0] if segments else 1, 0)

    def read(self, limit: int, start: Position | None = None) -> tuple[list[dict[str, Any]], Position]:
        """Up to `limit` complete records past `start` (default: the checkpoint) and the position after them.
        A reader with several batches in flight reads ahead of its checkpoint with `start`."""
        lines, pos = self.read_lines(limit, start)
        records = []
        for line in lines:
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # cannot happen for lines written whole; never block the spool on one
        return records, pos

    def read_lines(self, limit: int, start: Position | None = None) -> tuple[list[bytes], Position]:
        """Like `read`, but the raw JSON lines: the batch writer hands them to ClickHouse unparsed.
        Blank lines (erased records) are passed over."""
        lines: list[bytes] = []
        pos = Position((start or self.position).segment, (start or self.position).offset)
        for number in [n for n in _segments(self.folder) if n >= pos.segment]:
            if number != pos.segment:
                pos = Position(number, 0)
            try:
                f = open(_segment_path(self.folder, number), "rb")
            except FileNotFoundError:
                continue
            with f:
                f.seek(pos.offset)
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # a line still being written: read it next time
                    pos.offset += len(line)
                    if line[0] == 0x20:  # blanked by an erasure (a record line starts with '{')
                        continue
                    lines.append(line)
                    if len(lines) >= limit:
                        return lines, pos
        return lines, pos

    def pending(self, kinds: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every record past the checkpoint, without moving it (start-up scans, not the hot path). With `kinds`,
        only records of those kinds, and only their lines are parsed (a backlog is mostly page views)."""
        marks = None if kinds is None else [kind_mark(k) for k in kinds]
        pos = self.position
        while True:
            lines, after = self.read_lines(10_000, pos)
            if after == pos:
                return
            pos = after
            for line in lines:
                if marks is not None and not any(m in line for m in marks):
                    continue
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue

    def commit(self, pos: Position) -> None:
        """Records that everything before `pos` is safely elsewhere."""
        replace_file(self.checkpoint_path, json.dumps({"segment": pos.segment, "offset": pos.offset}).encode(),
                     self.durable)
        self.position = pos

    def backlog_bytes(self) -> int:
        total = 0
        for number in _segments(self.folder):
            if number >= self.position.segment:
                try:
                    size = _segment_path(self.folder, number).stat().st_size
                except FileNotFoundError:
                    continue
                total += size - (self.position.offset if number == self.position.segment else 0)
        return total


def remove_finished_segments(folder: Path, readers: list[SpoolReader], writer: SpoolWriter) -> None:
    """Deletes the segments that every reader has passed and the writer has left."""
    oldest = min(r.position.segment for r in readers)
    for number in _segments(folder):
        if number < oldest and number < writer.current_segment:
            path = _segment_path(folder, number)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            writer.segment_removed(size)
