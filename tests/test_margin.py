"""Unit tests of ledger.domain.margin (SPEC §5 F1-F6, §6 B2, and the margin parts of O1, O3,
W2, W4, L3) with hand-computed numbers.

Every expected value is worked out by hand in the comment next to it; defaults are the §4
ones: BTC tiers 0.98 to 500 / 0.97 to 1000 / 0.95 above, ETH 0.95, others 0; liabilities
imr/mmr 0.2/0.1; futures 0.1/0.05; quotas USDT 1,000,000, BTC 20, ETH 300, others 0.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ledger.domain.errors import LedgerError
from ledger.domain.margin import (
    Margin,
    MarginState,
    Position,
    account_borrow_limit,
    borrow_limit,
    closing_pnl,
    collateral_value,
    equities,
    less_unrealized_loss,
    margin,
    margin_after,
    opening_qty,
    order_margin,
    total_upl,
    unrealized_pnl,
)
from ledger.domain.platform import Platform, default_parameters

D = Decimal
AT = datetime(2026, 3, 1, tzinfo=timezone.utc)


def platform(**prices: str) -> Platform:
    p = Platform(parameters=default_parameters(), at=AT)
    for currency, price in prices.items():
        p.set_price(currency, D(price), AT)
    return p


def state(cash: dict[str, str] | None = None, liabilities: dict[str, str] | None = None,
          positions: list[Position] | None = None) -> MarginState:
    return MarginState(
        {c: D(v) for c, v in (cash or {}).items()},
        {c: D(v) for c, v in (liabilities or {}).items()},
        positions or [],
    )


def given_margin(ae: str, im: str) -> Margin:
    """A Margin with just the numbers B2 reads (AE and IM)."""
    return Margin(equity={}, upl=D(0), adjusted_equity=D(ae), initial_margin=D(im),
                  maintenance_margin=D(0), nav=D(0), risk_ratio=D(0), liquidatable=False)


# --- F1 equity ------------------------------------------------------------------------------
def test_f1_equity_is_cash_minus_liability_plus_upl_for_usdt_only() -> None:
    """F1: equity_c = cash_c − liab_c, + UPL for USDT only."""
    p = platform(BTC="52000")
    s = state(cash={"USDT": "1000", "BTC": "2"}, liabilities={"USDT": "300", "BTC": "0.5"},
              positions=[Position("BTC-USDT", D(1), D(50000))])
    # UPL = 1 × (52000 − 50000) = 2000
    upl = total_upl(s.positions, p)
    assert upl == D(2000)
    eq = equities(s, upl)
    # USDT: 1000 − 300 + 2000 = 2700; BTC: 2 − 0.5 = 1.5 (no UPL on BTC)
    assert eq == {"USDT": D(2700), "BTC": D("1.5")}


def test_f1_usdt_equity_present_without_usdt_balance_and_short_upl_sign() -> None:
    """F1 / O3: a short's UPL = qty × (mark − entry) with qty < 0; USDT carries it even with no cash."""
    p = platform(ETH="2500")
    short = Position("ETH-USDT", D(-2), D(3000))
    # −2 × (2500 − 3000) = +1000: a short gains when the mark falls
    assert unrealized_pnl(short, D(2500)) == D(1000)
    s = state(cash={"ETH": "1"}, positions=[short])
    m = margin(s, p)
    assert m.upl == D(1000)
    assert m.equity == {"ETH": D(1), "USDT": D(1000)}


# --- F2 collateral value ----------------------------------------------------------------------
def test_f2_btc_tiers_are_progressive() -> None:
    """F2: 1200 BTC at 50000 = 50000 × (500×0.98 + 500×0.97 + 200×0.95)."""
    p = platform(BTC="50000")
    # 490 + 485 + 190 = 1165 BTC-equivalent × 50000 = 58,250,000
    assert collateral_value("BTC", D(1200), p) == D(58_250_000)
    # exactly 500: 500 × 0.98 = 490 → 24,500,000
    assert collateral_value("BTC", D(500), p) == D(24_500_000)
    # 700: 490 + 200 × 0.97 = 684 → 34,200,000
    assert collateral_value("BTC", D(700), p) == D(34_200_000)
    # 1000: 490 + 485 = 975 → 48,750,000
    assert collateral_value("BTC", D(1000), p) == D(48_750_000)
    # 0.5 BTC: 0.49 × 50000 = 24,500
    assert collateral_value("BTC", D("0.5"), p) == D(24_500)


