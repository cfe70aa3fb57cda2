"""Chaos on PostgreSQL (issue 12): writers on overlapping accounts, interest and sweep runs and
the projection runner, all at once, with random SIGKILLs and restarts.  Afterwards money is
conserved, every (account, currency, hour) is charged exactly once, `ledger audit verify` is
clean and no process printed a traceback.

Bounded by ``LEDGER_CHAOS_SECONDS`` (default 40 s of chaos); a soak is the same test with a
larger figure, e.g. ``LEDGER_CHAOS_SECONDS=1800 pytest tests/test_chaos.py -s``.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from ledger.service.app import LedgerApp
from ledger.adapters.store import persistence_env
from tests import pg

CHAOS_SECONDS = float(os.environ.get("LEDGER_CHAOS_SECONDS", "40"))
ACCOUNTS = [f"chaos-{n:02d}" for n in range(24)]
WRITERS = 4
COMMANDS_PER_ROUND = 1500
PROCESS_LIMIT = 120  # seconds any one process may take before the test calls it hung


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def set_up(url: str) -> list[datetime]:
    """24 unified accounts that have owed USDT for the last three hours; returns those hours."""
    now = datetime.now(timezone.utc)
    hour = now.replace(minute=0, second=0, microsecond=0)
    start = stamp(hour - timedelta(hours=3) + timedelta(minutes=10))
    cmds: list[dict] = [
        {"type": "set_platform_flags", "whitelist_required": False, "at": start},
        {"type": "set_price", "currency": "BTC", "price": "50000", "at": start},
        {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": start},
    ]
    for a in ACCOUNTS:
        cmds += [{"type": "open_account", "account": a, "at": start},
                 {"type": "complete_risk_assessment", "account": a, "score": 50, "agreements_version": "v1", "at": start},
                 {"type": "switch_mode", "account": a, "mode": "unified", "at": start},
                 {"type": "deposit", "account": a, "currency": "BTC", "amount": "1", "at": start},
                 {"type": "deposit", "account": a, "currency": "USDT", "amount": "1000", "at": start},
                 {"type": "borrow", "account": a, "currency": "USDT", "amount": "2000", "at": start}]
    app = LedgerApp.open(persistence_env(url))
    try:
        assert all(r["ok"] for r in app.apply(cmds, lambda: now)), "the set-up is accepted"
    finally:
        app.close()
    return [hour - timedelta(hours=2), hour - timedelta(hours=1), hour]


def writer_round(path: Path, writer: int, round_: int, rng: random.Random) -> Path:
    """Deposits, withdrawals, borrows and repayments on random accounts (shared by every
    writer), each with a command_id, so a restarted round applies nothing twice (T2)."""
    lines = []
    for i in range(COMMANDS_PER_ROUND):
        kind = rng.choice(["deposit", "withdraw", "borrow", "repay"])
        amount = str(rng.randint(1, 30))
        lines.append(json.dumps({"type": kind, "command_id": f"w{writer}-r{round_}-{i}", "account": rng.choice(ACCOUNTS),
                                 "currency": "USDT", "amount": amount}))
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Proc:
    role: str
    args: list[str]
    popen: subprocess.Popen
    started: float
    stdout: Path
    stderr: Path
    killed: bool = False


@dataclass
class Chaos:
    url: str
    tmp: Path
    running: list[Proc] = field(default_factory=list)
    finished: list[Proc] = field(default_factory=list)
    kills: Counter = field(default_factory=Counter)
    starts: Counter = field(default_factory=Counter)

    def start(self, role: str, *args: str) -> Proc:
        n = sum(self.starts.values())
        out, err = self.tmp / f"{n}-{role}.out", self.tmp / f"{n}-{role}.err"
        popen = subprocess.Popen([sys.executable, "-m", "entrypoints", "--db", self.url, *args],
                                 stdout=out.open("w"), stderr=err.open("w"), stdin=subprocess.DEVNULL)
        proc = Proc(role, list(args), popen, time.monotonic(), out, err)
        self.running.append(proc)
        self.starts[role] += 1
        return proc

    def reap(self) -> list[Proc]:
        done = [p for p in self.running if p.popen.poll() is not None]
        for p in done:
            self.running.remove(p)
            self.finished.append(p)
        for p in self.running:
            assert time.monotonic() - p.started < PROCESS_LIMIT, f"{p.role} {p.args} hung: {p.stderr.read_text()[-2000:]}"
        return done

    def kill_one(self, rng: random.Random) -> None:
        if self.running:
            victim = rng.choice(self.running)
            victim.popen.send_signal(signal.SIGKILL)
            victim.killed = True
            self.kills[victim.role] += 1

    def wait_all(self) -> None:
        while self.running:
            time.sleep(0.1)
            self.reap()


def account_totals(url: str) -> tuple[Counter, dict[str, Decimal], dict[str, Decimal]]:
    """From the stored events: charges per (account, currency, hour); money in (deposits −
    withdrawals − interest) per currency; and Σ (cash − liability) per currency."""
    app = LedgerApp.open(persistence_env(url))
    try:
        charges: Counter = Counter()
        flows: dict[str, Decimal] = {}
        equity: dict[str, Decimal] = {}
        for account in app.account_ids():
            for e in app.history(account):
                name = type(e).__name__
                sign = {"Deposited": 1, "Withdrawn": -1, "InterestCharged": -1}.get(name)
                if name == "InterestCharged":
                    charges[(account, e.currency, e.hour)] += 1
                if sign is not None:
                    amount = e.interest if name == "InterestCharged" else e.amount
                    flows[e.currency] = flows.get(e.currency, Decimal(0)) + sign * amount
            acct = app.account(account)
            for currency in ("USDT", "BTC"):
                equity[currency] = equity.get(currency, Decimal(0)) + acct.cash(currency) - acct.liability(currency)
        return charges, flows, equity
    finally:
        app.close()


@pytest.mark.postgres
def test_chaos_kills_and_restarts_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    url = pg.new_database()
    owed_hours = set_up(url)
    rng = random.Random(int(os.environ.get("LEDGER_CHAOS_SEED", "12")))
    chaos = Chaos(url, tmp_path)
    rounds = [0] * WRITERS
    pending: dict[int, Path] = {}  # writer -> the round file it is applying

    def start_writer(w: int) -> None:
        if w not in pending:
            rounds[w] += 1
            pending[w] = writer_round(tmp_path / f"w{w}-r{rounds[w]}.jsonl", w, rounds[w], rng)
        chaos.start(f"apply-{w}", "apply", str(pending[w]))

    for w in range(WRITERS):
        start_writer(w)
    for _ in range(2):
        chaos.start("interest", "interest", "run", "--json")
    chaos.start("repayment", "repayment", "run", "--json")
    chaos.start("projections", "projections", "run")

    deadline = time.monotonic() + CHAOS_SECONDS
    next_kill = time.monotonic() + rng.uniform(0.3, 1.5)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if time.monotonic() >= next_kill:
            chaos.kill_one(rng)
            next_kill = time.monotonic() + rng.uniform(0.3, 1.5)
        for p in chaos.reap():
            if p.role.startswith("apply-"):
                w = int(p.role.split("-")[1])
                if not p.killed:
                    pending.pop(w)  # the round is complete: the next one is new
                start_writer(w)
            else:
                chaos.start(p.role, *p.args)
    chaos.wait_all()

    # Finish every round that a kill interrupted, then the runs, without chaos.
    for w in list(pending):
        start_writer(w)
    chaos.wait_all()
    for args in (["interest", "run", "--json"], ["repayment", "run", "--json"], ["projections", "run"]):
        chaos.start("final", *args)
        chaos.wait_all()

    for p in chaos.finished:
        err = p.stderr.read_text()
        assert "Traceback" not in err, f"{p.role} {p.args} printed a traceback:\n{err[-3000:]}"
        if p.killed:
            continue
        allowed = (0, 1) if p.role.startswith("apply-") else (0,)
        assert p.popen.returncode in allowed, f"{p.role} {p.args} exited {p.popen.returncode}: {err[-2000:]}"
        if p.role.startswith("apply-"):
            results = [json.loads(line) for line in p.stdout.read_text().splitlines()]
            assert len(results) == COMMANDS_PER_ROUND, "every input line gets its result"
            codes = Counter(r["error"]["code"] for r in results if not r["ok"])
            assert set(codes) <= {"insufficient_balance", "insufficient_margin", "nothing_to_repay", "conflict"}, codes

    charges, flows, equity = account_totals(url)
    assert charges, "the runs charged interest"
    assert max(charges.values()) == 1, [k for k, v in charges.items() if v > 1][:5]
    assert all(charges[(a, "USDT", h)] == 1 for a in ACCOUNTS for h in owed_hours), "no account skipped an hour"
    for currency in ("USDT", "BTC"):
        assert equity[currency] == flows[currency], f"{currency}: Σ(cash − liability) {equity[currency]} != flows {flows[currency]}"

    verify = subprocess.run([sys.executable, "-m", "entrypoints", "--db", url, "audit", "verify", "--json"],
                            capture_output=True, text=True, timeout=PROCESS_LIMIT)
    assert "Traceback" not in verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"], report["findings"][:5]
    restarts = sum(chaos.starts.values()) - chaos.starts["final"] - (WRITERS + 4)
    print(f"\nchaos: {CHAOS_SECONDS:.0f} s, {sum(chaos.kills.values())} SIGKILLs {dict(chaos.kills)}, "
          f"{restarts} restarts, {sum(rounds)} writer rounds, {len(charges)} charges, "
          f"{report['events_checked']} events verified", file=sys.stderr)
