"""Machine output (docs/spec.md §14): the plain data each command prints with ``--json``, and
the rows its people's output (entrypoints.people) is drawn from.  Values are strings as
``ledger.read.render.plain`` makes them; the shapes here are the contract, byte for byte."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator

from ledger.domain import ids
from ledger.read.render import event_dict, plain, rfc3339
from ledger.read.views import account_view

if TYPE_CHECKING:
    from ledger.service.app import LedgerApp


def account_at(app: "LedgerApp", acct: Any, at: datetime | None) -> dict[str, Any]:
    """One account's view (`account show`), now or at ``at``."""
    return account_view(acct, app.platform_at(at), lambda c: app.platform_owed(c, at))


def account_rows(app: "LedgerApp") -> list[dict[str, Any]]:
    """`account list`: every account with its mode and totals."""
    rows = []
    platform = app.platform()
    for account in app.account_ids():
        view = account_view(app.account(account), platform, app.platform_owed)
        rows.append({
            "account": account, "parent": view["parent"], "mode": view["mode"], "vip_level": view["vip_level"],
            "cash": {c: b["cash"] for c, b in view["balances"].items()},
            "liabilities": {c: b["liability"] for c, b in view["balances"].items() if b["liability"] != "0"},
            "nav": view["nav"], "risk_ratio": view["risk_ratio"],
        })
    return rows


def accounts_at(app: "LedgerApp", at: datetime) -> list[dict[str, Any]]:
    """`audit replay`: every account's view at ``at``, from the events alone."""
    platform = app.platform_at(at)
    views = []
    for account in app.account_ids():
        acct = app.state_at(ids.account(account), at)
        if acct is not None:
            views.append(account_view(acct, platform, lambda c: app.platform_owed(c, at)))
    return views


def history_row(key: str, e: Any) -> dict[str, Any]:
    """`history`: one event with its name, instant and sequence number first (``key``: the
    account's aggregate id)."""
    row = event_dict(key, e)
    row.pop("account", None)
    return {"type": row.pop("type"), "at": rfc3339(e.at), "seq": e.originator_version,
            **{k: v for k, v in row.items() if k != "at"}}


def interest_run(run: Any, charges: Iterator[Any]) -> list[tuple[str, Any]]:
    """`interest run`: the instant, every charge as it is committed, the accounts skipped
    (``entrypoints.session.emit_streamed`` writes it)."""
    return [("at", rfc3339(run.at)), ("charges", (plain(vars(c)) for c in charges)), ("skipped", lambda: run.skipped)]


def sweep_run(run_at: datetime, run: Any) -> dict[str, Any]:
    """`repayment run`: the instant, the mark swept, its actions."""
    return {"at": rfc3339(run_at), "mark": rfc3339(run.mark), "actions": plain(run.actions),
            "skipped": run.skipped, "already_swept": run.already_swept}


def verified(result: Any) -> dict[str, Any]:
    """`audit verify`: the outcome, the findings, what was not covered."""
    return {"ok": result.ok, "events_checked": result.events_checked, "findings": plain(result.findings),
            "unsealed": result.unsealed, "views": {"position": result.view_position, "lag": result.view_lag}}


def view_status(app: "LedgerApp", db: Any) -> list[dict[str, Any]]:
    """`projections status`: each view's position and lag."""
    from projections import runner

    return [{"view": s.view, "position": s.position, "head": s.head, "lag": s.lag} for s in runner.status(app, db)]


def stress_run(run: Any) -> dict[str, Any]:
    """`risk stress` (§17): the instant, the shocks, every account the shock changes, the totals;
    ``skipped`` only when an account could not be judged (as the sweep skips it)."""
    shown = {"as_of": rfc3339(run.as_of or run.at),
             "shocks": [{"currency": s.currency, "percent": plain(s.percent), "price_before": plain(s.price_before),
                         "price_after": plain(s.price_after)} for s in run.shocks],
             "accounts": [plain(run.rows[a].as_dict()) for a in sorted(run.rows)],
             "totals": plain(run.totals())}
    if run.skipped:
        shown["skipped"] = run.skipped
    return shown
