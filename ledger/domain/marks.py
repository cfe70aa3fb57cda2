"""What a new mark price does to one account holding a futures position (§4, B1/R1).

The one place a mark change reaches an account's state: a tick itself books nothing; the
unit of work books the derived figure when a rule takes the account up (the sweep at its
mark among them), and ``ledger risk stress`` (workers/stress.py) calls it on its copies of the
accounts at the shocked marks, so a stress scenario moves an account exactly as the real
marks and the sweep then would.
"""
from __future__ import annotations

from datetime import datetime

from ledger.domain.account import Account
from ledger.domain.platform import Platform


def mark_moved(holder: Account, platform: Platform, at: datetime) -> bool:
    """Book ``holder``'s UPL-generated liability to the figure derived at ``platform``'s marks
    (``Account.mark_upl``: a tick books nothing, a rule instant books the difference; issue 15).
    True if anything was booked."""
    return holder.mark_upl(platform, at)
