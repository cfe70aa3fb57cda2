"""People's output: Rich on standard output, and never a number or an id cut short.

A table prints as a table when its natural width fits the console, or else without its
vertical lines if that fits.  When neither does, each row prints as a block of "column
value" lines instead, so no cell is ever folded or cut to "11013.1…".  On a terminal the console is the terminal's width (or $COLUMNS); piped, it is
WIDE columns unless $COLUMNS says otherwise, and a line longer than that is left whole.
Rich is imported when something is printed, not when the command line starts.  Below the
table mechanics, each command's output for people, drawn from the data of entrypoints.machine.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

if TYPE_CHECKING:
    from rich.console import Console

WIDE = 160  # piped output: a table this wide stays a table


def console(stderr: bool = False) -> "Console":
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    sized = stream.isatty() or bool(os.environ.get("COLUMNS"))
    return Console(stderr=stderr, width=None if sized else WIDE)


def cell(value: Any) -> str:
    return "" if value is None else str(value)


def show(out: "Console", columns: Sequence[str], rows: Iterable[Sequence[Any]], title: Optional[str] = None) -> None:
    """``rows`` under ``columns``: a table if it fits ``out``'s width, else the same table
    without its vertical lines, else one block per row."""
    from rich import box

    cells = [[cell(v) for v in row] for row in rows]
    for style in ({}, {"box": box.SIMPLE_HEAD, "pad_edge": False, "show_edge": False}):
        table = build(columns, cells, title, **style)
        if width(out, table) <= out.width:
            out.print(table)
            return
    vertical(out, columns, cells, title)


def build(columns: Sequence[str], cells: list[list[str]], title: Optional[str], **style: Any) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, title=title, **style)
    for column in table.columns:
        column.overflow = "fold"  # never an ellipsis, even if a width is forced on the table
    for row in cells:
        table.add_row(*(Text(v) for v in row))  # values are text, not markup
    return table


def width(out: "Console", table: Any) -> int:
    """The table's natural width: every cell on one line."""
    from rich.measure import Measurement

    return Measurement.get(out, out.options.update_width(10_000), table).maximum


def vertical(out: "Console", columns: Sequence[str], cells: list[list[str]], title: Optional[str]) -> None:
    """One block per row: each column's name, padded, then its whole value."""
    from rich.text import Text

    pad = max(len(c) for c in columns)
    if title:
        out.print(Text(title, style="italic"))
    for number, row in enumerate(cells):
        if number:
            out.print()
        for name, value in zip(columns, row):
            line = Text(f"  {name:<{pad}}  ", style="bold")
            line.append(value)
            out.print(line, soft_wrap=True)  # a value longer than the line wraps on the terminal, whole


def heading(out: "Console", text: str) -> None:
    """A rule, then the heading, wrapped at word boundaries (a rule's title would be cut)."""
    from rich.text import Text

    out.rule()
    out.print(Text(text, style="bold"))


# --- each command's output for people (the data: entrypoints.machine) ------------------------------
def account(out: "Console", view: dict[str, Any]) -> None:
    """`account show`: the header, balances, positions, open orders and margin."""
    parent = f", sub-account of {view['parent']}" if view["parent"] else ""
    out.print(f"[bold]{view['account']}[/bold]  {view['mode']} mode, VIP {view['vip_level']}{parent}")
    if view["balances"]:
        show(out, ["currency", "cash", "liability", "upl liability", "available", "equity", "borrowable"],
             [[c, b["cash"], b["liability"], b["upl_liability"], b["available"], b["equity"], view["borrowable"].get(c, "-")]
              for c, b in view["balances"].items()])
    if view["positions"]:
        show(out, ["symbol", "qty", "entry", "mark", "unrealized P&L"],
             [[p["symbol"], p["qty"], p["entry_price"], p["mark_price"], p["unrealized_pnl"]] for p in view["positions"]],
             title="positions")
    if view["open_orders"]:
        show(out, ["order", "market", "symbol", "side", "qty", "filled", "price"],
             [[o["order_id"], o["market"], o["symbol"], o["side"], o["qty"], o["filled_qty"], o["price"]] for o in view["open_orders"]],
             title="open orders")
    if view["mode"] == "unified":
        if "margin_error" in view:
            out.print(f"margin: unavailable ({view['margin_error']['message']})")
        else:
            ratio = view["risk_ratio"] if view["risk_ratio"] is not None else "infinite"
            flag = "  [red]LIQUIDATABLE[/red]" if view["liquidatable"] else ""
            out.print(f"adjusted equity {view['adjusted_equity']}  IM {view['initial_margin']}  MM {view['maintenance_margin']}  "
                      f"risk ratio {ratio}  NAV {view['nav']}{flag}", highlight=False)


