"""What the benchmark tells people and files: progress on standard error, the machine, the
results file, and the tables."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.table import Table

WIDTH = 170  # the figures table's natural width, also when the output is not a terminal


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else WIDTH)


err = console(stderr=True)


class Phases:
    """Each phase of a run, shown while it runs and recorded with its wall time; `kind` is
    setup (untimed preparation), timed (a figure's process) or baseline."""

    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []

    @contextmanager
    def phase(self, store: str, label: str, kind: str) -> Iterator[Callable[[int, int], None]]:
        text = f"[bold]{store}[/bold] {kind}: {label}"
        started = time.perf_counter()
        with err.status(text) as status:
            yield lambda done, total: status.update(f"{text} ({done:,}/{total:,})")
        seconds = time.perf_counter() - started
        self.done.append({"store": store, "phase": label, "kind": kind, "seconds": round(seconds, 3)})
        err.print(f"  {store:8} {kind:8} {seconds:8.1f} s  {label}", highlight=False, soft_wrap=True)


def machine(postgres_version: str | None) -> dict[str, Any]:
    def first(path: str, prefix: str) -> str:
        try:
            with open(path, encoding="utf-8") as handle:
                return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(prefix)), "")
        except OSError:
            return ""

    memory = first("/proc/meminfo", "MemTotal")  # "24684312 kB"
    return {
        "cpus": os.cpu_count(), "cpu_model": first("/proc/cpuinfo", "model name") or platform.processor(),
        "ram_gb": round(int(memory.split()[0]) / 1024**2, 1) if memory else None,
        "python": platform.python_version(), "postgres": postgres_version, "os": platform.platform(),
    }


def results(mode: str, sizes: dict[str, int], figures: list[dict[str, Any]], phases: list[dict[str, Any]],
            postgres_version: str | None) -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "mode": mode, "machine": machine(postgres_version), "sizes": sizes, "figures": figures, "phases": phases,
    }


def write(path: str, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3f}"


def figures_table(data: dict[str, Any]) -> Table:
    table = Table("figure", "store", "measured", "rate", "baseline rate", "ratio", "peak RSS MB", "target", "result",
                  title=f"benchmark ({data['mode']}, {data['date']})")
    for f in data["figures"]:
        target = f"{f['target']['op']} {number(f['target']['value'])}" if f["target"] else "-"
        result = "-" if f["met"] is None else "[green]met[/green]" if f["met"] else "[red]missed[/red]"
        table.add_row(f["figure"], f["store"], f"{number(f['value'])} {f['unit']}", f"{number(f['rate'])} {f['rate_unit']}",
                      number(f["baseline"]["rate"]), f"{f['ratio']:.3f}", f"{f['rss_mb']:,.0f}",
                      target, result)
    return table


def phases_table(data: dict[str, Any]) -> Table:
    table = Table("store", "setup s", "timed s", "baseline s", title="where the wall time went")
    for store in dict.fromkeys(p["store"] for p in data["phases"]):
        sums = {kind: sum(p["seconds"] for p in data["phases"] if p["store"] == store and p["kind"] == kind)
                for kind in ("setup", "timed", "baseline")}
        table.add_row(store, *(f"{sums[k]:,.1f}" for k in ("setup", "timed", "baseline")))
    return table