def test_f2_custom_tiers_via_set_collateral_tiers() -> None:
    """F2 / §4 set_collateral_tiers: the new tiers replace the defaults, still progressive."""
    p = platform(ETH="2000")
    p.set_collateral_tiers("ETH", [[D(10), D("0.9")], [D(20), D("0.5")], [None, D(0)]], AT)
    # 25 ETH: 10×0.9 + 10×0.5 + 5×0 = 14 → × 2000 = 28,000
    assert collateral_value("ETH", D(25), p) == D(28_000)
    # 15 ETH: 9 + 2.5 = 11.5 → 23,000
    assert collateral_value("ETH", D(15), p) == D(23_000)


def test_f2_usdt_eth_and_zero_ratio_currency() -> None:
    """F2: USDT ratio 1, ETH 0.95, a currency without tiers (KCS) counts 0."""
    p = platform(ETH="2000", KCS="10")
    assert collateral_value("USDT", D("1234.5"), p) == D("1234.5")
    # 3 ETH × 0.95 × 2000 = 5700
    assert collateral_value("ETH", D(3), p) == D(5700)
    assert collateral_value("KCS", D(100), p) == D(0)
    # in a margin: KCS adds to NAV (100 × 10 = 1000) but nothing to AE
    m = margin(state(cash={"USDT": "500", "KCS": "100"}), p)
    assert m.adjusted_equity == D(500)
    assert m.nav == D(1500)


def test_f2_negative_or_zero_equity_has_zero_collateral_value() -> None:
    """F2: CV uses max(equity, 0): negative equity gives 0 CV (F3 subtracts it instead)."""
    p = platform(BTC="50000")
    assert collateral_value("BTC", D("-1"), p) == D(0)
    assert collateral_value("BTC", D(0), p) == D(0)


# --- F3 adjusted equity -------------------------------------------------------------------
def test_f3_adjusted_equity_subtracts_negative_equity_at_price() -> None:
    """F3: AE = Σ CV − Σ price × max(−equity, 0)."""
    p = platform(BTC="50000")
    # USDT equity 1000; BTC equity 0.1 − 0.2 = −0.1 → −0.1 × 50000 = −5000 → AE = −4000
    m = margin(state(cash={"USDT": "1000", "BTC": "0.1"}, liabilities={"BTC": "0.2"}), p)
    assert m.equity == {"USDT": D(1000), "BTC": D("-0.1")}
    assert m.adjusted_equity == D(-4000)


def test_f3_f4_f5_f6_mixed_account() -> None:
    """F3-F6 on one account: USDT, ETH collateral, a BTC short liability."""
    p = platform(BTC="50000", ETH="2000")
    s = state(cash={"USDT": "10000", "ETH": "5", "BTC": "0.05"},
              liabilities={"BTC": "0.15", "USDT": "2000"})
    m = margin(s, p)
    # F1: USDT 10000 − 2000 = 8000; ETH 5; BTC 0.05 − 0.15 = −0.1
    assert m.equity == {"USDT": D(8000), "ETH": D(5), "BTC": D("-0.1")}
    # F3: CV 8000 + 5 × 0.95 × 2000 (= 9500) − 0.1 × 50000 (= 5000) = 12500
    assert m.adjusted_equity == D(12500)
    # F4: IM = 0.15 × 50000 × 0.2 (1500) + 2000 × 0.2 (400) = 1900; MM = 750 + 200 = 950
    assert m.initial_margin == D(1900)
    assert m.maintenance_margin == D(950)
    # F5: 950 / 12500 = 0.076
    assert m.risk_ratio == D("0.076")
    assert m.liquidatable is False
    # F6: 8000 + 5 × 2000 − 0.1 × 50000 = 13000
    assert m.nav == D(13000)


# --- F4 initial / maintenance margin --------------------------------------------------------
def test_f4_liabilities_and_positions_default_rates() -> None:
    """F4: liabilities 0.2/0.1 of price × liab; positions 0.1/0.05 of |qty| × mark."""
    p = platform(BTC="48000", ETH="2000")
    s = state(cash={"USDT": "100000"}, liabilities={"ETH": "10"},
              positions=[Position("BTC-USDT", D(-2), D(50000))])
    m = margin(s, p)
    # ETH liability 10 × 2000 = 20000 → IM 4000, MM 2000
    # short 2 BTC: |−2| × 48000 = 96000 → IM 9600, MM 4800
    assert m.initial_margin == D(13600)
    assert m.maintenance_margin == D(6800)
    # UPL −2 × (48000 − 50000) = +4000 → USDT equity 104000; ETH equity −10 → −20000
    assert m.adjusted_equity == D(84000)