def replay(out: "Console", shown: dict[str, Any]) -> None:
    """`audit replay`: each account as `account show` draws it."""
    for view in shown["accounts"]:
        account(out, view)


def accounts(out: "Console", rows: list[dict[str, Any]]) -> None:
    """`account list`."""
    show(out, ["account", "parent", "mode", "VIP", "cash", "liabilities", "NAV", "risk ratio"],
         [[r["account"], r["parent"], r["mode"], r["vip_level"], ", ".join(f"{v} {c}" for c, v in r["cash"].items()),
           ", ".join(f"{v} {c}" for c, v in r["liabilities"].items()), r["nav"], shown_ratio(r)] for r in rows])


def shown_ratio(row: dict[str, Any]) -> Any:
    """A unified account's risk ratio, the word when infinite (null in JSON); none for classic."""
    if row["risk_ratio"] is None and row["mode"] == "unified" and row["nav"] is not None:
        return "infinite"
    return row["risk_ratio"]


def history(out: "Console", rows: Iterable[dict[str, Any]]) -> None:
    """`history`: one line per event as it is read (seq, instant, name, its fields as
    key=value), never a table that would hold every row."""
    write = out.file.write
    write(f"{'seq':>6}  {'at':<24}  {'event':<22}  details\n")
    for number, r in enumerate(rows, 1):
        details = ", ".join(f"{k}={detail(k, v)}" for k, v in r.items() if k not in ("type", "at", "seq"))
        write(f"{r['seq']:>6}  {r['at']:<24}  {r['type']:<22}  {details}\n")
        if number % 1000 == 0:
            out.file.flush()
    out.file.flush()


def detail(key: str, value: Any) -> str:
    import json

    if value is None and key in RATIOS:
        return "infinite"
    return value if isinstance(value, str) else json.dumps(value)


def history_cursor(out: "Console", cursor: Optional[str]) -> None:
    """`history --limit`: where the next page starts, or that none follows."""
    out.file.write(f"next cursor: {cursor}\n" if cursor else "no more events\n")
    out.file.flush()


def interest_run(out: "Console", run: Any) -> None:
    """`interest run`: the charges per hour and currency, their totals, the accounts skipped
    (one row per hour charged, not per charge: a catch-up charges every account every hour)."""
    from ledger.domain.money import fmt
    from ledger.read.render import rfc3339

    if run.by_hour:
        show(out, ["hour", "currency", "charges", "interest"],
             [[rfc3339(hour), currency, number, fmt(interest)]
              for (hour, currency), (number, interest) in sorted(run.by_hour.items())])
    summed = ", ".join(f"{fmt(v)} {c}" for c, v in run.totals().items()) or "nothing"
    out.print(f"{run.count} charges on {run.accounts} accounts at {rfc3339(run.at)}: {summed}", highlight=False)
    skipped(out, run.skipped)


def sweep_run(out: "Console", shown: dict[str, Any], accounts: int) -> None:
    """`repayment run`: the actions of the mark, or that it was swept already."""
    if shown["already_swept"]:
        out.print(f"mark {shown['mark']} was swept already: nothing done")
        return
    show(out, ["account", "kind", "details"],
         [[a["account"], a["kind"], ", ".join(f"{k}={v}" for k, v in a.items() if k not in ("account", "kind"))]
          for a in shown["actions"]])
    out.print(f"mark {shown['mark']}: {accounts} accounts examined, {len(shown['actions'])} actions", highlight=False)
    skipped(out, shown["skipped"])


def stress_run(out: "Console", shown: dict[str, Any], accounts: int) -> None:
    """`risk stress`: the shocks, each account the shock changes, the totals."""
    moves = ", ".join(f"{s['currency']} {s['percent']}% ({s['price_before']} → {s['price_after']})" for s in shown["shocks"])
    show(out, ["account", "risk ratio before", "after", "liquidated", "forced repayments", "bad debt"],
         [[a["account"], ratio(a["risk_ratio_before"]), ratio(a["risk_ratio_after"]), "yes" if a["liquidated"] else "",
           amounts(a["forced_repayments"]), amounts(a["bad_debt"])] for a in shown["accounts"]],
         title=f"stress at {shown['as_of']}: {moves}")
    totals = shown["totals"]
    out.print(f"{accounts} accounts examined, {len(shown['accounts'])} changed, {totals['accounts_liquidated']} "
              f"liquidated; bad debt {amounts(totals['bad_debt']) or 'none'}; insurance fund after "
              f"{amounts(totals['insurance_fund_after']) or '0'}", highlight=False)
    skipped(out, shown.get("skipped", []))


def ratio(value: Optional[str]) -> str:
    return "infinite" if value is None else value


def amounts(by_currency: dict[str, str]) -> str:
    return ", ".join(f"{v} {c}" for c, v in by_currency.items())


