"""Plain-data rendering of events and values for machine output (SPEC §12, §14)."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.domain import ids
from ledger.domain.account import Account
from ledger.domain.base import LedgerAggregate, LedgerEvent, event_fields, event_name
from ledger.domain.money import fmt
from ledger.domain.times import rfc3339


def plain(value: Any) -> Any:
    """Decimals → strings, datetimes → RFC 3339 UTC, containers recursively."""
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


def event_dict(agg_id: str, event: LedgerEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"type": event_name(event)}
    kind, _, name = agg_id.partition("/")
    if kind == "account":
        out["account"] = name
    elif kind != "platform":
        out["aggregate"] = agg_id
    out.update(plain(event_fields(event)))
    for field_name, shown in SHOWN.get(type(event), {}).items():
        out[field_name] = shown(event)
    return out


# One type per field across events in output (the stored events stay as they are): a field
# that one event stores as a flag and others as an amount is shown as the amount everywhere.
SHOWN: dict[type, dict[str, Any]] = {
    # Repaid and BadDebtWrittenOff: the UPL-generated part repaid or written off; Borrowed: all of it, or none
    Account.Borrowed: {"upl_generated": lambda e: fmt(e.amount if e.upl_generated else Decimal(0))},
}


PUBLIC_AGGREGATES = (ids.ACCOUNT_PREFIX, ids.PLATFORM)


def result_events(pairs: list[tuple[LedgerAggregate, LedgerEvent]]) -> list[dict[str, Any]]:
    """The events a command answers with: accounts' and the platform's parameter changes
    (not index upkeep, nor the platform's creation with the defaults)."""
    return [
        event_dict(agg.id, e) for agg, e in pairs
        if agg.id.startswith(PUBLIC_AGGREGATES) and event_name(e) != "PlatformInitialised"
    ]


def dumps(value: Any) -> str:
    return json.dumps(plain(value), separators=(",", ":"))
