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
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.baseline import RawDB, combine
from bench.common import (INTEREST_AT, START, apply_all, breach_every_100th, busy_account, copy_store, crash, drop, fresh_url,
                          indebted_accounts, open_app, platform_commands, top_up)
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
    ("stream_p99", None): ("<=", 50),
    ("tick_rate", None): (">=", 0.5),
    ("tick_events", None): ("<=", 3),
    ("largest_snapshot", None): ("<=", 16),
    ("startup_after_prices", None): ("<=", 1.2),
    ("asof_after_prices", None): ("<=", 1.2),
    ("history_first_page", None): ("<=", 1.2),
    ("catchup", None): ("<=", 500),
    ("catchup_rate", None): (">=", 1.0),
    ("catchup_human", None): ("<=", 1.1),
    ("verify_memory", None): ("<=", 500),
    ("verify_memory_rate", None): (">=", 50_000),
    ("serve_throughput", "postgres"): (">=", 5_000),  # and >= 0.5 x ledger apply (ratio_met), both stores
    ("serve_throughput_2p", "postgres"): (">=", 5_000),
    ("serve_latency_p50", None): ("<=", 5),
    ("serve_latency_p99", None): ("<=", 25),
    ("stress", None): ("<=", 1.5),  # x the sweep's seconds over the same accounts
    ("bus_latency_p99", None): ("<=", 50),  # bus_throughput: >= 0.7 x ledger apply (ratio_met), both stores
}
FIGURES = ["ingest", "stream_p99", "interest", "sweep", "worker_memory", "scale", "projections", "asof_p50", "asof_p99",
           "verify", "startup_version", "startup_show", "serve_throughput", "serve_throughput_2p", "serve_latency_p50", "serve_latency_p99",
           "history_first_page", "catchup", "catchup_rate", "catchup_human",
           "verify_memory", "verify_memory_rate", "tick_rate", "tick_events", "largest_snapshot",
           "startup_after_prices", "asof_after_prices", "publish_rate", "stress", "bus_throughput",
           "bus_latency_p50", "bus_latency_p99"]
GROUPS = ("ingest", "serve", "history", "workers", "ticks", "prices", "bus", "stress")  # what --only may name: the set-ups the figures come from


@dataclass(frozen=True)
class Sizes:
    ingest_commands: int
    ingest_accounts: int
    accounts: int  # the big store: interest, sweep, worker memory, projections, verify
    scale_accounts: int  # the small store the big one is compared with
    asof_events: int
    asof_queries: int
    startup_runs: int  # fresh processes per start-up command
    tick_holders: int  # unified BTC-USDT futures holders
    ticks: int  # BTC marks applied in one `ledger apply`
    price_events: int  # prices set before the start-up figures' `account show`
    history_events: int  # the busy account of history_first_page (against one of 10)
    catchup_accounts: int  # interest catch-up of this many accounts over CATCHUP_HOURS
    verify_events: int  # the big store topped up to this many events for verify_memory
    serve_commands: int  # the serve figures (bench.serve): the mix sent by 64 clients
    serve_accounts: int
    serve_latency_commands: int  # offered at 1,000/s
    stream_commands: int = 1_000  # streaming apply: one every 10 ms
    bus_commands: int = 50_000  # the bus figures (bench.bus): the mix published, then consumed
    bus_accounts: int = 2_000
    bus_latency_commands: int = 10_000  # offered at 1,000/s
    publish_commands: int = 100_000  # deposits whose events `ledger publish` relays
    stress_accounts: int = 100_000  # `ledger risk stress` against one sweep of as many accounts


FULL = Sizes(200_000, 10_000, 100_000, 10_000, 10_000, 200, 21, 10_000, 10_000, 1_000_000, 100_000, 100_000, 1_000_000,
             60_000, 2_000, 10_000)
QUICK = Sizes(10_000, 500, 2_000, 500, 1_000, 50, 3, 100, 100, 20_000, 2_000, 300, 30_000, 5_000, 500, 1_000, 200,
              3_000, 200, 500, publish_commands=2_000, stress_accounts=500)
