"""Interest across processes (I5): concurrent runs, a run killed mid-way, the worker process,
and the scheduler's wiring tested without waiting for real time."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from ledger.service.app import LedgerApp
from ledger.adapters.store import persistence_env
from tests import pg
from tests.helpers import latest
from workers.scheduler import JOB_DEFAULTS, Jobs, build_scheduler

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def stamp(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def indebted_accounts(url: str, count: int) -> None:
    """`count` unified accounts, each owing 1000 USDT from minute 30; rate 0.01 %/h."""
    cmds: list[dict] = [
        {"type": "set_platform_flags", "whitelist_required": False, "at": stamp(0)},
        {"type": "set_price", "currency": "BTC", "price": "50000", "at": stamp(0)},
        {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": stamp(0)},
    ]
    for n in range(count):
        a = f"acct-{n:05d}"
        cmds += [{"type": "open_account", "account": a, "at": stamp(1)},
                 {"type": "complete_risk_assessment", "account": a, "score": 50, "agreements_version": "v1", "at": stamp(1)},
                 {"type": "switch_mode", "account": a, "mode": "unified", "at": stamp(1)},
                 {"type": "deposit", "account": a, "currency": "BTC", "amount": "1", "at": stamp(2)},
                 {"type": "borrow", "account": a, "currency": "USDT", "amount": "1000", "at": stamp(30)}]
    app = LedgerApp.open(persistence_env(url))
    try:
        results = app.apply(cmds, lambda: START, latest)
        assert all(r["ok"] for r in results)
    finally:
        app.close()


def charged(url: str) -> Counter:
    """How many times each (account, currency, hour) was charged, from the stored events."""
    app = LedgerApp.open(persistence_env(url))
    try:
        seen: Counter = Counter()
        for account in app.account_ids():
            for e in app.history(account):
                if type(e).__name__ == "InterestCharged":
                    seen[(account, e.currency, e.hour)] += 1
        return seen
    finally:
        app.close()


def interest_run(url: str, hour: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "interest", "run", "--hour", hour, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


@pytest.mark.postgres
def test_four_concurrent_runs_charge_each_hour_exactly_once() -> None:
    """Issue 4: four `ledger interest run` processes together, 30 indebted accounts."""
    url = pg.new_database()
    indebted_accounts(url, 30)
    procs = [interest_run(url, stamp(3 * 60 + 10), {"LEDGER_INTEREST_BATCH_ACCOUNTS": "7"}) for _ in range(4)]
    reported = Counter()
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        for c in json.loads(stdout)["charges"]:
            reported[(c["account"], c["currency"], c["hour"])] += 1
    seen = charged(url)
    expected = {(f"acct-{n:05d}", "USDT", START + timedelta(hours=h)) for n in range(30) for h in (1, 2, 3)}
    assert set(seen) == expected and set(seen.values()) == {1}
    assert sum(reported.values()) == 90 and set(reported.values()) == {1}  # each charge reported by one run only


@pytest.mark.postgres
def test_run_killed_mid_way_then_rerun_leaves_no_hour_twice_or_missed() -> None:
    """Issue 4: SIGKILL during a run, run again: every hour charged exactly once."""
    url = pg.new_database()
    accounts = 400
    indebted_accounts(url, accounts)
    total = accounts * 2
    watcher = LedgerApp.open(persistence_env(url))
    for attempt in range(3):  # kill while some, but not all, batches are saved
        baseline = watcher.recorder.max_notification_id()
        proc = interest_run(url, stamp(2 * 60 + 5), {"LEDGER_INTEREST_BATCH_ACCOUNTS": "5"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and watcher.recorder.max_notification_id() == baseline:
            time.sleep(0.002)
        proc.kill()
        proc.wait()
        partial = sum(charged(url).values())
        if 0 < partial < total:
            break
    else:
        pytest.fail("could not kill the run mid-way in three attempts")
    watcher.close()
    rerun = interest_run(url, stamp(2 * 60 + 6))
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, stderr
    assert len(json.loads(stdout)["charges"]) == total - partial
    seen = charged(url)
    assert len(seen) == total and set(seen.values()) == {1}


def test_two_applications_racing_in_threads_charge_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """I5 on SQLite: two runs at once on one file; the store lets only one charge stand."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    indebted_accounts(url, 20)
    apps = [LedgerApp.open(persistence_env(url)) for _ in range(2)]
    from workers.interest import run_interest

    results: list = []
    threads = [threading.Thread(target=lambda a=a: results.append(run_interest(a, START + timedelta(hours=2)))) for a in apps]
    [t.start() for t in threads]
    [t.join() for t in threads]
    [a.close() for a in apps]
    seen = charged(url)
    assert len(seen) == 40 and set(seen.values()) == {1}
    assert sum(len(r.charges) for r in results) == 40


def test_scheduler_wiring_with_a_fake_clock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 4 §4: interest at minute 0, the sweep every 5 minutes, in UTC, coalesced, never dropped;
    the job called with its scheduled time charges that hour."""
    url = f"sqlite:///{tmp_path / 'sched.db'}"
    indebted_accounts(url, 3)
    app = LedgerApp.open(persistence_env(url))
    fake_now = START + timedelta(hours=1, minutes=0, seconds=1)
    jobs = Jobs(app, threading.Event())
    scheduler = build_scheduler(jobs, clock=lambda: fake_now)
    by_id = {job.id: job for job in scheduler.get_jobs()}
    assert set(by_id) == {"interest", "sweep"}  # no views given: no projection job
    with_views = build_scheduler(Jobs(app, threading.Event(), views=object()), clock=lambda: fake_now)
    assert {job.id for job in with_views.get_jobs()} == {"interest", "sweep", "projections"}
    probe = START + timedelta(minutes=7, seconds=3)
    assert by_id["interest"].trigger.get_next_fire_time(None, probe) == START + timedelta(hours=1)
    assert by_id["sweep"].trigger.get_next_fire_time(None, probe) == START + timedelta(minutes=10)
    assert scheduler._job_defaults == {**scheduler._job_defaults, **JOB_DEFAULTS}
    by_id["interest"].func()  # what APScheduler calls at 01:00
    assert len(charged(url)) == 3
    by_id["interest"].func()  # a coalesced second fire for the same hour charges nothing
    assert len(charged(url)) == 3 and set(charged(url).values()) == {1}
    app.close()


def test_worker_starts_catches_up_and_stops_cleanly_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 4 §4: `ledger worker` runs, logs JSON lines, catches up at start, stops on SIGTERM."""
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    indebted_accounts(url, 2)  # history in March 2026: the worker's first run catches up to now
    proc = subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", url, "worker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(json.loads(line))  # every line is a JSON object
        if lines[-1]["event"] == "projections run":
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=30)
    lines += [json.loads(l) for l in rest.splitlines() if l.strip()]
    assert proc.returncode == 0
    events = [l["event"] for l in lines]
    assert events[0] == "worker started" and "interest run" in events and events[-1] == "worker stopped"
    assert "sweep run" in events and "projections run" in events
    run = next(l for l in lines if l["event"] == "interest run")
    assert run["accounts"] == 2 and run["complete"] is True
    assert run["charges"] == len(charged(url)) > 2 * 24 * 200  # every hour since March
