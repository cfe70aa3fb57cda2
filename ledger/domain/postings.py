"""Double entry (SPEC D1): every value movement as balanced postings between books.

``postings(aggregate_id, event)`` gives the (book, currency, amount) legs of one stored event;
per currency they sum to zero.  Books: ``user:<id>:wallet`` (all wallets of an account),
``user:<id>:liability`` (what it owes, negative), ``platform:interest_income``,
``platform:insurance_fund``, ``platform:swap_desk``, ``platform:futures_clearing``,
``platform:spot_market`` (the other side of spot trades), ``platform:fee_income`` and
``external`` (deposits, withdrawals).  The lending pool's claim on the users is the negated
sum of the user liability books, which ``pool/<currency>`` must equal (checked by the audit).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

Posting = tuple[str, str, Decimal]


def postings(aggregate_id: str, e: Any) -> list[Posting]:
    kind, _, account = aggregate_id.partition("/")
    if kind != "account":
        return []
    name = type(e).__name__
    wallet, owed = f"user:{account}:wallet", f"user:{account}:liability"
    if name == "Deposited":
        return [(wallet, e.currency, e.amount), ("external", e.currency, -e.amount)]
    if name == "Withdrawn":
        return [(wallet, e.currency, -e.amount), ("external", e.currency, e.amount)]
    if name == "TransferredOut":  # both legs on the sending side, so each event balances
        return [(wallet, e.currency, -e.amount), (f"user:{e.to_account}:wallet", e.currency, e.amount)]
    if name == "OrderFilled":
        legs: list[Posting] = []
        counterparty = "platform:spot_market" if e.position is None else "platform:futures_clearing"
        for currency, delta in e.cash.items():
            delta = Decimal(delta)
            fee = e.fee if currency == "USDT" else Decimal(0)
            legs += [(wallet, currency, delta), (counterparty, currency, -(delta + fee))]
            if fee:
                legs.append(("platform:fee_income", currency, fee))
        if "USDT" not in e.cash and e.fee:  # a fee exactly equal to a realised gain: no cash delta
            legs += [("platform:futures_clearing", "USDT", -e.fee), ("platform:fee_income", "USDT", e.fee)]
        return legs
    if name == "Borrowed":
        return [(wallet, e.currency, e.amount), (owed, e.currency, -e.amount)]
    if name == "Repaid":
        return [(wallet, e.currency, -e.amount), (owed, e.currency, e.amount)]
    if name == "InterestCharged":
        return [(wallet, e.currency, -e.paid), (owed, e.currency, -e.capitalized),
                ("platform:interest_income", e.currency, e.paid + e.capitalized)]
    if name == "AutoSwapped":
        return [(wallet, e.from_currency, -e.from_amount), ("platform:swap_desk", e.from_currency, e.from_amount),
                ("platform:swap_desk", e.to_currency, -e.to_amount), (wallet, e.to_currency, e.to_amount)]
    if name == "PositionLiquidated":
        return [(wallet, "USDT", e.realized_pnl), ("platform:futures_clearing", "USDT", -e.realized_pnl)]
    if name == "BadDebtWrittenOff":
        return [(owed, e.currency, e.amount), ("platform:insurance_fund", e.currency, -e.amount)]
    return []  # mode switches, own-wallet transfers, TransferredIn (posted with TransferredOut), tags


def unbalanced(legs: list[Posting]) -> dict[str, Decimal]:
    """Per currency sums that are not zero (empty when the event balances)."""
    sums: dict[str, Decimal] = {}
    for _, currency, amount in legs:
        sums[currency] = sums.get(currency, Decimal(0)) + amount
    return {c: v for c, v in sums.items() if v != 0}
