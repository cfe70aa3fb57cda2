"""The streaming figure (§12 *Streaming*): `ledger apply -` kept open, one command every 10 ms,
each timed from the write of its line to the read of its result line.

Baseline: the raw database committing one row per command, the least a command answered on
its own can cost (``RawDB.commit_each``), timed the same way, in the same run.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from typing import Any

from bench.memory import PeakSampler
from bench.step import percentile

INTERVAL = 0.010  # float-ok: seconds between commands


def commands(count: int) -> list[bytes]:
    """An account, then deposits into it: every one is accepted."""
    first = {"type": "open_account", "account": "streamer", "command_id": "s-0"}
    rest = [{"type": "deposit", "account": "streamer", "currency": "USDT", "amount": "1", "command_id": f"s-{n}"}
            for n in range(1, count)]
    return [json.dumps(c).encode() + b"\n" for c in [first, *rest]]


def latencies(url: str, count: int, cwd: str) -> tuple[list[float], float]:  # float-ok: seconds, MB
    """Seconds from each line's write to its result, ascending (every result must be ok), and
    the process's peak RSS."""
    proc = subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "apply", "-"], cwd=cwd,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sampler = PeakSampler(proc.pid)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    pending, took, sent = b"", [], []

    def read(wait: float) -> None:  # float-ok: seconds
        nonlocal pending
        if not selector.select(wait):
            return
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise RuntimeError("streaming apply ended early")
        now = time.perf_counter()
        *lines, pending = (pending + chunk).split(b"\n")
        for result in map(json.loads, lines):
            if not result["ok"]:
                raise RuntimeError(f"streaming apply refused a command: {result}")
            took.append(now - sent[len(took)])

    try:
        warm = commands(count + 1)  # the first, answered before the clock starts: the process is up
        sent.append(time.perf_counter())
        proc.stdin.write(warm[0])
        proc.stdin.flush()
        deadline = time.perf_counter() + 60
        while not took and time.perf_counter() < deadline:
            read(1)
        took.clear()
        sent.clear()
        for line in warm[1:]:
            sent.append(time.perf_counter())
            proc.stdin.write(line)
            proc.stdin.flush()
            until = sent[-1] + INTERVAL
            while (left := until - time.perf_counter()) > 0:
                read(left)
        deadline = time.perf_counter() + 30
        while len(took) < count and time.perf_counter() < deadline:
            read(1)
        if len(took) < count:
            raise RuntimeError(f"streaming apply: {count - len(took)} results missing after 30 s")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    return sorted(took), sampler.stop()


def measure(url: str, raw: Any, count: int, cwd: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figure's timings and its baseline's."""
    took, rss = latencies(url, count, cwd)
    base = raw.commit_each(count)
    return ({"p50": percentile(took, 50), "p99": percentile(took, 99), "count": len(took), "rss_mb": rss},
            {"method": "one row inserted and committed per command", "seconds": percentile(base, 99),
             "p50_seconds": percentile(base, 50), "commits": count})