def test_f4_per_currency_and_per_symbol_override() -> None:
    """F4 / §4 set_margin_rates: a currency's own imr/mmr for its liability, a symbol's for its position."""
    p = platform(BTC="50000")
    p.set_margin_rates("BTC", D("0.5"), D("0.25"), AT)
    p.set_margin_rates("BTC-USDT", D("0.2"), D("0.1"), AT)
    s = state(cash={"USDT": "100000", "BTC": "1"}, liabilities={"BTC": "1", "USDT": "1000"},
              positions=[Position("BTC-USDT", D("0.5"), D(50000))])
    m = margin(s, p)
    # BTC liability 50000 × 0.5 = 25000 (MM × 0.25 = 12500); USDT liability keeps 0.2/0.1: 200/100
    # position 0.5 × 50000 = 25000 × 0.2 = 5000 (MM × 0.1 = 2500)
    assert m.initial_margin == D(25000 + 200 + 5000)
    assert m.maintenance_margin == D(12500 + 100 + 2500)


def test_f4_zero_liability_entry_needs_no_price() -> None:
    """F4: a currency listed with 0 owed adds nothing (and needs no price)."""
    p = platform()
    m = margin(state(cash={"USDT": "10"}, liabilities={"BTC": "0"}), p)
    assert (m.initial_margin, m.maintenance_margin) == (D(0), D(0))


# --- F5 risk ratio --------------------------------------------------------------------------
def test_f5_zero_when_no_maintenance_margin() -> None:
    """F5: risk_ratio 0 when MM = 0 — even with AE = 0."""
    p = platform()
    for s in (state(), state(cash={"USDT": "100"})):
        m = margin(s, p)
        assert m.maintenance_margin == 0
        assert m.risk_ratio == D(0)
        assert m.liquidatable is False


def test_f5_ratio_and_liquidation_threshold() -> None:
    """F5 / L3: risk_ratio = MM / AE; at ≥ the liquidation threshold (1.0) it is liquidatable."""
    p = platform(BTC="50000")
    pos = [Position("BTC-USDT", D("0.04"), D(50000))]
    # MM = 0.04 × 50000 × 0.05 = 100; AE = cash 100 (UPL 0) → ratio exactly 1
    m = margin(state(cash={"USDT": "100"}, positions=pos), p)
    assert m.maintenance_margin == D(100)
    assert m.risk_ratio == D(1)
    assert m.liquidatable is True
    # AE 200 → 100 / 200 = 0.5
    m = margin(state(cash={"USDT": "200"}, positions=pos), p)
    assert m.risk_ratio == D("0.5")
    assert m.liquidatable is False


def test_f5_infinite_when_adjusted_equity_not_positive() -> None:
    """F5: AE ≤ 0 with MM > 0 → infinite (None) and liquidatable."""
    p = platform(BTC="40000")
    # long 1 BTC from 50000 marked 40000: UPL −10000; cash 5000 → AE −5000; MM 40000 × 0.05 = 2000
    m = margin(state(cash={"USDT": "5000"}, positions=[Position("BTC-USDT", D(1), D(50000))]), p)
    assert m.adjusted_equity == D(-5000)
    assert m.maintenance_margin == D(2000)
    assert m.risk_ratio is None
    assert m.liquidatable is True
    # AE exactly 0: cash 10000 → 10000 − 10000 = 0 → still infinite
    m = margin(state(cash={"USDT": "10000"}, positions=[Position("BTC-USDT", D(1), D(50000))]), p)
    assert m.adjusted_equity == D(0)
    assert m.risk_ratio is None
    assert m.liquidatable is True


# --- F6 NAV ------------------------------------------------------------------------------------
def test_f6_nav_includes_upl_and_zero_ratio_assets() -> None:
    """F6: NAV = Σ price × equity, USDT equity including UPL."""
    p = platform(BTC="51000", ETH="2000", KCS="8")
    s = state(cash={"USDT": "1000", "BTC": "0.5", "KCS": "50"}, liabilities={"ETH": "1"},
              positions=[Position("BTC-USDT", D(2), D(50000))])
    m = margin(s, p)
    # UPL 2 × 1000 = 2000 → USDT 3000; BTC 0.5 × 51000 = 25500; KCS 50 × 8 = 400; ETH −2000
    assert m.nav == D(3000 + 25500 + 400 - 2000)


