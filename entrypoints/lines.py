"""The input of `ledger apply`: bounded lines, numbered, in batches (§12, *Streaming*).

A file is read in big chunks and its lines batched by count alone.  A pipe, a terminal or a
FIFO may be a long-lived stream whose producer writes a line and waits for the answer: its
lines are batched while input flows, and a batch goes out as soon as input pauses (no byte
for ``IDLE``) or its oldest line has waited ``MAX_WAIT`` -- a read with a deadline
(``poll``), so a command is committed and answered within 100 ms of a pause however slowly
its lines come.  A stream without a file descriptor (an in-process test runner's input) is
read like a file.

Lines come without their ``\\n``; one longer than ``MAX_LINE_BYTES`` comes cut after
``MAX_LINE_BYTES + 1`` bytes (``jsonlines.decode`` refuses it), the rest of it dropped as it
is read, never held in memory.  Blank lines count for the numbering and are not batched.
"""
from __future__ import annotations

import os
import select
import stat
import time
from typing import Any, Callable, Iterator, Optional

from ledger.service.jsonlines import MAX_LINE_BYTES

CHUNK = 64 * 1024  # bytes per read
IDLE = 0.005  # float-ok: seconds without input that end a batch (a pause)
MAX_WAIT = 0.05  # float-ok: seconds the oldest line of a batch may wait for more while input trickles

Numbered = list[tuple[int, bytes]]  # (input line number, the line), in order


class Splitter:
    """Bytes in, in chunks of any size; lines out, bounded as the module says."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.keep = limit + 1
        self.tail = b""  # the line so far, cut after ``keep`` bytes

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes."""
        parts = data.split(b"\n")
        parts[0] = self.tail + parts[0]
        self.tail = parts.pop()[:self.keep]
        if parts and max(map(len, parts)) > self.keep:
            parts = [part[:self.keep] for part in parts]
        return parts

    def end(self) -> list[bytes]:
        """At the end of input: the last line, if it had no line ending."""
        tail, self.tail = self.tail, b""
        return [tail] if tail else []


def blank(line: bytes) -> bool:
    """A line of nothing but ASCII whitespace gets no result (§12)."""
    return len(line) <= MAX_LINE_BYTES and not line.strip()


def stream_fd(stream: Any) -> Optional[int]:
    """The descriptor to wait on: a pipe's, a terminal's, a FIFO's; None for a regular file
    (it never pauses) or a stream without one."""
    try:
        fd = stream.fileno()
        return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def batches(stream: Any, size: int) -> Iterator[Numbered]:
    """The stream's non-blank lines with their line numbers, in batches of at most ``size``:
    full while input flows, and whatever has come once it pauses (see the module)."""
    fd = stream_fd(stream)
    read: Callable[[], bytes]
    if fd is None:
        read = lambda: stream.read(CHUNK)  # noqa: E731
        paused: Callable[[float], bool] = lambda oldest: False  # noqa: E731
    else:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        read = lambda: os.read(fd, CHUNK)  # noqa: E731

        def paused(oldest: float) -> bool:  # float-ok: a monotonic clock reading
            wait = min(IDLE, oldest + MAX_WAIT - time.monotonic())
            return not poller.poll(max(0, wait) * 1000)
    splitter, batch, number, oldest = Splitter(), [], 0, 0.0  # float-ok: a clock reading
    while True:
        if batch and paused(oldest):
            yield batch
            batch = []
            continue
        data = read()
        for line in splitter.feed(data) if data else splitter.end():
            number += 1
            if blank(line):
                continue
            if not batch:
                oldest = time.monotonic()
            batch.append((number, line))
            if len(batch) >= size:
                yield batch
                batch = []
        if not data:
            break
    if batch:
        yield batch
