"""Time on the ledger's grid: instants in UTC, hours (interest, SPEC §8) and 5-minute marks
(the sweep, SPEC §9).  The domain never reads the clock; these only name and round instants
they are given."""
from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(at: datetime) -> str:
    """``at`` as RFC 3339 in UTC, ``Z`` for the zone (SPEC §12)."""
    text = at.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")