# --- no_price ----------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [
    state(cash={"USDT": "100", "BTC": "1"}),  # BTC collateral needs its price (F2)
    state(cash={"USDT": "100"}, liabilities={"BTC": "0.1"}),  # BTC liability (F3, F4)
    state(cash={"USDT": "100"}, positions=[Position("ETH-USDT", D(1), D(2000))]),  # UPL, F4
    state(cash={"USDT": "100", "KCS": "5"}),  # zero-ratio asset still counts in NAV (F6)
], ids=["collateral", "liability", "position", "zero-ratio-nav"])
def test_missing_price_raises_no_price(s: MarginState) -> None:
    """§4: a needed price that is missing raises no_price, never a silent zero."""
    with pytest.raises(LedgerError) as err:
        margin(s, platform())
    assert err.value.code == "no_price"


def test_borrow_limit_without_price_raises_no_price() -> None:
    """B2 / §4: the margin term of a currency without a price cannot be computed."""
    with pytest.raises(LedgerError) as err:
        borrow_limit("ETH", D(0), 0, given_margin("10000", "0"), platform(), D(0))
    assert err.value.code == "no_price"


# --- B2 borrow limit -----------------------------------------------------------------------------
def test_b2_margin_term() -> None:
    """B2: max(0, AE − IM) / (price × imr)."""
    p = platform(BTC="50000")
    # (10000 − 1000) / (50000 × 0.2) = 0.9 BTC (quota 20 is not binding)
    lim = borrow_limit("BTC", D(0), 0, given_margin("10000", "1000"), p, D(0))
    assert (lim.personal, lim.limit) == (D("0.9"), D("0.9"))
    # USDT: 9000 / 0.2 = 45000
    assert borrow_limit("USDT", D(0), 0, given_margin("10000", "1000"), p, D(0)).limit == D(45000)


def test_b2_quota_term() -> None:
    """B2: quota_c(vip) − liab_c; a VIP level's own quota overrides the all-levels one."""
    p = platform(BTC="50000")
    big = given_margin("100000000", "0")  # margin term 100,000,000 / 10000 = 10000 BTC
    # 20 − 5 = 15
    assert borrow_limit("BTC", D(5), 0, big, p, D(0)).limit == D(15)
    p.set_borrow_quota("BTC", D(50), 3, AT)
    # VIP 3: 50 − 5 = 45; VIP 0 still 20 − 5 = 15
    assert borrow_limit("BTC", D(5), 3, big, p, D(0)).limit == D(45)
    assert borrow_limit("BTC", D(5), 0, big, p, D(0)).limit == D(15)
    # KCS has no quota (others 0) → 0
    p.set_price("KCS", D(10), AT)
    assert borrow_limit("KCS", D(0), 0, big, p, D(0)).limit == D(0)


def test_b2_platform_term() -> None:
    """B2: platform_limit − platform_liab caps the limit; the personal part is kept apart."""
    p = platform(BTC="50000")
    p.set_platform_borrow_limit("BTC", D(10), AT)
    m = given_margin("100000", "0")  # margin term 100000 / 10000 = 10; quota 20 → personal 10
    lim = borrow_limit("BTC", D(0), 0, m, p, D("9.5"))
    assert lim.personal == D(10)
    assert lim.limit == D("0.5")  # 10 − 9.5
    # platform already over its limit: floored at 0
    assert borrow_limit("BTC", D(0), 0, m, p, D(12)).limit == D(0)


def test_b2_floored_at_zero() -> None:
    """B2: floored at 0 when the quota is used up or IM exceeds AE."""
    p = platform(BTC="50000")
    # owed 25 > quota 20 → 20 − 25 < 0 → 0
    lim = borrow_limit("BTC", D(25), 0, given_margin("1000000", "0"), p, D(0))
    assert (lim.personal, lim.limit) == (D(0), D(0))
    # AE 1000 < IM 3000 → max(0, −2000) = 0
    assert borrow_limit("USDT", D(0), 0, given_margin("1000", "3000"), p, D(0)).limit == D(0)
    # negative AE
    assert borrow_limit("USDT", D(0), 0, given_margin("-5000", "1000"), p, D(0)).limit == D(0)


