"""The local spool: every acknowledged record is appended here before the 2xx.

A spool is a folder of numbered segment files holding one JSON record per line.
`SpoolWriter.append` hands the whole line to the kernel in one `write()`, so a
`kill -9` right after the 2xx still finds it on disk. A reader keeps its place
in a checkpoint file (segment, byte offset) that it replaces atomically once a
batch is safely elsewhere; finished segments before the checkpoint are deleted.
Several readers may follow one spool, each with its own checkpoint name.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SEGMENT_BYTES = 8 * 1024 * 1024


def _segments(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.glob("*.jsonl") if p.stem.isdigit())


def _segment_path(folder: Path, number: int) -> Path:
    return folder / f"{number:012d}.jsonl"


class SpoolWriter:
    """Appends records to the newest segment; starts a new one past SEGMENT_BYTES."""

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        existing = _segments(folder)
        # Never append to a segment a reader may have half-read before a crash: start a new one.
        self._number = (existing[-1] + 1) if existing else 1
        self._fd = self._open(self._number)
        self._size = 0
        self.appended = 0
        self.wakeup = threading.Event()

    def _open(self, number: int) -> int:
        return os.open(_segment_path(self.folder, number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)  # ~10x faster than json on every hit
        with self._lock:
            if self._size + len(line) > self.segment_bytes and self._size:
                os.close(self._fd)
                self._number += 1
                self._fd = self._open(self._number)
                self._size = 0
            os.write(self._fd, line)
            self._size += len(line)
            self.appended += 1
        self.wakeup.set()

    @property
    def current_segment(self) -> int:
        return self._number

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


@dataclass
class Position:
    segment: int
    offset: int


class SpoolReader:
    """Reads what a spool holds past this reader's checkpoint, in order."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.checkpoint_path = folder / f"{name}.checkpoint"
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
        """Like `read`, but the raw JSON lines: the batch writer hands them to ClickHouse unparsed."""
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
                    lines.append(line)
                    if len(lines) >= limit:
                        return lines, pos
        return lines, pos

    def pending(self) -> Iterator[dict[str, Any]]:
        """Every record past the checkpoint, without moving it (start-up scans, not the hot path)."""
        pos = self.position
        while True:
            records, pos = self.read(10_000, pos)
            if not records:
                return
            yield from records

    def commit(self, pos: Position) -> None:
        """Records that everything before `pos` is safely elsewhere, and drops finished segments."""
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"segment": pos.segment, "offset": pos.offset}))
        os.replace(tmp, self.checkpoint_path)
        self.position = pos

    def backlog_bytes(self) -> int:
        total = 0
        for number in _segments(self.folder):
            if number >= self.position.segment:
                size = _segment_path(self.folder, number).stat().st_size
                total += size - (self.position.offset if number == self.position.segment else 0)
        return total


def remove_finished_segments(folder: Path, readers: list[SpoolReader], writer: SpoolWriter) -> None:
    """Deletes the segments that every reader has passed and the writer has left."""
    oldest = min(r.position.segment for r in readers)
    for number in _segments(folder):
        if number < oldest and number < writer.current_segment:
            _segment_path(folder, number).unlink(missing_ok=True)
