"""Group commit (§15): one writer thread owns the application that writes.

Requests hand their decoded commands to ``Writer.submit`` and await an asyncio future (the
server's event loop is woken once per batch, not once per request).  The thread
takes whatever is waiting, up to ``batch`` commands (waiting ``wait`` seconds at most for
more when fewer are there), applies them with one ``LedgerApp.apply`` call (one transaction
per BATCH_SIZE commands, conflicts retried there) and answers each request with its own
results, in order.  ``stop`` refuses new work, answers everything already queued, then ends
the thread.  Several processes on one PostgreSQL database each have a writer: the store
decides between them, and ``LedgerApp`` recomputes a batch that lost.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Callable, Optional

from ledger.adapters.retry import StoreUnavailable

Results = list[dict[str, Any]]
Waiting = tuple[list[Any], "asyncio.Future[Results]"]


class Stopped(Exception):
    """The writer is stopping: nothing more is taken."""


class Writer:
    def __init__(self, apply: Callable[[list[Any]], Results], batch: int, wait: float,  # float-ok: seconds
                 observe: Optional[Callable[[int], None]] = None) -> None:
        self._apply, self.batch, self.wait = apply, batch, wait
        self._observe = observe or (lambda size: None)
        self._queue: "queue.Queue[Optional[Waiting]]" = queue.Queue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # submit and stop agree on whether a request is taken
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def submit(self, objs: list[Any]) -> "asyncio.Future[Results]":
        """From the event loop: the future of ``objs``' results."""
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._stopping.is_set():
                raise Stopped()
            self._queue.put((objs, future))
        return future

    def stop(self, timeout: float = 60.0) -> None:  # float-ok: seconds
        """Take nothing new; answer what is queued; end the thread (``timeout`` at most)."""
        with self._lock:
            self._stopping.set()
            self._queue.put(None)
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            taken, size, stopping = [first], len(first[0]), False
            deadline = time.monotonic() + self.wait
            while size < self.batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                if item is None:
                    stopping = True
                    break
                taken.append(item)
                size += len(item[0])
            self._commit(taken, size)

    def _commit(self, taken: list[Waiting], size: int) -> None:
        objs = [obj for request, _ in taken for obj in request]
        answers: list[tuple["asyncio.Future[Results]", Any]] = []
        try:
            results = self._apply(objs)
        except StoreUnavailable as error:  # the requests wholly done have their results
            results = list(error.done)
            for request, future in taken:
                done = len(results) >= len(request)
                answers.append((future, results[:len(request)] if done else error))
                results = results[len(request):] if done else []
        except BaseException as error:  # noqa: BLE001 - each waiting request learns of it
            answers = [(future, error) for _, future in taken]
        else:
            self._observe(size)
            start = 0
            for request, future in taken:
                answers.append((future, results[start:start + len(request)]))
                start += len(request)
        loops: dict[Any, list[tuple["asyncio.Future[Results]", Any]]] = {}
        for future, answer in answers:
            loops.setdefault(future.get_loop(), []).append((future, answer))
        for loop, some in loops.items():
            try:
                loop.call_soon_threadsafe(deliver, some)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass


def deliver(answers: list[tuple["asyncio.Future[Results]", Any]]) -> None:
    """In the event loop: each future its results, or its error."""
    for future, answer in answers:
        if future.cancelled():
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