def test_b2_rounded_down_to_precision() -> None:
    """B2: the limit is rounded down (never overstated) to the currency's precision."""
    p = platform(BTC="30000")
    # 10000 / (30000 × 0.2) = 1.6666… → 1.66666666 (8 places, down)
    assert borrow_limit("BTC", D(0), 0, given_margin("10000", "0"), p, D(0)).limit == D("1.66666666")
    p.register_currency("XYZ", 2, AT)
    p.set_price("XYZ", D(3), AT)
    p.set_borrow_quota("XYZ", D(1000), None, AT)
    # 100 / (3 × 0.2) = 166.666… → 166.66 at 2 places
    assert borrow_limit("XYZ", D(0), 0, given_margin("100", "0"), p, D(0)).limit == D("166.66")
    # the platform remainder is rounded down too: limit 100.009, nothing owed → 100.00
    p.set_platform_borrow_limit("XYZ", D("100.009"), AT)
    assert borrow_limit("XYZ", D(0), 0, given_margin("100", "0"), p, D(0)).limit == D("100.00")


def test_b2_minimum_of_three_terms_with_real_margin() -> None:
    """B2 with F3/F4 computed: borrowing capacity shrinks by the IM of what is owed."""
    p = platform(BTC="50000")
    # cash 10000 USDT, owes 0.1 BTC (cash 0 BTC): AE = 10000 − 5000 = 5000; IM = 5000 × 0.2 = 1000
    m = margin(state(cash={"USDT": "10000"}, liabilities={"BTC": "0.1"}), p)
    assert (m.adjusted_equity, m.initial_margin) == (D(5000), D(1000))
    # BTC: min(20 − 0.1, 4000 / 10000 = 0.4) = 0.4; USDT: min(1e6, 4000 / 0.2 = 20000) = 20000
    assert borrow_limit("BTC", D("0.1"), 0, m, p, D("0.1")).limit == D("0.4")
    assert borrow_limit("USDT", D(0), 0, m, p, D(0)).limit == D(20000)


def test_account_borrow_limit_reads_the_account_then_asks_the_platform_once() -> None:
    """B2 of an account: its liability, VIP level and margin; what all accounts owe is asked
    once, for the currency, after the margin."""
    p = platform(BTC="50000")
    p.set_platform_borrow_limit("BTC", D(10), AT)
    calls: list[str] = []

    class Borrower:
        vip_level = 0

        def liability(self, currency: str) -> D:
            return D("0.5") if currency == "BTC" else D(0)

        def margin(self, _: Platform) -> Margin:
            calls.append("margin")
            return given_margin("10000", "1000")

    def owed(currency: str) -> D:
        calls.append(f"owed {currency}")
        return D("9.7")

    # personal min(20 − 0.5, 9000 / (50000 × 0.2) = 0.9) = 0.9; platform 10 − 9.7 = 0.3
    lim = account_borrow_limit(Borrower(), "BTC", p, owed)
    assert (lim.personal, lim.limit) == (D("0.9"), D("0.3"))
    assert calls == ["margin", "owed BTC"]
    # a margin the caller has is used as it is: 100000 / 10000 = 10 → min(19.5, 10) = 10
    calls.clear()
    lim = account_borrow_limit(Borrower(), "BTC", p, owed, given_margin("100000", "0"))
    assert (lim.personal, lim.limit) == (D(10), D("0.3"))
    assert calls == ["owed BTC"]


# --- O1 order margin -------------------------------------------------------------------------------
def test_o1_opening_qty_counts_only_new_exposure() -> None:
    """O1: the part of an order that opens or enlarges a position if it filled whole."""
    assert opening_qty(D(0), "buy", D(3)) == D(3)  # opens 3
    assert opening_qty(D(2), "buy", D(1)) == D(1)  # 2 → 3
    assert opening_qty(D(-2), "buy", D(1)) == D(0)  # reduces the short: −2 → −1
    assert opening_qty(D(2), "sell", D(2)) == D(0)  # closes
    assert opening_qty(D(-1), "buy", D(3)) == D(1)  # flips −1 → 2: |2| − |−1| = 1


