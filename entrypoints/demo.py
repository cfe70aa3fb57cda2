"""`ledger demo`: a guided tour of the ledger on a fresh SQLite file.

Each step applies real commands through the application and prints what the ledger
answered, then the account as `ledger account show` would.  The store, the jobs and the read
models come from the command line's session (entrypoints.session) on the demo's own store.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from rich.console import Console
from rich.panel import Panel

from entrypoints.people import account as print_account
from entrypoints.people import heading
from entrypoints.session import Session
from ledger.service.app import LedgerApp
from ledger.domain.base import event_fields
from ledger.domain.money import fmt
from ledger.read.render import plain
from ledger.read.views import account_view

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def wall_clock() -> datetime:
    """The ledger's clock: the demo's story (every command carries its `at`) lies in its past,
    so no instant is from the future (T4)."""
    return datetime.now(timezone.utc)


def at(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


STEPS: list[tuple[str, list[dict[str, Any]], list[str]]] = [
    ("Open a master account (VIP 2) and a sub-account for a trading bot", [
        {"type": "open_account", "account": "alice", "vip_level": 2, "at": at(0)},
        {"type": "open_account", "account": "alice-bot", "parent": "alice", "at": at(0)},
        {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "20000", "at": at(1)},
        {"type": "deposit", "account": "alice", "currency": "BTC", "amount": "0.5", "at": at(1)},
    ], ["alice"]),
    ("Try to upgrade to Unified mode: refused, alice is not on the beta whitelist (M3)", [
        {"type": "switch_mode", "account": "alice", "mode": "unified", "at": at(2)},
    ], []),
    ("Whitelist alice, still refused until the risk assessment is done (M4), then upgrade (M5, M6)", [
        {"type": "whitelist", "account": "alice", "at": at(3)},
        {"type": "switch_mode", "account": "alice", "mode": "unified", "at": at(3)},
        {"type": "complete_risk_assessment", "account": "alice", "score": 72, "agreements_version": "2026-01", "at": at(4)},
        {"type": "switch_mode", "account": "alice", "mode": "unified", "at": at(4)},
    ], ["alice"]),
    ("The price feed marks BTC and ETH, USDT interest is 0.01 %/h; the bot's sub-account gets a unified API key (M8, M9)", [
        {"type": "set_price", "currency": "BTC", "price": "60000", "at": at(5)},
        {"type": "set_price", "currency": "ETH", "price": "3000", "at": at(5)},
        {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at(5)},
        {"type": "create_api_key", "account": "alice-bot", "key_id": "bot-key-1", "unified": True, "permissions": ["spot", "futures", "transfer"], "at": at(6)},
        {"type": "transfer", "from_account": "alice", "to_account": "alice-bot", "currency": "USDT", "amount": "7000", "at": at(6)},
    ], []),
    ("A master API key can never act for the sub-account (M9)", [
        {"type": "create_api_key", "account": "alice", "key_id": "alice-key", "unified": True, "permissions": ["spot"], "at": at(7)},
        {"type": "place_order", "account": "alice-bot", "api_key": "alice-key", "order_id": "x1", "market": "spot", "symbol": "ETH-USDT", "side": "buy", "qty": "1", "price": "3000", "at": at(7)},
    ], []),
    ("alice buys 0.5 BTC for 30,000 USDT holding 13,000: the 17,000 shortfall and the 12 USDT fee are borrowed (B1)", [
        {"type": "place_order", "account": "alice", "order_id": "buy-1", "market": "spot", "symbol": "BTC-USDT", "side": "buy", "qty": "0.5", "price": "60000", "at": at(10)},
        {"type": "fill_order", "account": "alice", "order_id": "buy-1", "qty": "0.5", "price": "60000", "fee": "12", "at": at(10)},
    ], ["alice"]),
    ("alice borrows 2 ETH explicitly within her limit (B2, B3); 1,000,000 ETH is refused", [
        {"type": "borrow", "account": "alice", "currency": "ETH", "amount": "2", "at": at(11)},
        {"type": "borrow", "account": "alice", "currency": "ETH", "amount": "1000000", "at": at(11)},
    ], []),
    ("The bot goes long 1 BTC perpetual through its API key (O3)", [
        {"type": "place_order", "account": "alice-bot", "api_key": "bot-key-1", "order_id": "perp-1", "market": "futures", "symbol": "BTC-USDT", "side": "buy", "qty": "1", "price": "60000", "at": at(12)},
        {"type": "fill_order", "account": "alice-bot", "order_id": "perp-1", "qty": "1", "price": "60000", "at": at(12)},
    ], ["alice-bot"]),
    ("BTC drops to 50,000: the bot's 10,000 unrealized loss takes USDT below zero; 3,000 of UPL-generated liability is derived "
     "(B1: the tick writes only its PriceSet, the next rule instant books it)", [
        {"type": "set_price", "currency": "BTC", "price": "50000", "at": at(20)},
    ], ["alice-bot"]),
    ("BTC recovers to 52,000: the 2,000 unrealized gain lowers only the UPL-generated liability (R1 as §16 reads it)", [
        {"type": "set_price", "currency": "BTC", "price": "52000", "at": at(30)},
    ], ["alice-bot"]),
    ("alice deposits 6,000 USDT: it repays her USDT liability at once (R1), then she repays ETH by hand (B3)", [
        {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "6000", "at": at(40)},
        {"type": "repay", "account": "alice", "currency": "ETH", "amount": "2", "at": at(41)},
    ], ["alice"]),
    ("Downgrading back to classic is refused while alice owes anything (M5)", [
        {"type": "switch_mode", "account": "alice", "mode": "classic", "at": at(42)},
    ], []),
]


INTEREST_AT = START + timedelta(hours=1, minutes=5)


def interest_step(session: Session, app: LedgerApp, out: Console) -> None:
    """The hourly run at 10:05 charges the top of 10:00 (I1-I4)."""
    run_interest = session.root.run_interest
    heading(out, f"{len(STEPS) + 1}. An hour later the interest worker charges 10:00 UTC: 0.01 % of each USDT liability, the bot's UPL-generated part within the 2,000 allowance is free (I1-I4)")
    run = run_interest(app, INTEREST_AT)
    for c in run.charges:
        money = {k: fmt(getattr(c, k)) for k in ("liability", "interest_free", "rate", "interest", "paid", "capitalized")}
        out.print(f"   [green]✓ InterestCharged[/green] account={c.account}, currency={c.currency}, hour={c.hour:%H:%M}, "
                  + ", ".join(f"{k}={v}" for k, v in money.items()), highlight=False)
    out.print("   a second run for the same hour charges nothing: "
              f"{len(run_interest(app, INTEREST_AT).charges)} charges", highlight=False)


CRASH_AT = START + timedelta(hours=1, minutes=10)


def crash_step(session: Session, app: LedgerApp, out: Console) -> None:
    """A price crash, then the 5-minute sweep liquidates what it must (L3)."""
    run_sweep = session.root.run_sweep
    heading(out, f"{len(STEPS) + 2}. BTC crashes to 45,000; the 10:10 sweep liquidates the bot: its long is closed at mark and what its assets cannot cover goes to the insurance fund (L3)")
    crash = {"type": "set_price", "currency": "BTC", "price": "45000", "at": CRASH_AT.isoformat()}
    for e in app.apply([crash], wall_clock)[0]["events"]:
        out.print(f"   [green]✓ {e['type']}[/green] " + ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("type", "at")), highlight=False)
    print_account(out, account_view(app.account("alice-bot"), app.platform(), app.platform_owed))
    run = run_sweep(app, CRASH_AT)
    for account in sorted({a["account"] for a in run.actions}):
        for e in app.history(account):
            if e.at == CRASH_AT and type(e).__name__ not in ("Borrowed",):
                fields = {k: v for k, v in event_fields(e).items() if k != "at"}
                out.print(f"   [green]✓ {type(e).__name__}[/green] account={account}, "
                          + ", ".join(f"{k}={v}" for k, v in plain(fields).items()), highlight=False)
    print_account(out, account_view(app.account("alice-bot"), app.platform(), app.platform_owed))
    out.print(f"   the same mark again does nothing: already swept = {run_sweep(app, CRASH_AT).already_swept}", highlight=False)


def keep_current(session: Session, app: LedgerApp, out: Console) -> None:
    """What the worker does every few seconds: seal the new events into the hash chain and
    build the read models, so that the commands that only read find them current."""
    from projections import audit

    with session.views() as db:
        sealed, projected = audit.seal(app, db), session.root.project(app, db)
    out.print(f"sealed {sealed} events into the hash chain and projected them into the read models", highlight=False)


def run(session: Session, out: Console) -> None:
    """The tour on ``session``'s store, which it first removes (a SQLite file)."""
    db_url = session.db_url
    path = db_url.removeprefix("sqlite:///")
    if db_url.startswith("sqlite:///") and os.path.exists(path):
        os.remove(path)
    out.print(Panel.fit("Unified Trading Account ledger: a guided tour\nEvery step below is a JSON command applied through `ledger apply`; every line it prints is an event stored in the append-only log.", style="bold"))
    with session.opened() as app:
        for number, (title, commands, shown) in enumerate(STEPS, 1):
            heading(out, f"{number}. {title}")
            for command, result in zip(commands, app.apply(commands, wall_clock)):
                label = command["type"] + " " + " ".join(f"{k}={v}" for k, v in command.items() if k not in ("type", "at"))
                out.print(f"[cyan]→ {label}[/cyan]", highlight=False)
                if result["ok"]:
                    for e in result["events"]:
                        details = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("type", "account", "at"))
                        out.print(f"   [green]✓ {e['type']}[/green] {details}", highlight=False)
                else:
                    out.print(f"   [red]✗ {result['error']['code']}[/red]: {result['error']['message']}", highlight=False)
            for account in shown:
                print_account(out, account_view(app.account(account), app.platform(), app.platform_owed))
        interest_step(session, app, out)
        crash_step(session, app, out)
        keep_current(session, app, out)
    out.rule()
    out.print(f"The store is kept at {path}. Explore it:\n"
              f"  ledger --db {db_url} account show alice\n"
              f"  ledger --db {db_url} history alice-bot --type Borrowed\n"
              f"  ledger --db {db_url} account list --json\n"
              f"  ledger --db {db_url} history alice --type InterestCharged")
