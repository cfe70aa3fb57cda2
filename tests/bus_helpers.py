"""The consume tests' side of the bus (SPEC §18): a producer that publishes commands and
listens for results on the machine's real NATS server (tests/natsutil.py says when it skips),
and `ledger consume` run as a process of its own."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from tests import natsutil

ROOT = Path(__file__).resolve().parent.parent


class Bus:
    """A connection on an event loop of its own (a thread), used from synchronous tests."""

    def __init__(self) -> None:
        import nats

        natsutil.require_server()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.call(nats.connect(natsutil.URL, connect_timeout=3, allow_reconnect=False))
        self.js = self.nc.jetstream(timeout=10)
        self.got: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        self.streams: list[str] = []

    def call(self, coro: Any, timeout: float = 30) -> Any:  # float-ok: seconds
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def listen(self, subject: str) -> None:
        """Keep every message published to ``subject`` (results), decoded."""
        with self.lock:
            self.got.setdefault(subject, [])

        async def keep(msg: Any) -> None:
            with self.lock:
                self.got[subject].append(json.loads(msg.data))

        self.call(self.nc.subscribe(subject, cb=keep))
        self.call(self.nc.flush(timeout=5))

    def results(self, subject: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.got[subject])

    def wait_results(self, subject: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:  # float-ok
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.results(subject)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{len(self.results(subject))} results on {subject}, waited for {count}")

    def stream(self, kind: str, create: bool = True) -> tuple[str, str]:
        """A stream name and subject prefix of this test's own (deleted at close); the stream
        made now, as `ledger consume` makes it, unless not ``create``."""
        from nats.js.api import RetentionPolicy, StreamConfig

        stream, prefix = natsutil.names(kind)
        self.streams.append(stream)
        if create:
            self.call(self.js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.commands.>"],
                                                      retention=RetentionPolicy.WORK_QUEUE)))
        return stream, prefix

    def wait_stream(self, stream: str, timeout: float = 30) -> Any:  # float-ok: seconds
        """The stream's info once it exists (a consumer that started makes it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.call(self.js.stream_info(stream))
            except Exception:  # noqa: BLE001 - not yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def publish(self, subject: str, bodies: list[Any], headers: Optional[dict[str, str]] = None) -> None:
        """Each body (a command as an object, or raw bytes) to the stream, acked by JetStream."""
        async def send() -> None:
            futures = []
            for body in bodies:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                futures.append(await self.js.publish_async(subject, data, headers=headers, wait_stall=10))
            await asyncio.wait_for(asyncio.gather(*futures), 30)

        self.call(send(), 60)

    def consumer_info(self, stream: str, durable: str) -> Any:
        return self.call(self.js.consumer_info(stream, durable))

    def close(self) -> None:
        for stream in self.streams:
            try:
                self.call(self.js.delete_stream(stream), 10)
            except Exception:  # noqa: BLE001 - never made
                pass
        self.call(self.nc.close(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def consume_args(db_url: str, stream: str, prefix: str, *extra: str, durable: str = "ledger") -> list[str]:
    return [sys.executable, "-m", "entrypoints", "--db", db_url, "consume", "--stream", stream,
            "--subject", f"{prefix}.commands.>", "--durable", durable, "--results-subject", f"{prefix}.results",
            "--json", *extra]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "LEDGER_NATS_URL": natsutil.URL}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, dict[str, Any], str]:  # float-ok
    """The exit code, the --json summary and standard error of a consume run."""
    out, err = proc.communicate(timeout=timeout)
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return proc.returncode, summary, err


def run_consume(args: list[str], timeout: float = 120) -> tuple[int, dict[str, Any], str]:  # float-ok
    return finished(start(args), timeout)