def test_o1_order_margin_is_opening_qty_times_price_times_imr_unrounded() -> None:
    """O1 / F4: order IM = opening qty × order price × imr of the symbol; no price is needed."""
    p = platform()
    # 0.5 × 40000 × 0.1 = 2000
    assert order_margin(p, "BTC-USDT", D(0), "buy", D("0.5"), D(40000)) == D(2000)
    # short 1, buy 3 at 50000: opens 1 → 1 × 50000 × 0.1 = 5000
    assert order_margin(p, "BTC-USDT", D(-1), "buy", D(3), D(50000)) == D(5000)
    # a reducing order needs nothing
    assert order_margin(p, "BTC-USDT", D(1), "sell", D("0.4"), D(50000)) == D(0)
    # the symbol's own rate: 2 × 100 × 0.2 = 40
    p.set_margin_rates("ETH-USDT", D("0.2"), D("0.1"), AT)
    assert order_margin(p, "ETH-USDT", D(0), "sell", D(2), D(100)) == D(40)
    # not rounded: 0.00000001 × 12345.6789 = 0.000123456789, × 0.1 = 0.0000123456789
    assert order_margin(p, "BTC-USDT", D(0), "buy", D("0.00000001"), D("12345.6789")) == D("0.0000123456789")


# --- W4 and O3 / L3 realised P&L -----------------------------------------------------------------
def test_w4_less_unrealized_loss_counts_only_a_loss() -> None:
    """W4: unified USDT can pay cash + UPL when UPL is negative; a gain adds nothing."""
    assert less_unrealized_loss(D(100), D(-30)) == D(70)
    assert less_unrealized_loss(D(100), D(30)) == D(100)
    assert less_unrealized_loss(D(100), D(0)) == D(100)
    assert less_unrealized_loss(D(10), D(-25)) == D(-15)  # may go below zero (B1 borrows it)


def test_o3_closing_pnl_is_upl_at_price_rounded_half_even() -> None:
    """O3 / L3: closing a position whole at a price realises qty × (price − entry), half-even."""
    # short 2 ETH from 3000 closed at 2500: −2 × (2500 − 3000) = +1000
    assert closing_pnl(Position("ETH-USDT", D(-2), D(3000)), D(2500), 8) == D(1000)
    # 0.3 × (50000 − 50000.123456789) = −0.0370370367 → −0.03703704 at 8 places
    assert closing_pnl(Position("BTC-USDT", D("0.3"), D("50000.123456789")), D(50000), 8) == D("-0.03703704")
    # ties go to even: 0.5 × 0.00000001 = 0.000000005 → 0; 0.5 × 0.00000003 = 0.000000015 → 0.00000002
    assert closing_pnl(Position("BTC-USDT", D("0.5"), D(100)), D("100.00000001"), 8) == D(0)
    assert closing_pnl(Position("BTC-USDT", D("0.5"), D(100)), D("100.00000003"), 8) == D("0.00000002")


# --- margin after a change (W2, L3) ----------------------------------------------------------------
def test_margin_after_paying_out_cash() -> None:
    """W2: the margin a payout would leave; the state itself is untouched."""
    p = platform(BTC="50000")
    s = state(cash={"USDT": "10000"}, liabilities={"BTC": "0.1"})
    # USDT 10000 − 3000 = 7000; BTC −0.1 × 50000 = −5000 → AE 2000; IM 0.1 × 50000 × 0.2 = 1000
    m = margin_after(s, p, cash=[("USDT", D(-3000))])
    assert (m.adjusted_equity, m.initial_margin) == (D(2000), D(1000))
    assert s.cash == {"USDT": D(10000)} and s.liabilities == {"BTC": D("0.1")}


def test_margin_after_repaying_from_cash_and_after_a_swap() -> None:
    """L3: repaying takes the amount off cash and liability; a swap first moves cash."""
    p = platform(BTC="50000")
    s = state(cash={"USDT": "10000", "BTC": "0.05"}, liabilities={"BTC": "0.1"})
    # repay 0.05 BTC from cash: BTC cash 0, owed 0.05 → AE 10000 − 2500 = 7500; IM 500, MM 250
    m = margin_after(s, p, repaid=[("BTC", D("0.05"))])
    assert (m.adjusted_equity, m.initial_margin, m.maintenance_margin) == (D(7500), D(500), D(250))
    # sell 2500 USDT for 0.05 BTC, then repay all 0.1: USDT 7500, BTC 0, nothing owed
    m = margin_after(s, p, cash=[("USDT", D(-2500)), ("BTC", D("0.05"))], repaid=[("BTC", D("0.1"))])
    assert m.equity == {"BTC": D(0), "USDT": D(7500)}
    assert (m.adjusted_equity, m.initial_margin, m.risk_ratio) == (D(7500), D(0), D(0))
