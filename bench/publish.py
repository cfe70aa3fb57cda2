"""The `ledger publish` figure (issue 20), against a plain read of the same notification log.

- publish_rate: `ledger publish --until-idle 0` (a real process, start-up included) relaying
  every event of a store of deposits to the machine's NATS server (JetStream, a fresh stream
  per run): events/s.  Baseline: the same log read in the relay's pages
  (``recorder.select_notifications``, 1,000 at a time), nothing published — so the ratio is
  what publishing, waiting for JetStream's acks and recording the position cost over
  reading alone.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any, Callable

from bench.common import apply_all, drop, fresh_url, open_app

NATS_URL = os.environ.get("LEDGER_NATS_URL", "nats://127.0.0.1:4222")
PAGE = 1000


def deposits(count: int) -> Any:
    yield {"type": "set_platform_flags", "whitelist_required": False, "at": "2026-03-01T00:00:00Z"}
    accounts = max(1, count // 100)
    for a in range(accounts):
        yield {"type": "open_account", "account": f"p{a}", "at": "2026-03-01T00:00:00Z"}
    for i in range(count):
        yield {"type": "deposit", "account": f"p{i % accounts}", "currency": "USDT", "amount": "10",
               "at": f"2026-03-01T01:{(i // 6000) % 60:02d}:{(i // 100) % 60:02d}Z"}


def read_log(url: str) -> tuple[int, float]:  # float-ok: seconds
    """Every notification, in the relay's pages: how many, and the seconds it took."""
    app = open_app(url)
    try:
        started, position, count = time.perf_counter(), 0, 0
        while notes := app.recorder.select_notifications(start=position + 1, limit=PAGE):
            count += len(notes)
            position = notes[-1].id
        return count, time.perf_counter() - started
    finally:
        app.close()


def delete_stream(stream: str) -> None:
    async def delete() -> None:
        import nats

        nc = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
        try:
            await nc.jetstream(timeout=10).delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(delete())


def measure(store: str, commands: int, workdir: str, phase: Callable[..., Any], figure: Callable[..., Any],
            child: Callable[[list[str], str], tuple[float, float]]) -> list[dict[str, Any]]:
    url, tag = fresh_url(store), uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH_{tag}", f"bench.{tag}"
    try:
        with phase(f"bus: a store of {commands:,} deposits", "setup") as progress:
            app = open_app(url)
            apply_all(app, deposits(commands), commands, progress)
            events = app.recorder.max_notification_id() or 0
            app.close()
        out = os.path.join(workdir, f"{store}-publish.json")
        with phase(f"bus: `ledger publish --until-idle 0` of {events:,} events to NATS", "timed"):
            seconds, rss = child([sys.executable, "-m", "entrypoints", "--db", url, "publish", "--stream", stream,
                                  "--events-prefix", prefix, "--until-idle", "0", "--nats", NATS_URL, "--json"], out)
        with open(out, encoding="utf-8") as handle:
            done = json.load(handle)
        if done["published"] != events or done["position"] != events:
            raise RuntimeError(f"ledger publish: {done} for {events} events")
        with phase("bus: baseline, the notification log read in pages", "baseline"):
            read, read_seconds = read_log(url)
        if read != events:
            raise RuntimeError(f"the log holds {read} notifications, not {events}")
    finally:
        drop(url)
        try:
            delete_stream(stream)
        except Exception:  # noqa: BLE001 - never made: the run failed before
            pass
    base = {"method": "the same notification log read in pages of 1,000 (recorder.select_notifications), "
                      "nothing published", "seconds": read_seconds}
    return [figure("publish_rate", store, events / seconds, "events/s", events, "events", seconds, base, rss,
                   batch=1000, note="a fresh process, start-up included; every event acked by JetStream")]
