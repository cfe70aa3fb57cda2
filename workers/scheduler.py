"""`ledger worker`: one long-running process that triggers the scheduled jobs (SPEC §13).

APScheduler 3.11 is only a trigger.  Correctness lives in the store: the interest run
charges every hour ≤ now not yet charged, so a worker that was down catches up on its
first run, and two workers never charge twice.  Misfired jobs are coalesced into one run and
always run (``misfire_grace_time=None``); one instance of a job at a time.  The store, the
read models and each job's options (batch sizes, processes) come from the composition root
(``entrypoints.compose``): nothing here reads the environment.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ledger.service.app import LedgerApp
from ledger.domain.times import rfc3339
from ledger.adapters.store import KINDS, describe_store_error, store_error_kind
from workers.interest import run_interest
from workers.sweep import run_sweep

log = logging.getLogger("ledger.worker")
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
PROJECTIONS_EVERY = 5  # seconds between projection catch-ups
RESTART_AFTER = 5  # seconds before a long-running loop that failed (the bus's) starts again
LOOP_JOIN = 60  # seconds a loop may take to finish its batch once stopping


class JsonFormatter(logging.Formatter):
    """Structured logs: one JSON object per line.  A record that carries an exception (any
    library's, e.g. APScheduler's "Job raised an exception") says its type and message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": rfc3339(datetime.fromtimestamp(record.created, timezone.utc)),
                 "level": record.levelname.lower(), "event": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None and "error" not in entry:
            entry.update(failure(record.exc_info[1]))
        return json.dumps(entry, default=str)


def failure(error: BaseException) -> dict[str, Any]:
    """What a log line says of a failure: the exception's type, what kind of store failure it
    is (connection_refused, database_missing, bad_credentials, ... or null) and its message."""
    return {"error_type": type(error).__name__, "error_kind": store_error_kind(error),
            "error": describe_store_error(error)}


def failed(what: str, error: BaseException, **fields: Any) -> None:
    """One error line: the event names what failed and, for a store failure, how."""
    kind = store_error_kind(error)
    label = f": {KINDS[kind][0]}" if kind else ""
    log.error(f"{what}{label}", extra={"fields": {**fields, **failure(error)}})


def setup_logging() -> None:
    """The worker's and APScheduler's logs, as JSON lines on standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for logger, level in ((log, logging.INFO), (logging.getLogger("apscheduler"), logging.WARNING)):
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


class Jobs:
    """The scheduled jobs, each callable with the time it stands for (tests pass a fake one).
    A job that fails logs why (type, kind, message) and the next run tries again: a failure
    never escapes into the scheduler, whose own line would not say what happened.
    ``interest``, ``sweep``, ``projections``: each job's keyword arguments (its batch size ...)."""

    def __init__(self, app: LedgerApp, stopping: threading.Event, views: Any = None, *,
                 interest: Mapping[str, Any] | None = None, sweep: Mapping[str, Any] | None = None,
                 projections: Mapping[str, Any] | None = None) -> None:
        self.app = app
        self.stopping = stopping
        self.views = views  # a projections.sql.ViewDatabase, or None: no projection job
        self.options = {"interest": dict(interest or {}), "sweep": dict(sweep or {}), "projections": dict(projections or {})}
        self.runs: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.last_failure: dict[str, Any] | None = None
        self._relayed: list[Any] = []  # what the relay did (bus.relay.Relayed), once it stopped
        self._lock = threading.Lock()

    def guarded(self, job: str, work: Callable[[], None]) -> bool:
        """Run one job; True when it went through."""
        try:
            work()
        except Exception as error:  # noqa: BLE001 - logged with its type and message; the next run retries
            failed(f"{job} job failed", error, job=job)
            with self._lock:
                self.failures[job] += 1
                self.last_failure = {"job": job, **failure(error)}
            return False
        with self._lock:
            self.runs[job] += 1
        return True

    def interest(self, run_at: datetime) -> bool:
        return self.guarded("interest", lambda: self._interest(run_at))

    def sweep(self, run_at: datetime) -> bool:
        return self.guarded("sweep", lambda: self._sweep(run_at))

    def projections(self) -> bool:
        return self.guarded("projections", self._projections)

    def _interest(self, run_at: datetime) -> None:
        run = run_interest(self.app, run_at, stop=self.stopping.is_set, keep=False, **self.options["interest"])
        log.info("interest run", extra={"fields": {
            "at": rfc3339(run_at), "charges": run.count,
            "accounts": run.accounts, "skipped": len(run.skipped),
            "totals": {c: str(v) for c, v in run.totals().items()}, "complete": run.complete}})

    def _sweep(self, run_at: datetime) -> None:
        run = run_sweep(self.app, run_at, stop=self.stopping.is_set, **self.options["sweep"])
        kinds: dict[str, int] = {}
        for action in run.actions:
            kinds[action["kind"]] = kinds.get(action["kind"], 0) + 1
        log.info("sweep run", extra={"fields": {
            "at": rfc3339(run_at), "mark": rfc3339(run.mark), "accounts": run.accounts, "actions": kinds,
            "skipped": len(run.skipped), "already_swept": run.already_swept, "complete": run.complete}})

    def _projections(self) -> None:
        """Bring the read models up to date (the stores link each event into the audit chain
        as they write it: nothing to seal)."""
        from projections import runner

        applied = runner.run(self.app, self.views, stop=self.stopping.is_set, **self.options["projections"])
        if applied:
            log.info("projections run", extra={"fields": {"events": applied}})

    def relay(self, publisher: Callable[[threading.Event], Any]) -> None:
        """`worker --publish`: the relay until the worker stops; its failure stops the worker."""
        if not self.guarded("publish", lambda: self._relayed.append(publisher(self.stopping))):
            self.stopping.set()
        elif self._relayed:
            log.info("publish stopped", extra={"fields": self._relayed[-1].as_dict()})

    def summary(self) -> dict[str, Any]:
        with self._lock:
            relayed = {"publish": self._relayed[-1].as_dict()} if self._relayed else {}
            return {"runs": dict(self.runs), "failures": dict(self.failures), "last_failure": self.last_failure,
                    **relayed}