def skipped(out: "Console", accounts: list[dict[str, str]]) -> None:
    for s in accounts:
        out.print(f"skipped {s['account']}: {s['message']}", highlight=False)


def worker_summary(out: "Console", summary: dict[str, Any]) -> None:
    runs = ", ".join(f"{job} {n}" for job, n in summary["runs"].items()) or "none"
    failures = ", ".join(f"{job} {n}" for job, n in summary["failures"].items()) or "none"
    out.print(f"worker ran from {summary['started']} to {summary['stopped']}: runs {runs}; failures {failures}", highlight=False)
    if summary["last_failure"]:
        out.print(f"last failure ({summary['last_failure']['job']}): {summary['last_failure']['error']}", highlight=False)


def status(out: "Console", report: dict[str, Any]) -> None:
    """`status`: the last runs, what is owed, anything overdue or in the future."""
    interest, sweep = report["interest"], report["sweep"]
    last = interest["last_hour"] or "never"
    ran = f" (last run {interest['last_run_at']})" if interest["last_run_at"] else ""
    if not interest["indebted_accounts"]:
        owed = "no account owes interest"
    elif interest["accounts_due"]:
        owed = f"{interest['accounts_due']} indebted account(s) owe the hour {interest['current_hour']}, not charged yet"
    else:
        owed = f"{interest['indebted_accounts']} indebted account(s), charged through the current hour"
    out.print(f"interest: last hour charged {last}{ran}; {owed}", highlight=False)
    ran = f" (run at {sweep['last_run_at']})" if sweep["last_run_at"] else ""
    out.print(f"sweep: last mark swept {sweep['last_mark'] or 'never'}{ran}; current mark {sweep['current_mark']}", highlight=False)
    for item in report["overdue"]:
        out.print(f"[red]overdue[/red]: {item}", highlight=False)
    for item in report["future"]:
        out.print(f"[red]future[/red]: {item}", highlight=False)
    if report["ok"]:
        out.print("nothing overdue, nothing in the future", highlight=False)


def view_status(out: "Console", rows: list[dict[str, Any]]) -> None:
    """`projections status`."""
    show(out, ["view", "position", "head", "lag"], [[r["view"], r["position"], r["head"], r["lag"]] for r in rows])


RATIOS = ("risk_ratio", "risk_ratio_before", "risk_ratio_after")  # null there: an infinite ratio (F5)


def report_cell(column: str, value: Any, row: dict[str, Any]) -> str:
    """A report's value for people: an infinite risk ratio as a word, a map as "amount currency"."""
    if value is None and (column in RATIOS or (column == "value" and row.get("kind") == "risk")):
        return "infinite"
    if isinstance(value, dict):
        return ", ".join(f"{v} {k}" for k, v in value.items()) or "none"
    return cell(value)


def csv_cell(column: str, value: Any) -> Any:
    """CSV has no null: an infinite risk ratio is the word, a map is "amount currency" pairs."""
    if value is None and column in RATIOS:
        return "infinite"
    return report_cell(column, value, {}) if isinstance(value, dict) else value


def rows_title(kind: str, count: int) -> str:
    return f"{kind} ({count} row{'' if count == 1 else 's'})"


def report(out: "Console", kind: str, columns: list[str], rows: list[dict[str, Any]], totals: dict[str, Any]) -> None:
    """`report KIND`: the rows, then each currency's totals."""
    from ledger.domain.money import fmt

    show(out, columns, [[report_cell(c, r[c], r) for c in columns] for r in rows], title=rows_title(kind, len(rows)))
    for currency, sums in totals.items():
        if sums:
            out.print(f"total {currency}: " + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(sums.items())))


def trial_balance(out: "Console", shown: dict[str, Any]) -> None:
    """`audit trial-balance`: the books per currency, each currency's sum."""
    from decimal import Decimal

    from ledger.domain.money import fmt

    show(out, ["currency", "book", "balance"], [[b["currency"], b["book"], b["balance"]] for b in shown["books"]],
         title=f"trial balance at {shown['as_of']}")
    sums: dict[str, Decimal] = {}
    for b in shown["books"]:
        sums[b["currency"]] = sums.get(b["currency"], Decimal(0)) + Decimal(b["balance"])
    for currency, total in sums.items():
        out.print(f"{currency}: the books sum to {fmt(total)}", highlight=False)


def findings(out: "Console", found: list[dict[str, Any]], checked: int, ok: bool) -> None:
    """`audit verify`: each finding, then the count."""
    for finding in found:
        out.print(f"[red]{finding['kind']}[/red]: {finding['detail']}", highlight=False)
    out.print(f"{checked} events checked: " + ("no findings" if ok else f"{len(found)} findings"))
