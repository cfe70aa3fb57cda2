"""Decimal money: parsing limits, rounding to a currency's precision (W1, I3).

Every amount, price and rate is a ``Decimal``.  The context below is wide enough that
products of the largest accepted quantity and price stay exact.
"""
from __future__ import annotations

import decimal
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

# Inputs are bounded (see ledger.domain.commands): 15 integer digits, 18 decimals.  A product of
# two such numbers needs 66 digits; 80 leaves room for sums.  Traps make any overflow loud.
_CONTEXT = decimal.Context(
    prec=80,
    rounding=ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)
decimal.DefaultContext.prec = _CONTEXT.prec
decimal.setcontext(_CONTEXT)

ZERO = Decimal(0)
ONE = Decimal(1)
ENTRY_PRICE_PLACES = 12  # average entry prices keep 12 decimals (O3)


def quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def round_up(amount: Decimal, places: int) -> Decimal:
    """Toward +infinity at ``places`` decimals: what the user owes is never rounded away (I3)."""
    return amount.quantize(quantum(places), rounding=ROUND_CEILING)


def round_down(amount: Decimal, places: int) -> Decimal:
    """Toward -infinity at ``places`` decimals: what the user may take is never overstated."""
    return amount.quantize(quantum(places), rounding=ROUND_FLOOR)


def round_even(amount: Decimal, places: int) -> Decimal:
    return amount.quantize(quantum(places), rounding=ROUND_HALF_EVEN)


def decimal_places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def fmt(amount: Decimal | None) -> str | None:
    """A decimal as a plain string: no exponent, no trailing zeros ("0.00000001", "25000")."""
    if amount is None:
        return None
    if amount == 0:
        return "0"
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