def now() -> datetime:
    return datetime.now(timezone.utc)


def build_scheduler(jobs: Jobs, clock: Callable[[], datetime] = now) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults=JOB_DEFAULTS)
    scheduler.add_job(lambda: jobs.interest(clock()), CronTrigger(minute=0, timezone=timezone.utc),
                      id="interest", name="hourly interest")
    scheduler.add_job(lambda: jobs.sweep(clock()), CronTrigger(minute="*/5", timezone=timezone.utc),
                      id="sweep", name="5-minute sweep")
    if jobs.views is not None:
        scheduler.add_job(jobs.projections, IntervalTrigger(seconds=PROJECTIONS_EVERY, timezone=timezone.utc),
                          id="projections", name="read models kept current")
    return scheduler


def open_store(open_app: Callable[[], LedgerApp], open_views: Callable[[], Any], store: str) -> tuple[LedgerApp, Any] | None:
    """The store and its read models for the worker, or None after one error line saying why
    (a refused connection, a missing database, bad credentials ...); ``store``: its redacted URL."""
    try:
        app = open_app()
    except Exception as error:  # noqa: BLE001 - StoreError or the driver's: logged, exit 2
        failed("cannot open the store", error, store=store)
        return None
    try:
        return app, open_views()
    except Exception as error:  # noqa: BLE001
        app.close()
        failed("cannot open the read models", error, store=store)
        return None


def refused_setting(error: Exception) -> None:
    """A setting the worker cannot start with (``ledger.adapters.settings.SettingsError``): one line."""
    log.error("invalid setting", extra={"fields": {**failure(error), "error_kind": getattr(error, "code", None)}})


def keep_running(name: str, loop: Callable[[Callable[[], bool]], Mapping[str, Any]], stopping: threading.Event) -> None:
    """A long-running part of the worker (`ledger consume`'s loop), called with the stop
    check, until stopping; a failure is logged and the loop starts again RESTART_AFTER later."""
    while not stopping.is_set():
        try:
            done = loop(stopping.is_set)
        except Exception as error:  # noqa: BLE001 - logged with its type and message; started again
            failed(f"{name} failed", error, job=name)
            stopping.wait(RESTART_AFTER)
        else:
            log.info(f"{name} stopped", extra={"fields": {"job": name, **done}})
            return


def run_worker(app: LedgerApp, views: Any = None, publisher: Callable[[threading.Event], Any] | None = None,
               loops: Mapping[str, Callable[[Callable[[], bool]], Mapping[str, Any]]] | None = None,
               **options: Mapping[str, Any]) -> dict[str, Any]:
    """Catch up at once, then run on schedule until SIGTERM or SIGINT.  The main thread only
    waits; jobs run in the scheduler's thread and see ``stopping`` between batches; each of
    ``loops`` (name: a long-running loop given the stop check, the bus's consumer) in a thread
    of its own, started again after a failure.  Returns the summary that the last log line
    also carries.  ``options``: each job's, as for Jobs.  ``publisher`` (`worker --publish`):
    the event relay, run in its own thread until ``stopping``; a relay that fails logs why and
    stops the worker (``failures["publish"]``): its position is the store's, so nothing is lost."""
    setup_logging()
    started = now()
    stopping = threading.Event()
    jobs = Jobs(app, stopping, views, **options)
    scheduler = build_scheduler(jobs)

    received: list[str] = []

    def stop(signum: int, _frame: object) -> None:
        # Only flags here: a signal handler must not log or take the scheduler's locks.
        received.append(signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker started", extra={"fields": {"jobs": [j.id for j in scheduler.get_jobs()] +
                                                          (["publish"] if publisher else [])}})
    relaying = threading.Thread(target=jobs.relay, args=(publisher,), name="publish") if publisher else None
    if relaying:
        relaying.start()
    jobs.interest(now())  # catch up through the store after any downtime
    jobs.sweep(now())  # then sweep the latest mark (earlier marks would act on today's state)
    if views is not None:
        jobs.projections()  # and bring the read models up to date
    threads = [threading.Thread(target=keep_running, args=(name, loop, stopping), name=f"ledger-{name}", daemon=True)
               for name, loop in (loops or {}).items()]
    if not stopping.is_set():
        for thread in threads:
            thread.start()
        scheduler.start()
        stopping.wait()
        scheduler.shutdown(wait=True)  # a running job stops after its current batch (one transaction)
    if relaying:
        relaying.join()  # the relay stops after its batch in flight is acked and recorded
    for thread in threads:
        thread.join(LOOP_JOIN)  # a loop finishes its batch in flight
    summary = {"started": rfc3339(started), "stopped": rfc3339(now()), "signal": received[0] if received else None,
               **jobs.summary()}
    log.info("worker stopped", extra={"fields": summary})
    return summary
