"""The `ledger consume` figures (issue 20), against `ledger apply` of the same commands in the same run.

- bus_throughput: the ingest mix (bench.stream) published to a stream of its own beforehand,
  then one `ledger consume` process applies it all: commands/s from its start to its last
  batch (its wall time less the ``--until-idle`` wait that ends it).  Baseline: `ledger apply`
  of the same commands, a process on a fresh store of the same kind.  Target: at least 0.7 of it.
  Also reported (``apply_with_ids``): against `ledger apply` of the same commands each with the
  command_id consume gives it (``nats:<stream>:<seq>``), whose T2 record is the main extra cost.
- bus_latency_p50, bus_latency_p99: deposits offered at 1,000 commands/s (open loop: each
  published when it is due) to a running `ledger consume`: milliseconds from when each was
  due to when its result arrived on the results subject.

The server is the machine's NATS server (LEDGER_NATS_URL, default nats://127.0.0.1:4222);
the producer runs in this process on the same two cores.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any, Callable

from bench.common import apply_baseline, drop, fresh_url, ledger
from bench.memory import PeakSampler
from bench.step import percentile
from bench.stream import mixed_commands

URL = os.environ.get("LEDGER_NATS_URL", "nats://127.0.0.1:4222")
LATENCY_RATE = 1000  # commands/s offered
IDLE = 1.0  # float-ok: seconds of --until-idle that end the throughput run
RATIO_TARGET = 0.7  # consume against ledger apply


class Names:
    """A stream, its subjects and a durable no other run uses (the stream deleted after)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.stream, self.prefix = f"BENCH_{tag}", f"bench.{tag}"
        self.commands, self.results = f"{self.prefix}.commands.all", f"{self.prefix}.results"

    def consume(self, url: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "entrypoints", "--db", url, "consume", "--stream", self.stream,
                "--subject", f"{self.prefix}.commands.>", "--results-subject", self.results, "--nats", URL, "--json",
                *extra]


async def connected() -> Any:
    import nats

    return await nats.connect(URL, connect_timeout=3, allow_reconnect=False)


async def publish_all(names: Names, bodies: list[bytes]) -> None:
    from nats.js.api import RetentionPolicy, StreamConfig

    nc = await connected()
    try:
        js = nc.jetstream(timeout=10)
        await js.add_stream(StreamConfig(name=names.stream, subjects=[f"{names.prefix}.commands.>"],
                                         retention=RetentionPolicy.WORK_QUEUE))
        for start in range(0, len(bodies), 1000):
            futures = [await js.publish_async(names.commands, body, wait_stall=10) for body in bodies[start:start + 1000]]
            await asyncio.wait_for(asyncio.gather(*futures), 60)
    finally:
        await nc.close()


async def delete_stream(names: Names) -> None:
    nc = await connected()
    try:
        await nc.jetstream(timeout=10).delete_stream(names.stream)
    except Exception:  # noqa: BLE001 - never made
        pass
    finally:
        await nc.close()


async def offered(names: Names, bodies: list[bytes], rate: float) -> list[float]:  # float-ok: seconds, per second
    """Publish ``bodies`` (each with its command_id ``lat-<n>``) each when it is due at ``rate``
    per second; the seconds from due to its result, in order of arrival.  First a probe (the
    first body under the id ``lat-probe``) is answered, untimed: the consumer is then pulling
    (its durable may be older than the process, so its existing proves nothing)."""
    nc = await connected()
    due: dict[str, float] = {}  # float-ok: perf_counter readings
    latencies: list[float] = []  # float-ok: seconds
    done, probed = asyncio.Event(), asyncio.Event()

    async def result(msg: Any) -> None:
        answer = json.loads(msg.data)
        if not answer["ok"]:
            raise RuntimeError(f"consume rejected a deposit of the latency run: {answer}")
        if answer["command_id"] == "lat-probe":
            probed.set()
            return
        latencies.append(time.perf_counter() - due[answer["command_id"]])
        if len(latencies) == len(bodies):
            done.set()

    try:
        await nc.subscribe(names.results, cb=result)
        await nc.flush(timeout=5)
        await nc.publish(names.commands, json.dumps({**json.loads(bodies[0]), "command_id": "lat-probe"}).encode())
        await asyncio.wait_for(probed.wait(), 60)
        started = time.perf_counter()
        for n, body in enumerate(bodies):
            at = started + n / rate
            pause = at - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            due[f"lat-{n}"] = at
            await nc.publish(names.commands, body)  # JetStream stores it; no ack awaited (the producer's own pace)
        await asyncio.wait_for(done.wait(), 120)
    finally:
        await nc.close()
    return latencies


