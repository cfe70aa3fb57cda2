"""The worker says what broke (issue 17): JSON log lines with the exception's type and message
on every failure, and a distinct line for a refused connection, a missing database and bad
credentials, run for real against the local PostgreSQL."""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from ledger.service.app import LedgerApp
from ledger.adapters.store import describe_store_error, persistence_env, store_error_kind
from tests import pg
from workers import scheduler
from workers.scheduler import JsonFormatter, Jobs


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "worker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.postgres
def test_each_connection_failure_is_one_distinct_json_line() -> None:
    pg.require_server()
    cases = {
        "connection_refused": f"postgresql://{pg.USER}@127.0.0.1:{free_port()}/ledger",
        "database_missing": f"postgresql://{pg.USER}@{pg.HOST}:{pg.PORT}/no_such_database_here",
        "bad_credentials": f"postgresql://no_such_role_here@{pg.HOST}:{pg.PORT}/postgres",
    }
    procs = {kind: worker(url) for kind, url in cases.items()}  # together: each waits out the pool's timeout
    events = set()
    for kind, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, stderr
        [line] = stderr.splitlines()  # one line, no traceback
        entry = json.loads(line)
        assert entry["level"] == "error" and entry["error_kind"] == kind, entry
        assert entry["error_type"] == "OperationalError" and entry["store"] == cases[kind]
        assert {"connection_refused": "Connection refused", "database_missing": 'database "no_such_database_here"',
                "bad_credentials": 'role "no_such_role_here"'}[kind] in entry["error"]
        events.add(entry["event"])
    assert events == {"cannot open the store: connection refused", "cannot open the store: database missing",
                      "cannot open the store: bad credentials"}


def test_a_bad_url_is_one_json_line_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = worker("mysql://localhost/x")
    _, stderr = proc.communicate(timeout=60)
    [line] = stderr.splitlines()
    entry = json.loads(line)
    assert proc.returncode == 2 and entry["error_type"] == "StoreError" and "unsupported database URL" in entry["error"]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(JsonFormatter().format(record)))


@pytest.fixture
def records():  # type: ignore[no-untyped-def]
    handler = Records()
    scheduler.log.addHandler(handler)
    yield handler.lines
    scheduler.log.removeHandler(handler)


def test_a_failing_job_logs_type_and_message_and_the_next_run_goes_on(tmp_path, monkeypatch, records) -> None:  # type: ignore[no-untyped-def]
    app = LedgerApp.open(persistence_env(f"sqlite:///{tmp_path / 'w.db'}"))
    jobs = Jobs(app, threading.Event())
    calls = []

    def sweep(*_, **__):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise RuntimeError("the price feed is gone")

    monkeypatch.setattr(scheduler, "run_sweep", sweep)
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert jobs.sweep(now) is False and jobs.sweep(now) is False and len(calls) == 2
    assert jobs.interest(now) is True
    failed = [line for line in records if line["level"] == "error"]
    assert [line["event"] for line in failed] == ["sweep job failed", "sweep job failed"]
    assert failed[0] | {"ts": None} == {"ts": None, "level": "error", "event": "sweep job failed", "job": "sweep",
                                        "error_type": "RuntimeError", "error_kind": None, "error": "the price feed is gone"}
    assert jobs.summary() == {"runs": {"interest": 1}, "failures": {"sweep": 2},
                              "last_failure": {"job": "sweep", "error_type": "RuntimeError", "error_kind": None,
                                               "error": "the price feed is gone"}}
    app.close()


@pytest.mark.postgres
def test_a_database_that_goes_away_while_the_worker_runs_is_named(records) -> None:  # type: ignore[no-untyped-def]
    url = pg.new_database()
    env = persistence_env(url) | {"POSTGRES_CONNECT_TIMEOUT": "1"}  # the store retries each read: keep it short
    app = LedgerApp.open(env)
    jobs = Jobs(app, threading.Event())
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert jobs.sweep(now) is True
    with pg._connect("postgres") as conn:
        conn.execute(f'DROP DATABASE "{env["POSTGRES_DBNAME"]}" WITH (FORCE)')
    assert jobs.sweep(now) is False
    line = records[-1]
    # the retry policy (ledger.adapters.retry) gives up with StoreUnavailable, caused by the driver's error
    assert line["event"].startswith("sweep job failed: ") and line["error_type"] in ("OperationalError", "StoreUnavailable")
    assert line["error_kind"] in ("connection_lost", "database_missing"), line
    app.close()


def test_any_logged_exception_says_its_type_and_message() -> None:
    """e.g. APScheduler's own "Job ... raised an exception" line."""
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.getLogger("apscheduler").makeRecord("apscheduler", logging.ERROR, __file__, 1,
                                                              'Job "x" raised an exception', (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["error_type"] == "ValueError" and entry["error"] == "bad value"


@pytest.mark.parametrize("text, sqlstate, kind", [
    ('connection to server at "127.0.0.1", port 1 failed: Connection refused', None, "connection_refused"),
    ('FATAL:  database "x" does not exist', None, "database_missing"),
    ("whatever the text", "3D000", "database_missing"),
    ('FATAL:  password authentication failed for user "ledger"', "28P01", "bad_credentials"),
    ('FATAL:  role "nobody" does not exist', None, "bad_credentials"),
    ('FATAL:  no pg_hba.conf entry for host "10.0.0.1"', "28000", "bad_credentials"),
    ("failed to resolve host 'db': [Errno -2] Name or service not known", None, "unknown_host"),
    ("server closed the connection unexpectedly", None, "connection_lost"),
    ("canceling statement due to statement timeout", "57014", "timeout"),
    ('relation "stored_events" does not exist', "42P01", None),
    ("unable to open database file", None, "sqlite_file"),
])
def test_store_errors_are_told_apart(text: str, sqlstate: str | None, kind: str | None) -> None:
    class DriverError(Exception):
        pass

    error = DriverError(text)
    error.sqlstate = sqlstate  # type: ignore[attr-defined]
    wrapped = RuntimeError("while opening")
    wrapped.__cause__ = error
    assert store_error_kind(wrapped) == kind
    assert " ".join(text.split()) in describe_store_error(wrapped)
