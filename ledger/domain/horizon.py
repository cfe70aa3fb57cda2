"""T4: no instant from the future.  The ledger accepts no `at` (and no run time) later than its
clock plus an allowance for clock skew between the exchange's services.

The domain never reads the clock: callers pass ``latest``, the latest instant they accept
(the edge computes it from the wall clock and the configured allowance).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from ledger.domain.errors import LedgerError
from ledger.domain.times import rfc3339

FUTURE_ALLOWANCE = timedelta(seconds=60)  # T4's default; LEDGER_FUTURE_ALLOWANCE_SECONDS at the edge
MAX_FUTURE_ALLOWANCE = 86_400  # seconds: a day of clock skew is a broken clock, not skew


def check_not_future(at: datetime, latest: datetime) -> None:
    """T4: ``at`` no later than ``latest`` (the clock plus the allowance), else future_time."""
    if at > latest:
        raise LedgerError(
            "future_time",
            f"{rfc3339(at)} is in the future: the ledger accepts instants up to {rfc3339(latest)} "
            "(its clock plus the allowance)",
        )
