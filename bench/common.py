"""Shared set-up for the benchmark: fresh stores, the big store's timeline, and many indebted
unified accounts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from itertools import chain, islice
from typing import Any, Callable, Iterable, Iterator, Optional

from ledger.service.app import BATCH_SIZE, LedgerApp
from ledger.adapters.store import persistence_env

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
# The big store's timeline: everything set up at START, BTC falls a minute later, the hourly
# run charges hour 00:00, the sweep takes the 01:05 mark.
CRASH_AT = START + timedelta(minutes=1)
INTEREST_AT = START + timedelta(minutes=59)
SWEEP_AT = START + timedelta(minutes=65)
CHUNK = 20 * BATCH_SIZE  # commands per app.apply call in set-ups: whole transactions

Progress = Optional[Callable[[int, int], None]]


def fresh_url(store: str) -> str:
    """A new SQLite file, or a new database on the local PostgreSQL server."""
    if store == "sqlite":
        return f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'bench.db')}"
    import psycopg

    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop(url: str) -> None:
    """Remove a store made by fresh_url: the SQLite file's directory, or the database."""
    env = persistence_env(url)
    if "SQLITE_DBNAME" in env:
        shutil.rmtree(os.path.dirname(env["SQLITE_DBNAME"]), ignore_errors=True)
        return
    import psycopg

    with psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{env["POSTGRES_DBNAME"]}" WITH (FORCE)')


def wall_clock() -> datetime:
    """The ledger's clock: every set-up command carries its `at`, all in its past (T4)."""
    return datetime.now(timezone.utc)


def open_app(url: str) -> LedgerApp:
    return LedgerApp.open(persistence_env(url))


def platform_commands(at: str) -> list[dict[str, Any]]:
    """No whitelist, BTC at 50,000, USDT interest: what every benchmark store starts with."""
    return [
        {"type": "set_platform_flags", "whitelist_required": False, "at": at},
        {"type": "set_price", "currency": "BTC", "price": "50000", "at": at},
        {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at},
    ]


def apply_all(app: LedgerApp, cmds: Iterable[dict[str, Any]], total: int = 0, progress: Progress = None) -> int:
    """Apply commands in chunks of whole transactions; every one must be accepted."""
    done, it = 0, iter(cmds)
    while chunk := list(islice(it, CHUNK)):
        for cmd, result in zip(chunk, app.apply(chunk, wall_clock)):
            if not result["ok"]:
                raise RuntimeError(f"set-up command rejected: {cmd} -> {result['error']}")
        done += len(chunk)
        if progress:
            progress(done, max(total, done))
    return done


def indebted_accounts(app: LedgerApp, count: int, borrow: Callable[[int], str] = lambda n: "1000",
                      progress: Progress = None) -> None:
    """`count` unified accounts, each with 1 BTC (at 50,000) and a USDT loan of borrow(n),
    withdrawn (spent), so the loan is backed by the BTC alone."""
    at = START.isoformat()

    def account(n: int) -> Iterator[dict[str, Any]]:
        a = f"acct-{n:06d}"
        yield from [{"type": "open_account", "account": a, "at": at},
                    {"type": "complete_risk_assessment", "account": a, "score": 50, "agreements_version": "v1", "at": at},
                    {"type": "switch_mode", "account": a, "mode": "unified", "at": at},
                    {"type": "deposit", "account": a, "currency": "BTC", "amount": "1", "at": at},
                    {"type": "borrow", "account": a, "currency": "USDT", "amount": borrow(n), "at": at},
                    {"type": "withdraw", "account": a, "currency": "USDT", "amount": borrow(n), "at": at}]

    cmds = chain(platform_commands(at), chain.from_iterable(account(n) for n in range(count)))
    apply_all(app, cmds, 3 + 6 * count, progress)


def breach_every_100th(n: int) -> str:
    """The loan for indebted_accounts that puts 1 % in breach once BTC falls to 40,000: their
    40,000 owed is then backed by collateral worth 39,200."""
    return "40000" if n % 100 == 0 else "1000"


def crash(app: LedgerApp) -> None:
    """BTC falls from 50,000 to 40,000 at CRASH_AT."""
    apply_all(app, [{"type": "set_price", "currency": "BTC", "price": "40000", "at": CRASH_AT.isoformat()}])


def busy_account(app: LedgerApp, account: str, events: int) -> None:
    """One unified account with `events` events: opened, assessed, switched, then deposits and
    withdrawals of 100 USDT in turn, one second apart from START (each at a distinct instant)."""
    def at(i: int) -> str:
        return (START + timedelta(seconds=i)).isoformat()

    cmds = [{"type": "open_account", "account": account, "at": at(0)},
            {"type": "complete_risk_assessment", "account": account, "score": 50, "agreements_version": "v1", "at": at(1)},
            {"type": "switch_mode", "account": account, "mode": "unified", "at": at(2)}]
    cmds += [{"type": "deposit" if i % 2 else "withdraw", "account": account, "currency": "USDT", "amount": "100",
              "at": at(i)} for i in range(3, events)]
    apply_all(app, cmds)


def copy_store(url: str) -> str:
    """A copy of the store at ``url`` (nothing may be connected to it): the SQLite file
    copied, or a PostgreSQL database made from it as a template."""
    env = persistence_env(url)
    if "SQLITE_DBNAME" in env:
        target = fresh_url("sqlite")
        shutil.copyfile(env["SQLITE_DBNAME"], persistence_env(target)["SQLITE_DBNAME"])
        return target
    import psycopg

    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{env["POSTGRES_DBNAME"]}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def top_up(app: LedgerApp, accounts: int, events: int, progress: Progress = None) -> None:
    """Deposits of 1 USDT over indebted_accounts' ``accounts``, in turn, a chunk at a time
    until the log holds ``events`` events, at START + 2 h (after the big store's runs)."""
    at, n = (START + timedelta(hours=2)).isoformat(), 0
    while (head := app.recorder.max_notification_id() or 0) < events:
        if progress:
            progress(head, events)
        cmds = [{"type": "deposit", "account": f"acct-{(n + i) % accounts:06d}", "currency": "USDT", "amount": "1", "at": at}
                for i in range(min(CHUNK, events - head))]
        n += len(cmds)
        apply_all(app, cmds)


def ledger(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """The command line in a fresh process (its output kept; a non-zero exit raises)."""
    return subprocess.run([sys.executable, "-m", "entrypoints", *args], capture_output=True, text=True, check=True,
                          timeout=timeout)


def apply_baseline(store: str, path: str, count: int, phase: Callable[..., Any], mix: str, timeout: int = 900) -> float:  # float-ok: seconds
    """`ledger apply` of the ``count`` commands in ``path`` on a fresh store of ``store``'s kind,
    timed as a baseline phase: its seconds.  Every command must be accepted (the ``mix`` named)."""
    applied = fresh_url(store)
    try:
        with phase(f"{mix} baseline: ledger apply of the same {count:,} commands", "baseline"):
            started = time.perf_counter()
            out = ledger("--db", applied, "apply", path, timeout=timeout).stdout.splitlines()
            seconds = time.perf_counter() - started
        if len(out) != count or not all(json.loads(line)["ok"] for line in out):
            raise RuntimeError(f"ledger apply rejected a command of the {mix} mix")
    finally:
        drop(applied)
    return seconds
