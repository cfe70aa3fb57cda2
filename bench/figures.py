"""The figures of one store: set-ups (untimed), timed steps in fresh processes, baselines.

Three stores per database: the ingest store (an empty store fed by `ledger apply`), the big
store (the interest/sweep accounts, one account with many events, then BTC falls) and a
small store for the scale figure.  Each is dropped when its figures are taken.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.baseline import RawDB, combine
from bench.common import breach_every_100th, busy_account, crash, drop, fresh_url, indebted_accounts, open_app
from bench.memory import PeakSampler
from bench.report import Phases
from bench.step import instants, percentile
from ledger.domain import ids


ROOT = Path(__file__).resolve().parent.parent
ASOF_ACCOUNT = "asof"

# (figure, store or None for both) -> (op, target in the figure's unit)
TARGETS: dict[tuple[str, str | None], tuple[str, float]] = {
    ("ingest", "postgres"): (">=", 5_000),
    ("ingest", "sqlite"): (">=", 10_000),
    ("interest", None): (">=", 5_000),
    ("sweep", None): ("<=", 10),
    ("projections", None): (">=", 10_000),
    ("asof_p99", None): ("<=", 50),
    ("verify", None): (">=", 20_000),
    ("worker_memory", None): ("<=", 500),
    ("scale", None): ("<=", 1.3),
    ("startup_version", None): ("<=", 0.25),
    ("startup_show", None): ("<=", 0.5),
    ("serve_throughput", "postgres"): (">=", 5_000),  # and >= 0.5 x ledger apply (ratio_met), both stores
    ("serve_latency_p50", None): ("<=", 5),
    ("serve_latency_p99", None): ("<=", 25),
}
FIGURES = ["ingest", "interest", "sweep", "worker_memory", "scale", "projections", "asof_p50", "asof_p99", "verify",
           "startup_version", "startup_show", "serve_throughput", "serve_latency_p50", "serve_latency_p99"]


@dataclass(frozen=True)
class Sizes:
    ingest_commands: int
    ingest_accounts: int
    accounts: int  # the big store: interest, sweep, worker memory, projections, verify
    scale_accounts: int  # the small store the big one is compared with
    asof_events: int
    asof_queries: int
    startup_runs: int  # fresh processes per start-up command
    serve_commands: int  # the serve figures (bench.serve): the mix sent by 64 clients
    serve_accounts: int
    serve_latency_commands: int  # offered at 1,000/s


FULL = Sizes(200_000, 10_000, 100_000, 10_000, 10_000, 200, 21, 60_000, 2_000, 10_000)
QUICK = Sizes(10_000, 500, 2_000, 500, 1_000, 50, 3, 5_000, 500, 1_000)


def figure(name: str, store: str, value: float, unit: str, count: int, count_unit: str, seconds: float,
           baseline: dict[str, Any], rss_mb: float, **detail: Any) -> dict[str, Any]:
    rate, baseline_rate = count / seconds, count / baseline["seconds"]
    op, target = TARGETS.get((name, store)) or TARGETS.get((name, None)) or (None, None)
    met = None if target is None else value >= target if op == ">=" else value <= target
    return {"figure": name, "store": store, "value": value, "unit": unit, "count": count, "count_unit": count_unit,
            "seconds": seconds, "rate": rate, "rate_unit": f"{count_unit}/s", "baseline": {**baseline, "rate": baseline_rate},
            "ratio": rate / baseline_rate, "rss_mb": round(rss_mb, 1),
            "target": {"op": op, "value": target} if target is not None else None, "met": met, **detail}


def child(argv: list[str], stdout: str) -> tuple[float, float]:
    """Run a command in a fresh process with its standard output to a file: wall seconds and
    the peak RSS of the process with its children (sampled).  A non-zero exit is an error."""
    with open(stdout, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, cwd=ROOT)
        sampler = PeakSampler(proc.pid)
        try:
            code = proc.wait()
        except BaseException:  # interrupted: the child goes too, before its store is dropped
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - started
        peak = sampler.stop()
    if code:
        raise RuntimeError(f"{shlex.join(argv[1:])} exited with {code} (its output: {stdout})")
    return seconds, peak


class StoreRun:
    def __init__(self, store: str, sizes: Sizes, workdir: str, commands_file: str, phases: Phases) -> None:
        self.store, self.sizes, self.workdir, self.commands_file = store, sizes, workdir, commands_file
        self.phases = phases
        self.figures: list[dict[str, Any]] = []

    def phase(self, label: str, kind: str):  # type: ignore[no-untyped-def]
        return self.phases.phase(self.store, label, kind)

    def steps(self, url: str, *names: str, **options: Any) -> dict[str, dict[str, Any]]:
        """Run bench.step in a fresh process: each step's output.  A step's rss_mb is its
        process's own peak so far, or the process's peak with its children if that is more
        (then over the whole process, not just this step)."""
        out = os.path.join(self.workdir, f"{self.store}-{'-'.join(names)}.jsonl")
        argv = [sys.executable, "-m", "bench.step", "--url", url, *(f"--{k}={v}" for k, v in options.items()), *names]
        _, tree = child(argv, out)
        with open(out, encoding="utf-8") as handle:
            return {line["step"]: {**line, "rss_mb": max(line["rss_mb"], tree)} for line in map(json.loads, handle)}

    def measure(self) -> list[dict[str, Any]]:
        from bench import serve

        self.ingest()
        self.figures += serve.measure(self.store, self.sizes.serve_commands, self.sizes.serve_accounts,
                                      self.sizes.serve_latency_commands, self.workdir, self.phase, figure)
        small = self.scale_store()
        self.big_store(small)
        order = {name: i for i, name in enumerate(FIGURES)}
        return sorted(self.figures, key=lambda f: order[f["figure"]])

    # --- ingest ---------------------------------------------------------------------------
    def ingest(self) -> None:
        n, url = self.sizes.ingest_commands, fresh_url(self.store)
        try:
            with self.phase("ingest: an empty store", "setup"):
                app = open_app(url)  # creates the tables: not part of what is timed
                raw = RawDB.of(app, url)
                app.close()
            out = os.path.join(self.workdir, f"{self.store}-apply.jsonl")
            with self.phase(f"ingest: ledger apply of {n:,} commands", "timed"):
                seconds, rss = child([sys.executable, "-m", "entrypoints", "--db", url, "apply", self.commands_file], out)
            with open(out, encoding="utf-8") as handle:
                answers = [json.loads(line) for line in handle]
            rejected = [a for a in answers if not a["ok"]]
            if len(answers) != n or rejected:
                raise RuntimeError(f"ledger apply: {len(answers)} results for {n} commands, {len(rejected)} rejected: {rejected[:3]}")
            try:
                with self.phase("ingest: baseline", "baseline"):
                    base = raw.write(0, raw.head())
            finally:
                raw.close()
            self.figures.append(figure("ingest", self.store, n / seconds, "commands/s", n, "commands", seconds, base, rss,
                                       accounts=self.sizes.ingest_accounts))
        finally:
            drop(url)

    # --- the small store: interest at a tenth of the size, for the scale figure --------------
    def scale_store(self) -> dict[str, Any]:
        n, url = self.sizes.scale_accounts, fresh_url(self.store)
        try:
            with self.phase(f"scale: {n:,} indebted accounts", "setup") as progress:
                app = open_app(url)
                indebted_accounts(app, n, progress=progress)
                due = [ids.account(a) for a in sorted(app.find(ids.INTEREST_DUE).accounts)]
                raw = RawDB.of(app, url)
                app.close()
            try:
                before, reads = raw.head(), raw.read_states(due)  # as the run will find them
                with self.phase(f"scale: interest run over {n:,} accounts", "timed"):
                    run = self.steps(url, "interest")["interest"]
                with self.phase("scale: baseline", "baseline"):
                    base = combine(reads, raw.write(before, run["head"]))
            finally:
                raw.close()
            return {**run, "baseline": base}
        finally:
            drop(url)

    # --- the big store ----------------------------------------------------------------------
    def big_store(self, small: dict[str, Any]) -> None:
        from workers.sweep import candidates

        n, events, url = self.sizes.accounts, self.sizes.asof_events, fresh_url(self.store)
        try:
            with self.phase(f"{n:,} indebted accounts (1 % to breach), one with {events:,} events", "setup") as progress:
                app = open_app(url)
                indebted_accounts(app, n, breach_every_100th, progress)
                busy_account(app, ASOF_ACCOUNT, events)
                crash(app)
                due = [ids.account(a) for a in sorted(app.find(ids.INTEREST_DUE).accounts)]
                swept = [ids.account(a) for a in candidates(app)]
                shared = [ids.PLATFORM] + [ids.pool(c) for c in sorted(app.platform().currencies)]  # read by as-of
                raw = RawDB.of(app, url)
                app.close()
            try:
                self.worker(url, raw, due, swept, small)
                self.reads(url, raw, shared)
                self.startup(url)
            finally:
                raw.close()
        finally:
            drop(url)

    def worker(self, url: str, raw: RawDB, due: list[str], swept: list[str], small: dict[str, Any]) -> None:
        store, n = self.store, self.sizes.accounts
        before, interest_reads = raw.head(), raw.read_states(due)  # as interest will find them
        with self.phase(f"interest run, then the sweep, over {n:,} accounts (one worker process)", "timed"):
            out = self.steps(url, "interest", "sweep")
        interest, sweep = out["interest"], out["sweep"]
        peak, expected = max(interest["rss_mb"], sweep["rss_mb"]), -(-n // 100)
        if sweep["liquidated"] != expected:
            raise RuntimeError(f"the sweep liquidated {sweep['liquidated']} accounts, not {expected}")
        with self.phase("interest and sweep: baselines", "baseline"):
            interest_base = combine(interest_reads, raw.write(before, interest["head"]))
            sweep_base = combine(raw.read_states(swept), raw.write(interest["head"], sweep["head"]))
        self.figures += [
            figure("interest", store, interest["count"] / interest["seconds"], "accounts/s", interest["count"], "accounts",
                   interest["seconds"], interest_base, interest["rss_mb"]),
            figure("sweep", store, sweep["seconds"], "s", sweep["count"], "accounts", sweep["seconds"], sweep_base,
                   sweep["rss_mb"], liquidated=sweep["liquidated"], note="RSS: the worker process ran interest first"),
            figure("worker_memory", store, peak, "MB", interest["count"] + sweep["count"], "accounts",
                   interest["seconds"] + sweep["seconds"], combine(interest_base, sweep_base), peak,
                   note="one fresh process: the interest run, then the sweep"),
        ]
        per_account = (interest["seconds"] / interest["count"]) / (small["seconds"] / small["count"])
        baseline_growth = (interest_base["seconds"] / interest["count"]) / (small["baseline"]["seconds"] / small["count"])
        self.figures.append(figure(
            "scale", store, per_account, "x", small["count"], "accounts", small["seconds"], small["baseline"], small["rss_mb"],
            note=f"interest seconds per account at {interest['count']:,} over at {small['count']:,}; rate, baseline and RSS "
                 "are the small run's", large_seconds=interest["seconds"], baseline_growth=baseline_growth))

    def reads(self, url: str, raw: RawDB, shared: list[str]) -> None:
        store, sizes = self.store, self.sizes
        head = raw.head()
        with self.phase(f"projections: catch-up from zero over {head:,} events", "timed"):
            proj = self.steps(url, "projections")["projections"]
        with self.phase("projections: baseline", "baseline"):
            proj_base = raw.read_log_and_insert(head)
        with self.phase(f"audit verify over {head:,} events (seal and catch-up first, untimed)", "timed"):
            verify = self.steps(url, "verify")["verify"]
        with self.phase("audit verify: baseline", "baseline"):
            verify_base = raw.read_log(head)
        with self.phase(f"as-of: {sizes.asof_queries} queries on an account with {sizes.asof_events:,} events", "timed"):
            asof = self.steps(url, "asof", account=ASOF_ACCOUNT, events=sizes.asof_events, queries=sizes.asof_queries)["asof"]
        with self.phase("as-of: baseline", "baseline"):
            reads = [combine(raw.read_at(ids.account(ASOF_ACCOUNT), int(offset) + 1), raw.read_keys(shared))
                     for offset in instants(sizes.asof_events, sizes.asof_queries)]  # version v is at START + v - 1 s
            times = sorted(r["seconds"] for r in reads)
            rows = sum(p["rows_read"] for r in reads for p in r["parts"]) / len(reads)
        self.figures += [
            figure("projections", store, proj["count"] / proj["seconds"], "events/s", proj["count"], "events",
                   proj["seconds"], proj_base, proj["rss_mb"]),
            figure("verify", store, verify["count"] / verify["seconds"], "events/s", verify["count"], "events",
                   verify["seconds"], verify_base, verify["rss_mb"]),
        ]
        for p, seconds in ((50, asof["seconds"]), (99, asof["p99"])):
            base = {"method": "select", "rows_read_per_query": rows, "seconds": percentile(times, p), "queries": len(times)}
            self.figures.append(figure(f"asof_p{p}", store, seconds * 1000, "ms", 1, "queries", seconds, base, asof["rss_mb"],
                                       queries=asof["count"], account_events=sizes.asof_events))

    def startup(self, url: str) -> None:
        """`ledger --version` and `ledger account show` (an indebted account of the big store)
        as fresh processes, against `python -c pass` in the same run."""
        from bench.startup import ledger_argv, medians, peak_mb

        ledger, runs = ledger_argv(), self.sizes.startup_runs
        args = {"version": ["--version"], "show": ["--db", url, "account", "show", "acct-000000"]}
        with self.phase(f"start-up: {runs} fresh processes of each command", "timed"):
            took = medians({"pass": [sys.executable, "-c", "pass"], **{k: [*ledger, *a] for k, a in args.items()}}, runs)
        base = {"method": "python -c pass", "seconds": took["pass"], "runs": runs}
        for name, a in args.items():
            shown = " ".join([*ledger, *a]).replace(url, "URL")
            self.figures.append(figure(f"startup_{name}", self.store, took[name], "s", 1, "starts", took[name], base,
                                       peak_mb(a), runs=runs, command=shown))
