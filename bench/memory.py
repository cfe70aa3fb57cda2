"""Peak memory (RSS) of a process, and of a process with its children, from Linux's /proc.

Not ``ru_maxrss``: a child's ru_maxrss starts at its parent's peak, inherited through fork
and exec, so a small step spawned by a big parent would report the parent's memory.
``VmHWM`` is the exact peak of the process's own memory since exec.  A process that hands
work to child processes (a process pool) also needs their memory: ``PeakSampler`` adds up
the current RSS of a process and all its descendants every 100 ms and keeps the
largest sum; it runs in the benchmark's process, not in the one measured.
"""
from __future__ import annotations

import os
import threading

INTERVAL = 0.1  # seconds between samples


def _status_mb(pid: int | str, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next((int(line.split()[1]) / 1024 for line in status if line.startswith(field)), 0.0)
    except OSError:  # gone, or not Linux
        return 0.0


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM) in MB."""
    return _status_mb("self", "VmHWM:")


def tree_rss_mb(root: int) -> float:
    """The RSS of ``root`` and every process descended from it, now, in MB."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(_status_mb(pid, "VmRSS:") for pid in tree)


class PeakSampler:
    """The largest total RSS of a process tree, sampled in a thread until stopped."""

    def __init__(self, root: int) -> None:
        self.root, self.peak = root, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.peak = max(self.peak, tree_rss_mb(self.root))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak
