"""Output that can be trusted (issue 18, point 5): one format for instants, one type per
field across events, JSON values that are JSON, a word for an infinite risk ratio, empty
answers said so — output only: the stored events are not touched."""
from __future__ import annotations

import json
import re

from tests.helpers import ledger_cli
from tests.test_projections import cli_world

INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")  # RFC 3339 UTC, no needless fraction


def test_one_format_and_one_type_everywhere(db_url: str) -> None:
    cli_world(db_url)
    assert ledger_cli(db_url, "projections", "run").exit_code == 0
    charged = json.loads(ledger_cli(db_url, "interest", "run", "--hour", "2026-03-01T03:00:00Z", "--json").stdout)
    assert charged["charges"] and all(INSTANT.match(c["hour"]) for c in charged["charges"])
    assert ledger_cli(db_url, "projections", "run").exit_code == 0
    rows = json.loads(ledger_cli(db_url, "report", "interest", "--format", "json").stdout)
    assert {c["hour"] for c in charged["charges"]} <= {r["hour"] for r in rows}  # the same text for the same hour
    for kind in ("interest", "repayments", "liquidations", "mode-switches", "forced-swaps", "movements", "alerts"):
        for row in json.loads(ledger_cli(db_url, "report", kind, "--format", "json").stdout):
            for column in ("hour", "at", "started_at", "completed_at"):
                if row.get(column) is not None:
                    assert INSTANT.match(row[column]), (kind, column, row[column])
            for value in row.values():  # no JSON inside strings
                assert not (isinstance(value, str) and value[:1] in "{["), (kind, row)
    [liq] = json.loads(ledger_cli(db_url, "report", "liquidations", "--format", "json").stdout)
    assert liq["bad_debt"] == {"USDT": "0.60003"} and liq["risk_ratio_before"] is None
    # upl_generated: an amount (decimal string) on every event that has it
    for account in ("alice", "bob", "dave"):
        history = json.loads(ledger_cli(db_url, "history", account, "--json").stdout)
        types = {type(e["upl_generated"]) for e in history if "upl_generated" in e}
        assert types == {str}, (account, history)
        assert all(INSTANT.match(e["at"]) for e in history)
    # an infinite ratio: null in JSON, a word for people
    assert "infinite" in ledger_cli(db_url, "report", "liquidations").stdout
    # audit replay before the first event says so
    before = ledger_cli(db_url, "audit", "replay", "--as-of", "2020-01-01T00:00:00Z", "--json")
    assert before.exit_code == 0 and json.loads(before.stdout)["accounts"] == []
    assert "before the first account was opened" in before.stderr
