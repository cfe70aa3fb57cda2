"""Start-up: how long a fresh `ledger` process takes before any work, against `python -c pass`
in the same run.  Each command runs ``runs`` times, the three in turn (so a busy moment
hits all three alike); the figure is the median wall time of a fresh process, start to exit."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path


def ledger_argv() -> list[str]:
    """The installed console script, as people run it; `python -m entrypoints` without one."""
    script = Path(sys.executable).parent / "ledger"
    return [str(script)] if script.exists() else [sys.executable, "-m", "entrypoints"]


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.decode()[-500:]}")
    return seconds


def medians(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median seconds of each command, run ``runs`` times in turn."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(wall(argv))
    return {name: statistics.median(values) for name, values in times.items()}


PEAK = ("import atexit, sys\n"
        "def peak():\n"
        "    with open('/proc/self/status') as status:\n"
        "        sys.stderr.write(next(l for l in status if l.startswith('VmHWM:')))\n"
        "atexit.register(peak)\n"
        "from entrypoints.cli import entry\n"
        "sys.argv = ['ledger', *sys.argv[1:]]\n"
        "entry()\n")


def peak_mb(args: list[str]) -> float:
    """Peak RSS of one more, untimed run of `ledger ARGS`, as the process itself saw it at exit
    (a sampler would miss a process this short)."""
    done = subprocess.run([sys.executable, "-c", PEAK, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    line = next((l for l in done.stderr.splitlines() if l.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024
