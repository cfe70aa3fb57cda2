"""`ledger report KIND --format html`: one self-contained page (no script, no network): the
report's table and, where people would rather look than read, a bar chart drawn here as
inline SVG — interest per hour and currency, forced repayments and liquidations over time,
the distribution of borrowers' risk ratios."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal
from html import escape
from typing import Any, Callable

from ledger.domain.money import fmt

BAR = "#1f6fd1"  # the bars' colour (tests look for it in the screenshot)
WIDTH, HEIGHT, PAD = 1000, 260, 40


def bars(title: str, points: list[tuple[str, Decimal]], top: Decimal | None = None) -> str:
    """A bar chart of ``points`` (label, non-negative value) as an SVG element, its scale up
    to ``top`` (default: the largest value; charts to compare side by side share one)."""
    top = top or max((v for _, v in points), default=Decimal(0)) or Decimal(1)
    step = (WIDTH - 2 * PAD) / max(len(points), 1)  # float-ok: pixels
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{PAD}" y="20" font-size="14" font-family="sans-serif">{escape(title)}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#444"/>']
    for i, (label, value) in enumerate(points):
        h = float(value / top) * (HEIGHT - 2 * PAD - 10)  # float-ok: pixels
        x = PAD + i * step
        parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{step * 0.8:.1f}" '
                     f'height="{h:.1f}" fill="{BAR}"><title>{escape(label)}: {value}</title></rect>')
        if len(points) <= 24 or i % max(1, len(points) // 12) == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="middle" '
                         f'font-family="sans-serif">{escape(label)}</text>')
    parts.append(f'<text x="{PAD - 4}" y="{PAD}" font-size="10" text-anchor="end" font-family="sans-serif">{fmt(top)}</text>')
    return "".join(parts) + "</svg>"


def per(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], str],
        value: Callable[[dict[str, Any]], Decimal]) -> list[tuple[str, Decimal]]:
    sums: dict[str, Decimal] = {}
    for row in rows:
        sums[key(row)] = sums.get(key(row), Decimal(0)) + value(row)
    return sorted(sums.items())


def hour(text: str | None) -> str:
    """The hour an instant (RFC 3339 text) falls in."""
    return (text or "")[:13] + ":00:00Z"


def interest_charts(rows: list[dict[str, Any]]) -> list[str]:
    return [bars(f"interest per hour, {c}", per([r for r in rows if r["currency"] == c], lambda r: hour(r["hour"]),
                                               lambda r: Decimal(r["interest"])))
            for c in sorted({r["currency"] for r in rows})]


def over_time(what: str, column: str) -> Callable[[list[dict[str, Any]]], list[str]]:
    return lambda rows: [bars(f"{what} per hour", per(rows, lambda r: hour(r[column]), lambda r: Decimal(1)))] if rows else []


RATIO_BUCKETS = ("<0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1", ">=1", "infinite")


def ratio_bucket(ratio: str | None) -> str:
    if ratio is None:
        return "infinite"
    value = Decimal(ratio)
    return RATIO_BUCKETS[min(int(value / Decimal("0.2")), 5)]


def risk_distribution(rows: list[dict[str, Any]]) -> list[str]:
    ratios = {r["account"]: r.get("risk_ratio") for r in rows}  # one ratio per account
    counted = Counter(ratio_bucket(v) for v in ratios.values())
    return [bars("borrowers by risk ratio", [(b, Decimal(counted.get(b, 0))) for b in RATIO_BUCKETS])] if rows else []


CHARTS: dict[str, Callable[[list[dict[str, Any]]], list[str]]] = {
    "interest": interest_charts, "repayments": over_time("repayments", "at"),
    "liquidations": over_time("liquidations", "started_at"), "forced-swaps": over_time("forced swaps", "at"),
    "alerts": over_time("risk alerts", "at"), "borrowers": risk_distribution,
}


RATIOS = ("risk_ratio", "risk_ratio_before", "risk_ratio_after")  # null there: an infinite ratio (F5)


def text(value: Any, column: str = "") -> str:
    if value is None:
        return "infinite" if column in RATIOS else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{v} {k}" for k, v in value.items())
    return str(value)


def page(kind: str, columns: list[str], rows: list[dict[str, Any]], totals: dict[str, dict[str, Decimal]]) -> str:
    """The whole page for ``rows`` (plain data: strings and nulls, as the JSON output)."""
    count = f"{len(rows)} row{'' if len(rows) == 1 else 's'}"
    charts = "".join(f"<figure>{svg}</figure>" for svg in CHARTS.get(kind, lambda _: [])(rows))
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(text(r.get(c), c))}</td>" for c in columns) + "</tr>" for r in rows)
    sums = "".join(f"<p>total {escape(c)}: " + escape(", ".join(f"{k} {fmt(v)}" for k, v in sorted(s.items()))) + "</p>"
                   for c, s in totals.items() if s)
    empty = "" if rows else "<p>no rows: nothing to report</p>"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(kind)} report</title>'
            "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}th{background:#eee}</style></head><body>"
            f"<h1>{escape(kind)} ({count})</h1>{charts}{empty}<table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{sums}</body></html>\n")


def stress_page(shown: dict[str, Any]) -> str:
    """`risk stress --format html`: the risk-ratio distribution of the accounts the shock
    changes, before and after, as two bar charts over the same buckets, then their table."""
    rows = shown["accounts"]
    moves = ", ".join(f"{s['currency']} {s['percent']}%" for s in shown["shocks"])
    counts = {when: Counter(ratio_bucket(r[f"risk_ratio_{when}"]) for r in rows) for when in ("before", "after")}
    top = Decimal(max((n for c in counts.values() for n in c.values()), default=0))
    charts = "".join(
        "<figure>" + bars(f"accounts by risk ratio {when} ({moves})",
                          [(b, Decimal(counted.get(b, 0))) for b in RATIO_BUCKETS], top) + "</figure>"
        for when, counted in counts.items())
    columns = ["account", "risk_ratio_before", "risk_ratio_after", "liquidated", "forced_repayments", "bad_debt"]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(text(r.get(c), c))}</td>" for c in columns) + "</tr>" for r in rows)
    totals = shown["totals"]
    summary = (f"<p>accounts liquidated: {totals['accounts_liquidated']}</p>"
               f"<p>bad debt: {escape(text(totals['bad_debt']) or 'none')}</p>"
               f"<p>insurance fund after: {escape(text(totals['insurance_fund_after']) or '0')}</p>")
    empty = "" if rows else "<p>no account is changed by this shock</p>"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>stress at {escape(shown["as_of"])}</title>'
            "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}th{background:#eee}</style></head><body>"
            f"<h1>stress at {escape(shown['as_of'])}: {escape(moves)} ({len(rows)} accounts changed)</h1>{charts}"
            f"{summary}{empty}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n")
