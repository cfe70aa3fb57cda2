"""The `ledger serve` figures (issue 16), against `ledger apply` of the same commands in the same run.

- serve_throughput: 64 concurrent keep-alive clients, one command per request, every
  command of the ingest mix (bench.stream) over its own families of accounts (so no client
  waits on another's account, and every command is accepted): commands/s.  Baseline:
  `ledger apply` of the same commands on a fresh store of the same kind.
- serve_throughput_2p (PostgreSQL only): the same with `ledger serve --processes 2` (two server
  processes on the port, each with its writer, taking turns) on another fresh store.
- serve_latency_p50, serve_latency_p99: deposits offered at 1,000 commands/s (open loop,
  from when each was due) to the same server afterwards: milliseconds.

The server is a real `ledger serve` process; the client (bench.http) runs in this process
on the same two cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

from bench.common import apply_baseline, drop, fresh_url, ledger
from bench.http import closed_loop, open_loop, wait_healthy
from bench.memory import PeakSampler
from bench.step import percentile
from bench.stream import FAMILY, mixed_commands

CLIENTS = 64
LATENCY_RATE = 1000  # commands/s offered


def family_of(cmd: dict[str, Any]) -> int:
    name = cmd.get("account") or cmd["from_account"]
    return int(name[1:]) // FAMILY


def streams(cmds: list[dict[str, Any]], clients: int) -> list[list[bytes]]:
    """The commands split by family, families dealt to the clients in turn; each client's in
    input order (a family's commands never race each other)."""
    out: list[list[bytes]] = [[] for _ in range(clients)]
    for cmd in cmds:
        out[family_of(cmd) % clients].append(json.dumps(cmd).encode())
    return [s for s in out if s]


class Serving:
    """A `ledger serve` process on ``url`` and an ingest token; stopped with SIGTERM."""

    def __init__(self, url: str, port: int, log: str, processes: int = 1) -> None:
        self.secret = json.loads(ledger("--db", url, "token", "create", "--name", "bench", "--scope", "ingest",
                                        "--json").stdout)["secret"]
        self.port, self.log = port, open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "serve", "--port", str(port),
                                      "--processes", str(processes)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.sampler = PeakSampler(self.proc.pid)
        wait_healthy(f"http://127.0.0.1:{port}", self.proc, 60, log)

    def stop(self) -> float:  # float-ok: MB
        self.proc.terminate()
        code = self.proc.wait(60)
        self.log.close()
        peak = self.sampler.stop()
        if code:
            raise RuntimeError(f"ledger serve exited with {code}")
        return peak


def throughput(server: Serving, head: list[dict[str, Any]], rest: list[dict[str, Any]], phase: Callable[..., Any],
               label: str) -> float:  # float-ok: seconds
    """The set-up commands, then ``rest`` from CLIENTS keep-alive clients: the seconds ``rest`` took."""
    closed_loop("127.0.0.1", server.port, server.secret, [[json.dumps(c).encode()] for c in head])
    with phase(f"serve{label}: {len(rest):,} commands from {CLIENTS} keep-alive clients", "timed"):
        seconds, answers = closed_loop("127.0.0.1", server.port, server.secret, streams(rest, CLIENTS))
    bad = [a for a in answers if not a["ok"]]
    if len(answers) != len(rest) or bad:
        raise RuntimeError(f"serve{label}: {len(answers)} answers for {len(rest)} commands, rejected: {bad[:3]}")
    return float(seconds)  # float-ok: seconds


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(store: str, commands: int, accounts: int, latency_commands: int, workdir: str,
            phase: Callable[..., Any], figure: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    cmds = list(mixed_commands(commands, accounts, seed=11))
    head, rest = cmds[:3], cmds[3:]  # the platform's set-up, sent first
    path = os.path.join(workdir, f"{store}-serve-commands.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(c) + "\n" for c in cmds)
    apply_seconds = apply_baseline(store, path, len(cmds), phase, "serve", timeout=600)
    url = fresh_url(store)
    try:
        server = Serving(url, free_port(), os.path.join(workdir, f"{store}-serve.log"))
        try:
            seconds = throughput(server, head, rest, phase, "")
            deposits = [json.dumps({"type": "deposit", "account": f"u{n % accounts:05d}", "currency": "USDT",
                                    "amount": "1"}).encode() for n in range(latency_commands)]
            with phase(f"serve: {latency_commands:,} deposits offered at {LATENCY_RATE:,}/s", "timed"):
                latencies, answers = open_loop("127.0.0.1", server.port, server.secret, deposits, LATENCY_RATE, CLIENTS)
            if not all(a["ok"] for a in answers):
                raise RuntimeError("serve: a deposit of the latency run was rejected")
        finally:
            rss = server.stop()
    finally:
        drop(url)
    seconds_2p = rss_2p = None
    if store == "postgres":  # several writers are PostgreSQL's (writers' turns); SQLite's file lock has none
        url = fresh_url(store)
        try:
            server = Serving(url, free_port(), os.path.join(workdir, f"{store}-serve2.log"), processes=2)
            try:
                seconds_2p = throughput(server, head, rest, phase, " (--processes 2)")
            finally:
                rss_2p = server.stop()
        finally:
            drop(url)
    base = {"method": "ledger apply of the same commands (a fresh store)", "seconds": apply_seconds * len(rest) / len(cmds)}
    figures = []
    runs = [("serve_throughput", seconds, rss, {})]
    if seconds_2p is not None and rss_2p is not None:
        runs.append(("serve_throughput_2p", seconds_2p, rss_2p, {"processes": 2}))
    for name, took, peak, extra in runs:
        ratio = (len(rest) / took) / (len(rest) / base["seconds"])
        figures.append(figure(name, store, len(rest) / took, "commands/s", len(rest), "commands", took, base, peak,
                              clients=CLIENTS, ratio_target=0.5, ratio_met=ratio >= 0.5, accounts=accounts, **extra))
    times = sorted(latencies)
    for p in (50, 99):
        value = percentile(times, p)
        figures.append(figure(f"serve_latency_p{p}", store, value * 1000, "ms", len(times), "requests", sum(times),
                              {"method": "ledger apply of the same commands", "seconds": base["seconds"] / len(rest) * len(times)},
                              rss, offered_rate=LATENCY_RATE, connections=CLIENTS))
    return figures
