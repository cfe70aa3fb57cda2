"""What a new mark price does to one account holding a futures position (§4, B1/R1).

The one place a mark change reaches an account's state: ``set_price`` calls it for every
unified holder of BASE-USDT, and ``ledger risk stress`` (workers/stress.py) calls it on its
copies of the accounts, so a stress scenario moves an account exactly as the real mark would.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ledger.domain.account import Account
from ledger.domain.money import ZERO
from ledger.domain.platform import Platform


def mark_moved(holder: Account, upl_before: Decimal, platform: Platform, at: datetime) -> None:
    """Book the change of ``holder``'s unrealised P&L since ``upl_before`` (its UPL at the
    previous marks) now that ``platform`` carries the new mark: a shortfall borrowed (B1), a
    gain repaid, the UPL-generated tag kept within the loss (``Account.settle_futures``)."""
    gain = min(holder.upl(platform), ZERO) - min(upl_before, ZERO)
    holder.settle_futures(platform, at, gain=gain)