CATCHUP_HOURS = 24


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

    def measure(self, groups: tuple[str, ...] = GROUPS) -> list[dict[str, Any]]:
        if "ingest" in groups:
            self.ingest()
        if "serve" in groups:
            from bench import serve

            self.figures += serve.measure(self.store, self.sizes.serve_commands, self.sizes.serve_accounts,
                                          self.sizes.serve_latency_commands, self.workdir, self.phase, figure)
        if "history" in groups:
            self.history()
            self.catchup()
        if "workers" in groups:
            self.big_store(self.scale_store())
        if "ticks" in groups:
            self.ticks()
        if "prices" in groups:
            self.startup_after_prices()
        if "bus" in groups:
            from bench import bus

            self.figures += bus.measure(self.store, self.sizes.bus_commands, self.sizes.bus_accounts,
                                        self.sizes.bus_latency_commands, self.workdir, self.phase, figure)
            from bench import publish

            self.figures += publish.measure(self.store, self.sizes.publish_commands, self.workdir, self.phase, figure,
                                            child)
        if "stress" in groups:
            self.stress()
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
                self.figures.append(figure("ingest", self.store, n / seconds, "commands/s", n, "commands", seconds, base,
                                           rss, accounts=self.sizes.ingest_accounts))
                self.streaming(url, raw)
            finally:
                raw.close()
        finally:
            drop(url)

    def streaming(self, url: str, raw: RawDB) -> None:
        """`ledger apply -` kept open on the ingest store, one command every 10 ms (bench.streaming)."""
        from bench import streaming

        n = self.sizes.stream_commands
        with self.phase(f"streaming apply: {n:,} commands, one every 10 ms, each answered (baseline: a commit each)",
                        "timed"):
            took, base = streaming.measure(url, raw, n, str(ROOT))
        self.figures.append(figure("stream_p99", self.store, took["p99"] * 1000, "ms", 1, "commands", took["p99"], base,
                                   took["rss_mb"], p50_ms=took["p50"] * 1000, commands=took["count"],
                                   note="write of a line to the read of its result; ratio: a raw commit's p99 over this"))

    # --- history: the first page of a busy account against one of 10 events ------------------
    def history(self) -> None:
        n, url = self.sizes.history_events, fresh_url(self.store)
        try:
            with self.phase(f"history: an account with {n:,} events, one with 10", "setup"):
                app = open_app(url)
                apply_all(app, platform_commands(START.isoformat()))
                busy_account(app, "busy", n)
                busy_account(app, "few", 10)
                app.close()
            with self.phase("history: first pages (median of 21 each)", "timed"):
                pages = self.steps(url, "history", account="busy", other="few")["history"]
            whole = {}
            for label, extra in (("table", []), ("json", ["--json"])):
                with self.phase(f"history: `ledger history busy {' '.join(extra)}`, all {n:,} events", "timed"):
                    whole[label] = child([sys.executable, "-m", "entrypoints", "--db", url, "history", "busy", *extra],
                                         os.path.join(self.workdir, f"{self.store}-history-{label}.out"))
            base = {"method": "the same first page of an account with 10 events", "seconds": pages["other_seconds"]}
            self.figures.append(figure(
                "history_first_page", self.store, pages["seconds"] / pages["other_seconds"], "x", 1, "pages",
                pages["seconds"], base, pages["rss_mb"], account_events=n, since_last_event_seconds=pages["since_seconds"],
                page_100_seconds=pages["page_100_seconds"],
                whole_table_seconds=whole["table"][0], whole_table_rss_mb=round(whole["table"][1], 1),
                whole_json_seconds=whole["json"][0], whole_json_rss_mb=round(whole["json"][1], 1),
                note=f"a page of 10: {n:,} events over 10; whole_*: `ledger history` of all {n:,} in a fresh process"))
        finally:
            drop(url)

    # --- interest catch-up: N accounts x 24 hours ---------------------------------------------
    def catchup(self) -> None:
        n, hours, url = self.sizes.catchup_accounts, CATCHUP_HOURS, fresh_url(self.store)
        urls = [url]
        try:
            with self.phase(f"catch-up: {n:,} indebted accounts, three copies", "setup") as progress:
                app = open_app(url)
                indebted_accounts(app, n, progress=progress)
                app.close()
                urls += [copy_store(url), copy_store(url)]
            last = (START + timedelta(hours=hours - 1, minutes=59)).isoformat().replace("+00:00", "Z")
            single = INTEREST_AT.isoformat().replace("+00:00", "Z")
            runs = {}
            for label, target, hour, extra in (("json", urls[0], last, ["--json"]), ("human", urls[1], last, []),
                                               ("single", urls[2], single, ["--json"])):
                out = os.path.join(self.workdir, f"{self.store}-catchup-{label}.out")
                with self.phase(f"catch-up: `ledger interest run --hour {hour} {' '.join(extra)}`", "timed"):
                    runs[label] = child([sys.executable, "-m", "entrypoints", "--db", target, "interest", "run",
                                         "--hour", hour, *extra], out)
                if label != "human":
                    with open(out, encoding="utf-8") as handle:
                        charges = sum(1 for line in handle if line.startswith('      "account": '))
                    if charges != n * (hours if label == "json" else 1):
                        raise RuntimeError(f"interest run --hour {hour}: {charges} charges, not {n} x the hours")
        finally:
            for each in urls:
                drop(each)
        (json_s, json_mb), (human_s, human_mb), (single_s, single_mb) = runs["json"], runs["human"], runs["single"]
        count = n * hours
        base = {"method": "single-hour run of the same accounts (ledger interest run --json), per account-hour",
                "seconds": single_s * hours, "single_hour_seconds": single_s, "single_hour_rss_mb": round(single_mb, 1)}
        detail = {"accounts": n, "hours": hours, "human_seconds": human_s, "human_rss_mb": round(human_mb, 1)}
        self.figures += [
            figure("catchup", self.store, max(json_mb, human_mb), "MB", count, "account-hours", json_s, base,
                   max(json_mb, human_mb), note="peak RSS of `ledger interest run`, --json or not", **detail),
            figure("catchup_rate", self.store, (count / json_s) / (n / single_s), "x", count, "account-hours", json_s, base,
                   json_mb, note="account-hours/s of the catch-up over the single-hour run's", **detail),
            figure("catchup_human", self.store, human_s / json_s, "x", count, "account-hours", human_s, base, human_mb,
                   note="seconds without --json over with it", **detail),
        ]

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
        with self.phase(f"the log topped up to {sizes.verify_events:,} events (deposits)", "setup") as progress:
            app = open_app(url)
            top_up(app, sizes.accounts, sizes.verify_events, progress)
            app.close()
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
            figure("verify_memory", store, verify["rss_mb"], "MB", verify["count"], "events", verify["seconds"], verify_base,
                   verify["rss_mb"], note="peak RSS of the verify process (a fresh one; its seal and view catch-up first)"),
            figure("verify_memory_rate", store, verify["count"] / verify["seconds"], "events/s", verify["count"], "events",
                   verify["seconds"], verify_base, verify["rss_mb"], note=f"audit verify over {verify['count']:,} events"),
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

    # --- prices (issue 15) ------------------------------------------------------------------
    def ticks(self) -> None:
        """tick_rate: one `ledger apply` of ``ticks`` BTC marks over ``tick_holders`` futures
        holders, in ticks/s as a ratio to the plain deposit ingest of the same store (as many
        deposits, applied after it); tick_events: events written per tick; largest_snapshot:
        the largest stored snapshot of an account or the platform after the ticks, in KB (the
        largest index's, an account set of the holders, alongside)."""
        from bench import prices

        holders, n, url = self.sizes.tick_holders, self.sizes.ticks, fresh_url(self.store)
        try:
            with self.phase(f"ticks: {holders:,} futures holders", "setup") as progress:
                app = open_app(url)
                prices.holders(app, holders, progress)
                raw = RawDB.of(app, url)
                app.close()
                ticks, deposits = os.path.join(self.workdir, "ticks.jsonl"), os.path.join(self.workdir, "deposits.jsonl")
                prices.write_ticks(ticks, n)
                prices.write_deposits(deposits, n, holders)
            try:
                before, snapshots_before = raw.head(), prices.count_snapshots(raw)
                with self.phase(f"ticks: ledger apply of {n:,} BTC marks over {holders:,} holders", "timed"):
                    seconds, rss = child([sys.executable, "-m", "entrypoints", "--db", url, "apply", ticks],
                                         os.path.join(self.workdir, f"{self.store}-ticks.jsonl"))
                written, snapshots = raw.head() - before, prices.count_snapshots(raw) - snapshots_before
                largest, index = prices.largest_snapshot(raw, accounts=True), prices.largest_snapshot(raw, accounts=False)
                with self.phase(f"ticks: baseline, ledger apply of {n:,} deposits", "baseline"):
                    base_seconds, _ = child([sys.executable, "-m", "entrypoints", "--db", url, "apply", deposits],
                                            os.path.join(self.workdir, f"{self.store}-deposits.jsonl"))
            finally:
                raw.close()
            base = {"method": "ledger apply of as many deposits", "seconds": base_seconds, "commands": n}
            detail = {"holders": holders, "events": written, "snapshots": snapshots}
            self.figures += [
                figure("tick_rate", self.store, base_seconds / seconds, "x deposits", n, "ticks", seconds, base, rss,
                       **detail),
                figure("tick_events", self.store, written / n, "events/tick", n, "ticks", seconds, base, rss, **detail),
                figure("largest_snapshot", self.store, largest / 1024, "KB", n, "ticks", seconds, base, rss,
                       note="the largest stored snapshot of an account or the platform after the ticks",
                       largest_index_kb=round(index / 1024, 1), **detail),
            ]
        finally:
            drop(url)

    def startup_after_prices(self) -> None:
        """A fresh `account show` and `account show --as-of` (an instant in the middle of the
        prices) after ``price_events`` prices, as a ratio to the same on a store whose platform
        has none; each the median of ``startup_runs`` fresh processes."""
        from bench import prices
        from bench.startup import ledger_argv, medians, peak_mb

        n, runs, ledger = self.sizes.price_events, self.sizes.startup_runs, ledger_argv()
        empty, full = fresh_url(self.store), fresh_url(self.store)
        try:
            with self.phase(f"prices: {n:,} price events in batches, and a store without", "setup") as progress:
                for url in (empty, full):
                    app = open_app(url)
                    prices.shown_account(app)
                    if url == full:
                        prices.prices(app, n, progress)
                    app.close()
            middle = (prices.START + timedelta(seconds=n // 2)).isoformat()
            args = {name: {"show": ["--db", url, "account", "show", prices.SHOWN],
                           "asof": ["--db", url, "account", "show", prices.SHOWN, "--as-of", middle]}
                    for name, url in (("empty", empty), ("full", full))}
            commands = {f"{name}-{kind}": [*ledger, *a] for name, kinds in args.items() for kind, a in kinds.items()}
            with self.phase(f"prices: {runs} fresh processes of each command, on both stores", "timed"):
                took = medians(commands, runs)
            for kind, figure_name in (("show", "startup_after_prices"), ("asof", "asof_after_prices")):
                base = {"method": "the same command, platform without prices", "seconds": took[f"empty-{kind}"],
                        "runs": runs}
                seconds = took[f"full-{kind}"]
                self.figures.append(figure(figure_name, self.store, seconds / base["seconds"], "x", 1, "starts", seconds,
                                           base, peak_mb(args["full"][kind]), runs=runs, price_events=n,
                                           rss_mb_empty=round(peak_mb(args["empty"][kind]), 1)))
        finally:
            drop(empty)
            drop(full)

    # --- stress scenarios (issue 19) ------------------------------------------------------------
    def stress(self) -> None:
        """stress: `ledger risk stress --shock BTC=-20%` over ``stress_accounts`` indebted
        accounts (1 % to breach at 40,000), as a ratio to one sweep of the same accounts in the
        same process once BTC really fell to 40,000 (the same liquidations, recorded)."""
        n, url = self.sizes.stress_accounts, fresh_url(self.store)
        try:
            with self.phase(f"stress: {n:,} indebted accounts (1 % to breach at BTC 40,000)", "setup") as progress:
                app = open_app(url)
                indebted_accounts(app, n, breach_every_100th, progress)
                app.close()
            with self.phase(f"stress: `risk stress --shock BTC=-20%`, then BTC falls and the sweep runs, {n:,} accounts",
                            "timed"):
                out = self.steps(url, "stress", "crash", "sweep")
        finally:
            drop(url)
        stress, sweep = out["stress"], out["sweep"]
        expected = -(-n // 100)
        if stress["liquidated"] != expected or sweep["liquidated"] != expected:
            raise RuntimeError(f"stress liquidated {stress['liquidated']}, the sweep {sweep['liquidated']}, not {expected}")
        base = {"method": "one sweep (run_sweep) of the same accounts after BTC really fell, same process",
                "seconds": sweep["seconds"]}
        self.figures.append(figure(
            "stress", self.store, stress["seconds"] / sweep["seconds"], "x sweep", stress["count"], "accounts",
            stress["seconds"], base, max(stress["rss_mb"], sweep["rss_mb"]), liquidated=stress["liquidated"],
            changed=stress["changed"], sweep_rss_mb=sweep["rss_mb"], stress_rss_mb=stress["rss_mb"],
            note="seconds of the stress over the sweep's; RSS: the one process, stress first"))