def wait_ready(names: Names, proc: subprocess.Popen, log: str) -> None:
    """The consumer's durable exists: it is fetching."""
    async def exists() -> bool:
        nc = await connected()
        try:
            await nc.jetstream(timeout=5).consumer_info(names.stream, "ledger")
            return True
        except Exception:  # noqa: BLE001 - not yet
            return False
        finally:
            await nc.close()

    deadline = time.monotonic() + 60
    while not asyncio.run(exists()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ledger consume did not start (see {log})")
        time.sleep(0.1)


def measure(store: str, commands: int, accounts: int, latency_commands: int, workdir: str,
            phase: Callable[..., Any], figure: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    cmds = list(mixed_commands(commands, accounts, seed=13))
    path = os.path.join(workdir, f"{store}-bus-commands.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(c) + "\n" for c in cmds)
    with_ids = os.path.join(workdir, f"{store}-bus-commands-ids.jsonl")
    names = Names()
    with open(with_ids, "w", encoding="utf-8") as handle:  # the ids consume gives them: nats:<stream>:<seq>
        handle.writelines(json.dumps({**c, "command_id": f"nats:{names.stream}:{n}"}) + "\n" for n, c in enumerate(cmds, 1))
    applied = fresh_url(store)
    try:
        with phase(f"bus baseline: ledger apply of the same {len(cmds):,} commands, each with its nats: id", "baseline"):
            started = time.perf_counter()
            ledger("--db", applied, "apply", with_ids)
            ids_seconds = time.perf_counter() - started
    finally:
        drop(applied)
    apply_seconds = apply_baseline(store, path, len(cmds), phase, "bus")
    url = fresh_url(store)
    try:
        with phase(f"bus: {len(cmds):,} commands published to {names.stream}", "setup"):
            asyncio.run(publish_all(names, [json.dumps(c).encode() for c in cmds]))
        log = os.path.join(workdir, f"{store}-consume.log")
        with phase(f"bus: ledger consume of {len(cmds):,} commands", "timed"), open(log, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(names.consume(url, "--until-idle", str(IDLE)), stdout=subprocess.PIPE, stderr=err)
            sampler = PeakSampler(proc.pid)
            summary_text, _ = proc.communicate(timeout=900)
            seconds = time.perf_counter() - started - IDLE
            rss = sampler.stop()
        summary = json.loads(summary_text)
        if proc.returncode or summary["messages"] != len(cmds) or summary["rejected"]:
            raise RuntimeError(f"ledger consume: exit {proc.returncode}, {summary} for {len(cmds)} commands (see {log})")
        deposits = [json.dumps({"type": "deposit", "account": f"u{n % accounts:05d}", "currency": "USDT", "amount": "1",
                                "command_id": f"lat-{n}"}).encode() for n in range(latency_commands)]
        proc = subprocess.Popen(names.consume(url), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            wait_ready(names, proc, log)
            with phase(f"bus: {latency_commands:,} deposits offered at {LATENCY_RATE:,}/s", "timed"):
                latencies = asyncio.run(offered(names, deposits, LATENCY_RATE))
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    finally:
        asyncio.run(delete_stream(names))
        drop(url)
    base = {"method": "ledger apply of the same commands (a fresh store)", "seconds": apply_seconds}
    ratio = apply_seconds / seconds
    figures = [figure("bus_throughput", store, len(cmds) / seconds, "commands/s", len(cmds), "commands", seconds, base,
                      rss, ratio_target=RATIO_TARGET, ratio_met=ratio >= RATIO_TARGET, batch=1000, accounts=accounts,
                      # T2's cost: every message is applied under a command_id, so its record is written too
                      apply_with_ids={"seconds": ids_seconds, "ratio": ids_seconds / seconds})]
    times = sorted(latencies)
    for p in (50, 99):
        figures.append(figure(f"bus_latency_p{p}", store, percentile(times, p) * 1000, "ms", len(times), "commands",
                              sum(times), {"method": "ledger apply of the same commands",
                                           "seconds": apply_seconds / len(cmds) * len(times)},
                              rss, offered_rate=LATENCY_RATE))
    return figures
