"""Time on the ledger's grid: instants in UTC, hours (interest, SPEC §8) and 5-minute marks
(the sweep, SPEC §9).  The domain never reads the clock; these only name and round instants
they are given."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

HOUR = timedelta(hours=1)  # I1: interest accrues per whole hour
MARK = timedelta(minutes=5)  # L1-L4: the sweep runs at every 5-minute mark
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")


def floor_hour(at: datetime) -> datetime:
    """The last top of an hour at or before ``at``."""
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    """The first top of an hour at or after ``at`` (an event at exactly H counts for H)."""
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


def floor_mark(at: datetime) -> datetime:
    """The last 5-minute mark at or before ``at``."""
    return at.replace(minute=at.minute - at.minute % 5, second=0, microsecond=0)


def rfc3339(at: datetime) -> str:
    """``at`` as RFC 3339 in UTC, ``Z`` for the zone (SPEC §12)."""
    text = at.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def parse_instant(value: Any) -> datetime:
    """An RFC 3339 timestamp (SPEC §12: with its zone) as a UTC instant: the `at` of a command
    and the instants of the command line's options.  Anything else is a ValueError."""
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")
    return datetime.fromisoformat(value.replace("z", "Z")).astimezone(timezone.utc)
