"""The benchmark: every figure of the issue on each store, each against its raw-database baseline.

    python -m bench [--quick] [--store sqlite|postgres|both] [--only GROUP,...] [--size NAME=N ...]
                    [--json] [--output PATH]

Figures (sizes of the full run; --quick uses thousands and asserts nothing about speed):

- ingest: `ledger apply` (a real process) of 200,000 mixed commands over 10,000 accounts:
  commands/s.  Every command must be accepted, or the run fails.
- interest: one hourly run over 100,000 indebted accounts: accounts/s.
- sweep: one 5-minute sweep over those 100,000 unified accounts, 1 % in breach: seconds.
- worker_memory: peak RSS of one fresh process running that interest run and that sweep.
- scale: interest seconds per account at 100,000 accounts over at 10,000 (1.0 is linear).
- projections: every view caught up from zero over the big store's whole log: events/s.
- asof_p50, asof_p99: `account show --as-of` on an account with 10,000 events, 200 random
  instants: milliseconds.
- verify: `ledger audit verify` over the big store's log: events/s.
- tick_rate: one `ledger apply` of 10,000 BTC marks over 10,000 unified futures holders, as
  a ratio to the plain deposit ingest rate of the same store; tick_events: events written
  per tick; largest_snapshot: the largest stored snapshot after those ticks, KB.
- startup_after_prices, asof_after_prices: a fresh `account show` (and with `--as-of` in the
  middle of the prices) after 1,000,000 price events, as a ratio to an empty platform.
- publish_rate: `ledger publish --until-idle 0` of 100,000 deposits' events to the machine's
  NATS server (JetStream): events/s, against a plain read of the same notification log
  (bench/publish.py).
- bus_throughput: `ledger consume` of 50,000 mixed commands published to NATS JetStream
  beforehand, against `ledger apply` of the same commands (target: 0.7 of its rate);
  bus_latency_p50, bus_latency_p99: deposits offered at 1,000/s, publish to result on the
  results subject, milliseconds (bench.bus; needs the NATS server, LEDGER_NATS_URL).

Each timed step runs in a fresh process (bench.step, or the `ledger` CLI itself), so each
figure's peak RSS is its own; set-ups run here and are not timed.  Baselines: see
bench/baseline.py.  Every figure is reported as a rate, as a ratio to its baseline's rate
and with its peak RSS, against the targets in bench/figures.py; a missed target is reported,
not an error.  Exit status: 0 when every figure was measured, 1 on any error.

Results go to bench/results.json (the published figures, committed), or with --quick to
bench/results-quick.json (ignored by git); --json prints them instead of the tables.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict, replace

from bench import report
from bench.figures import FULL, GROUPS, QUICK, ROOT, StoreRun
from bench.stream import write_jsonl


def postgres_version() -> str | None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", connect_timeout=5) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="thousands instead of the full sizes; asserts nothing")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print the results JSON instead of the tables")
    parser.add_argument("--output", help="the results file (default bench/results.json, or bench/results-quick.json)")
    parser.add_argument("--only", help=f"comma-separated set-ups to measure, of {', '.join(GROUPS)} (default all)")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=N",
                        help="override one size (a field of bench.figures.Sizes), e.g. ticks=1000")
    args = parser.parse_args()
    sizes = replace(QUICK if args.quick else FULL, **{k: int(v) for k, v in (s.split("=", 1) for s in args.size)})
    groups = tuple(args.only.split(",")) if args.only else GROUPS
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    output = args.output or str(ROOT / "bench" / ("results-quick.json" if args.quick else "results.json"))
    phases = report.Phases()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the stores made so far are dropped
    workdir = tempfile.mkdtemp(prefix="ledger-bench-")
    try:
        version = postgres_version() if "postgres" in stores else None
        commands = f"{workdir}/commands.jsonl"
        if "ingest" in groups:
            with phases.phase("all", f"{sizes.ingest_commands:,} mixed commands over {sizes.ingest_accounts:,} accounts",
                              "setup"):
                write_jsonl(commands, sizes.ingest_commands, sizes.ingest_accounts)
        figures = [f for store in stores for f in StoreRun(store, sizes, workdir, commands, phases).measure(groups)]
    except Exception as error:  # noqa: BLE001 - the traceback, then one line that sums it up
        report.err.print_exception(max_frames=8)
        report.err.print(f"[red]bench failed[/red]: {type(error).__name__}: {error} (files kept in {workdir})",
                         highlight=False)
        return 1
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): nothing worth keeping
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    data = report.results("quick" if args.quick else "full", asdict(sizes), figures, phases.done, version)
    report.write(output, data)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        out = report.console()
        out.print(report.figures_table(data))
        out.print(report.phases_table(data))
        out.print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
