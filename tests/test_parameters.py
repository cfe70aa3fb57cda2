"""Platform parameters (SPEC §4): every change is an event with its `at`, the defaults, and the
setters' validation."""
from __future__ import annotations

from typing import Any

import pytest

from ledger.domain.platform import default_parameters
from tests.helpers import D, Ledger, at

# --- every §4 command is one event with its `at` ------------------------------------------------
PARAMETER_COMMANDS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"type": "register_currency", "currency": "SOL", "precision": 6},
     {"type": "CurrencyRegistered", "currency": "SOL", "precision": 6}),
    ({"type": "set_price", "currency": "BTC", "price": "65000.5"},
     {"type": "PriceSet", "currency": "BTC", "price": "65000.5"}),
    ({"type": "set_collateral_tiers", "currency": "ETH",
      "tiers": [{"up_to": "100", "ratio": "0.9"}, {"up_to": None, "ratio": "0.5"}]},
     {"type": "CollateralTiersSet", "currency": "ETH", "tiers": [["100", "0.9"], [None, "0.5"]]}),
    ({"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "vip_level": 2},
     {"type": "InterestRateSet", "currency": "USDT", "hourly_rate": "0.0001", "vip_level": 2}),
    ({"type": "set_interest_rate", "currency": "BTC", "hourly_rate": "0.00002"},
     {"type": "InterestRateSet", "currency": "BTC", "hourly_rate": "0.00002", "vip_level": None}),
    ({"type": "set_interest_free_allowance", "currency": "USDT", "amount": "1500"},
     {"type": "InterestFreeAllowanceSet", "currency": "USDT", "amount": "1500"}),
    ({"type": "set_borrow_quota", "currency": "BTC", "amount": "50", "vip_level": 3},
     {"type": "BorrowQuotaSet", "currency": "BTC", "amount": "50", "vip_level": 3}),
    ({"type": "set_platform_borrow_limit", "currency": "USDT", "amount": "5000000"},
     {"type": "PlatformBorrowLimitSet", "currency": "USDT", "amount": "5000000"}),
    ({"type": "set_platform_borrow_limit", "currency": "USDT", "amount": None},
     {"type": "PlatformBorrowLimitSet", "currency": "USDT", "amount": None}),
    ({"type": "set_margin_rates", "currency": "BTC", "imr": "0.3", "mmr": "0.15"},
     {"type": "MarginRatesSet", "target": "BTC", "imr": "0.3", "mmr": "0.15"}),
    ({"type": "set_margin_rates", "symbol": "ETH-USDT", "imr": "0.2", "mmr": "0.1"},
     {"type": "MarginRatesSet", "target": "ETH-USDT", "imr": "0.2", "mmr": "0.1"}),
    ({"type": "set_risk_thresholds", "alert": "0.75", "liquidation": "0.95", "target": "0.6"},
     {"type": "RiskThresholdsSet", "alert": "0.75", "liquidation": "0.95", "target": "0.6"}),
    ({"type": "set_platform_flags", "whitelist_required": False},
     {"type": "PlatformFlagsSet", "flags": {"whitelist_required": False}}),
    ({"type": "set_platform_flags", "beta_highest_vip_rate": False, "spot_margin_enabled": False},
     {"type": "PlatformFlagsSet", "flags": {"beta_highest_vip_rate": False, "spot_margin_enabled": False}}),
]


@pytest.mark.parametrize("cmd,expected", PARAMETER_COMMANDS, ids=[c["type"] for c, _ in PARAMETER_COMMANDS])
def test_parameter_command_is_one_event_with_its_at(ledger: Ledger, cmd: dict[str, Any],
                                                    expected: dict[str, Any]) -> None:
    """§4: each parameter change is recorded as one platform event carrying its `at`."""
    events = ledger.ok({**cmd, "at": at(30)})
    assert events == [{**expected, "at": at(30)}]
    stored = list(ledger.app.events.get("platform"))
    assert type(stored[0]).__name__ == "PlatformInitialised"
    assert type(stored[-1]).__name__ == expected["type"]
    assert stored[-1].at.isoformat().replace("+00:00", "Z") == at(30)
    assert ledger.platform().last_at == stored[-1].at


def test_whitelist_is_an_account_event(ledger: Ledger) -> None:
    """§4/M3: `whitelist` records AccountWhitelisted on the master with its `at`."""
    ledger.open("m", )
    assert ledger.ok({"type": "whitelist", "account": "m", "at": at(5)}) == [
        {"type": "AccountWhitelisted", "account": "m", "at": at(5)}]
    assert ledger.account("m").whitelisted is True


def test_first_event_records_the_defaults(ledger: Ledger) -> None:
    """§4: the platform's first event carries every default parameter."""
    ledger.price("BTC", "1")
    first = list(ledger.app.events.get("platform"))[0]
    assert type(first).__name__ == "PlatformInitialised"
    assert first.parameters == default_parameters()


def test_parameters_take_effect_in_order(ledger: Ledger) -> None:
    """§4: later changes override earlier ones; the platform keeps the latest value."""
    ledger.ok({"type": "set_price", "currency": "BTC", "price": "100", "at": at(1)})
    ledger.ok({"type": "set_price", "currency": "BTC", "price": "200", "at": at(1)})  # same instant ok
    ledger.ok({"type": "set_price", "currency": "BTC", "price": "300", "at": at(2)})
    assert ledger.platform().price("BTC") == D(300)
    assert [e.price for e in ledger.app.events.get("platform") if type(e).__name__ == "PriceSet"] == [
        D(100), D(200), D(300)]


# --- defaults -----------------------------------------------------------------------------------
def test_default_currencies_at_eight_places(ledger: Ledger) -> None:
    """§4/W1: USDT, USDC, BTC, ETH, KCS are registered at 8 places; nothing else is."""
    ledger.open("a")
    platform = ledger.platform()
    assert platform.currencies == {"USDT": 8, "USDC": 8, "BTC": 8, "ETH": 8, "KCS": 8}
    for c in ("USDT", "USDC", "BTC", "ETH", "KCS"):
        ledger.reject({"type": "register_currency", "currency": c, "precision": 8}, "validation_error")
        ledger.ok({"type": "deposit", "account": "a", "currency": c, "amount": "12345.12345678"})
    ledger.reject({"type": "deposit", "account": "a", "currency": "SOL", "amount": "1"}, "unknown_currency")


def test_default_prices(ledger: Ledger) -> None:
    """§4: USDT = USDC = 1; BTC, ETH, KCS have no price until set (no_price when needed)."""
    platform = ledger.platform()
    assert platform.price("USDT") == 1 and platform.price("USDC") == 1
    for c in ("BTC", "ETH", "KCS"):
        with pytest.raises(Exception) as info:
            platform.price(c)
        assert getattr(info.value, "code", None) == "no_price"
    # USDC counts at 1 without any set_price
    ledger.unified_master("u", deposits={"USDC": "100", "USDT": "50"})
    view = ledger.view("u")
    assert D(view["adjusted_equity"]) == D(150) and D(view["nav"]) == D(150)
    # a unified futures order on an unpriced base needs its price
    ledger.reject({"type": "place_order", "account": "u", "order_id": "f1", "market": "futures",
                   "symbol": "ETH-USDT", "side": "buy", "qty": "0.01", "price": "2000"}, "no_price")
    # holding an unpriced coin leaves margin undefined rather than valued at zero
    ledger.ok({"type": "deposit", "account": "u", "currency": "KCS", "amount": "1"})
    view = ledger.view("u")
    assert view["adjusted_equity"] is None
    assert view["margin_error"]["code"] == "no_price"


def test_usdt_price_cannot_be_set(ledger: Ledger) -> None:
    """§4/W1: USDT is the quote currency, price 1: set_price USDT is validation_error."""
    ledger.reject({"type": "set_price", "currency": "USDT", "price": "1.01"}, "validation_error")
    ledger.reject({"type": "set_price", "currency": "DOGE", "price": "1"}, "unknown_currency")
    ledger.reject({"type": "set_price", "currency": "BTC", "price": "0"}, "validation_error")
    ledger.reject({"type": "set_price", "currency": "BTC", "price": "1.000000001"}, "validation_error")
    ledger.ok({"type": "set_price", "currency": "USDC", "price": "0.999"})
    assert ledger.platform().price("USDC") == D("0.999")
    assert ledger.platform().price("USDT") == 1


def _ae(ledger: Ledger, account: str) -> Any:
    return D(ledger.view(account)["adjusted_equity"])


def test_default_collateral_tiers(ledger: Ledger) -> None:
    """§4/F2: BTC 0.98 to 500, 0.97 to 1000, 0.95 above (progressive); ETH 0.95; USDC 1; KCS 0."""
    for c, p in (("BTC", "100"), ("ETH", "2000"), ("KCS", "10")):
        ledger.price(c, p)
    ledger.unified_master("b1", deposits={"BTC": "500"})
    assert _ae(ledger, "b1") == D(49000)  # 500 × 0.98 × 100
    ledger.unified_master("b2", deposits={"BTC": "600"})
    assert _ae(ledger, "b2") == D(58700)  # (490 + 100 × 0.97) × 100
    ledger.unified_master("b3", deposits={"BTC": "1200"})
    assert _ae(ledger, "b3") == D(116500)  # (490 + 485 + 200 × 0.95) × 100
    ledger.unified_master("e", deposits={"ETH": "10"})
    assert _ae(ledger, "e") == D(19000)
    ledger.unified_master("k", deposits={"KCS": "100", "USDC": "7", "USDT": "3"})
    assert _ae(ledger, "k") == D(10)  # KCS counts 0
    assert D(ledger.view("k")["nav"]) == D(1010)
    tiers = ledger.platform().tiers
    assert tiers["USDT"] == [(None, D(1))] and tiers["USDC"] == [(None, D(1))]
    assert ledger.platform().collateral_tiers("KCS") == [(None, D(0))]


def test_set_collateral_tiers_changes_conversion(ledger: Ledger) -> None:
    """§4/F2: new tiers apply progressively."""
    ledger.price("ETH", "1000")
    ledger.ok({"type": "set_collateral_tiers", "currency": "ETH",
               "tiers": [{"up_to": "10", "ratio": "0.9"}, {"up_to": None, "ratio": "0.5"}]})
    ledger.unified_master("e", deposits={"ETH": "12"})
    assert _ae(ledger, "e") == D(10000)  # (9 + 1) × 1000


def test_default_interest_free_allowance(ledger: Ledger) -> None:
    """§4/I2: the allowance is USDT 2000 and 0 for every other currency."""
    platform = ledger.platform()
    assert platform.allowance("USDT") == D(2000)
    for c in ("USDC", "BTC", "ETH", "KCS"):
        assert platform.allowance(c) == 0
    ledger.ok({"type": "set_interest_free_allowance", "currency": "BTC", "amount": "0.5"})
    assert ledger.platform().allowance("BTC") == D("0.5")
    assert ledger.platform().allowance("USDT") == D(2000)


def test_default_interest_rate_is_none(ledger: Ledger) -> None:
    """§4/I3: no interest rate is set by default."""
    assert ledger.platform().rates == {}


def _rich_unified(ledger: Ledger, account: str, vip_level: int = 0) -> None:
    for c, p in (("BTC", "50000"), ("ETH", "2000"), ("KCS", "10")):
        if c not in ledger.platform().prices:
            ledger.price(c, p)
    ledger.unified_master(account, deposits={"USDT": "10000000"}, vip_level=vip_level)


def test_default_borrow_quotas(ledger: Ledger) -> None:
    """§4/B2: quotas USDT 1,000,000, BTC 20, ETH 300, others 0 (margin is not the limit here)."""
    _rich_unified(ledger, "rich")
    borrowable = {c: D(v) for c, v in ledger.view("rich")["borrowable"].items()}
    assert borrowable == {"USDT": D(1_000_000), "USDC": 0, "BTC": D(20), "ETH": D(300), "KCS": 0}
    ledger.reject({"type": "borrow", "account": "rich", "currency": "BTC", "amount": "20.00000001"},
                  "borrow_limit_exceeded")
    ledger.reject({"type": "borrow", "account": "rich", "currency": "KCS", "amount": "1"},
                  "borrow_limit_exceeded")
    ledger.ok({"type": "borrow", "account": "rich", "currency": "BTC", "amount": "20"})
    assert D(ledger.view("rich")["borrowable"]["BTC"]) == 0


def test_borrow_quota_per_vip_override(ledger: Ledger) -> None:
    """§4/B2: set_borrow_quota with vip_level overrides that level only; without, the default."""
    ledger.ok({"type": "set_borrow_quota", "currency": "BTC", "amount": "50", "vip_level": 3})
    _rich_unified(ledger, "v0")
    _rich_unified(ledger, "v3", vip_level=3)
    assert D(ledger.view("v0")["borrowable"]["BTC"]) == D(20)
    assert D(ledger.view("v3")["borrowable"]["BTC"]) == D(50)
    ledger.ok({"type": "borrow", "account": "v3", "currency": "BTC", "amount": "50"})
    ledger.reject({"type": "borrow", "account": "v0", "currency": "BTC", "amount": "20.1"},
                  "borrow_limit_exceeded")
    ledger.ok({"type": "set_borrow_quota", "currency": "KCS", "amount": "1000"})
    assert D(ledger.view("v0")["borrowable"]["KCS"]) == D(1000)
    assert ledger.platform().quota("BTC", 0) == D(20)
    assert ledger.platform().quota("BTC", 3) == D(50)
    assert ledger.platform().quota("BTC", 4) == D(20)


def test_platform_borrow_limit_default_none(ledger: Ledger) -> None:
    """§4/B2: no platform limit by default; a set limit caps borrowing; null removes it."""
    for c in ("USDT", "USDC", "BTC", "ETH", "KCS"):
        assert ledger.platform().platform_limit(c) is None
    _rich_unified(ledger, "rich")
    ledger.ok({"type": "set_platform_borrow_limit", "currency": "USDT", "amount": "100"})
    assert D(ledger.view("rich")["borrowable"]["USDT"]) == D(100)
    ledger.reject({"type": "borrow", "account": "rich", "currency": "USDT", "amount": "100.00000001"},
                  "platform_limit_exceeded")
    ledger.ok({"type": "set_platform_borrow_limit", "currency": "USDT", "amount": None})
    assert ledger.platform().platform_limit("USDT") is None
    assert D(ledger.view("rich")["borrowable"]["USDT"]) == D(1_000_000)


def test_default_margin_rates_and_overrides(ledger: Ledger) -> None:
    """§4/F4: liabilities 0.2 / 0.1 and futures 0.1 / 0.05, per currency / symbol override."""
    ledger.price("BTC", "50000")
    ledger.unified_master("u", deposits={"USDT": "100000"})
    ledger.ok({"type": "borrow", "account": "u", "currency": "USDT", "amount": "1000"})
    view = ledger.view("u")
    assert (D(view["initial_margin"]), D(view["maintenance_margin"])) == (D(200), D(100))
    ledger.ok({"type": "place_order", "account": "u", "order_id": "f1", "market": "futures",
               "symbol": "BTC-USDT", "side": "buy", "qty": "1", "price": "50000"})
    ledger.ok({"type": "fill_order", "account": "u", "order_id": "f1", "qty": "1", "price": "50000"})
    view = ledger.view("u")
    assert (D(view["initial_margin"]), D(view["maintenance_margin"])) == (D(5200), D(2600))
    ledger.ok({"type": "set_margin_rates", "currency": "USDT", "imr": "0.5", "mmr": "0.25"})
    view = ledger.view("u")
    assert (D(view["initial_margin"]), D(view["maintenance_margin"])) == (D(5500), D(2750))
    ledger.ok({"type": "set_margin_rates", "symbol": "BTC-USDT", "imr": "0.2", "mmr": "0.1"})
    view = ledger.view("u")
    assert (D(view["initial_margin"]), D(view["maintenance_margin"])) == (D(10500), D(5250))
    platform = ledger.platform()
    assert platform.liability_rates("BTC") == (D("0.2"), D("0.1"))
    assert platform.futures_rates("ETH-USDT") == (D("0.1"), D("0.05"))


def test_default_risk_thresholds(ledger: Ledger) -> None:
    """§4: thresholds alert 0.8, liquidation 1.0, target 0.7; set_risk_thresholds replaces them."""
    assert ledger.platform().thresholds == {"alert": D("0.8"), "liquidation": D(1), "target": D("0.7")}
    ledger.ok({"type": "set_risk_thresholds", "alert": "0.9", "liquidation": "1.2", "target": "0.5"})
    assert ledger.platform().thresholds == {"alert": D("0.9"), "liquidation": D("1.2"), "target": D("0.5")}


def test_default_flags_on(ledger: Ledger) -> None:
    """§4/M3/B4: whitelist_required, beta_highest_vip_rate and spot_margin_enabled start on."""
    assert ledger.platform().flags == {
        "whitelist_required": True, "beta_highest_vip_rate": True, "spot_margin_enabled": True}
    # whitelist_required: an unlisted master cannot upgrade
    ledger.open("m")
    ledger.ok({"type": "complete_risk_assessment", "account": "m", "score": 70, "agreements_version": "v1"})
    ledger.reject({"type": "switch_mode", "account": "m", "mode": "unified"}, "not_whitelisted")
    ledger.ok({"type": "set_platform_flags", "whitelist_required": False})
    ledger.ok({"type": "switch_mode", "account": "m", "mode": "unified"})
    assert ledger.platform().flags["beta_highest_vip_rate"] is True  # other flags untouched
    # spot_margin_enabled: a unified buy beyond cash is covered by borrowing capacity
    ledger.ok({"type": "deposit", "account": "m", "currency": "USDT", "amount": "1000"})
    buy = {"type": "place_order", "account": "m", "order_id": "b1", "market": "spot",
           "symbol": "BTC-USDT", "side": "buy", "qty": "0.04", "price": "50000"}  # 2000
    ledger.ok(buy)
    ledger.ok({"type": "cancel_order", "account": "m", "order_id": "b1"})
    ledger.ok({"type": "set_platform_flags", "spot_margin_enabled": False})
    ledger.reject(buy, "insufficient_balance")
    ledger.ok({**buy, "qty": "0.02"})  # 1000: cash alone


# --- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd,code", [
    ({"type": "register_currency", "currency": "SOL", "precision": -1}, "validation_error"),
    ({"type": "register_currency", "currency": "SOL", "precision": 19}, "validation_error"),
    ({"type": "register_currency", "currency": "sol", "precision": 8}, "validation_error"),
    ({"type": "register_currency", "currency": "BTC", "precision": 6}, "validation_error"),
    ({"type": "set_collateral_tiers", "currency": "BTC",
      "tiers": [{"up_to": "1000", "ratio": "0.9"}, {"up_to": "500", "ratio": "0.8"},
                {"up_to": None, "ratio": "0.5"}]}, "validation_error"),
    ({"type": "set_collateral_tiers", "currency": "BTC",
      "tiers": [{"up_to": "500", "ratio": "0.9"}, {"up_to": "500", "ratio": "0.8"},
                {"up_to": None, "ratio": "0.5"}]}, "validation_error"),
    ({"type": "set_collateral_tiers", "currency": "BTC",
      "tiers": [{"up_to": "500", "ratio": "0.9"}, {"up_to": "1000", "ratio": "0.8"}]}, "validation_error"),
    ({"type": "set_collateral_tiers", "currency": "BTC",
      "tiers": [{"up_to": None, "ratio": "0.9"}, {"up_to": None, "ratio": "0.8"}]}, "validation_error"),
    ({"type": "set_collateral_tiers", "currency": "BTC", "tiers": []}, "validation_error"),
    ({"type": "set_collateral_tiers", "currency": "BTC",
      "tiers": [{"up_to": None, "ratio": "1.01"}]}, "validation_error"),
    ({"type": "set_collateral_tiers", "currency": "DOGE",
      "tiers": [{"up_to": None, "ratio": "0.5"}]}, "unknown_currency"),
    ({"type": "set_interest_rate", "currency": "DOGE", "hourly_rate": "0.001"}, "unknown_currency"),
    ({"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "-0.001"}, "validation_error"),
    ({"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.001", "vip_level": 13},
     "validation_error"),
    ({"type": "set_interest_free_allowance", "currency": "DOGE", "amount": "1"}, "unknown_currency"),
    ({"type": "set_interest_free_allowance", "currency": "USDT", "amount": "0.000000001"},
     "validation_error"),
    ({"type": "set_borrow_quota", "currency": "DOGE", "amount": "1"}, "unknown_currency"),
    ({"type": "set_borrow_quota", "currency": "BTC", "amount": "1", "vip_level": -1}, "validation_error"),
    ({"type": "set_platform_borrow_limit", "currency": "DOGE", "amount": "1"}, "unknown_currency"),
    ({"type": "set_platform_borrow_limit", "currency": "USDT"}, "validation_error"),
    ({"type": "set_margin_rates", "currency": "BTC", "imr": "0.1", "mmr": "0.2"}, "validation_error"),
    ({"type": "set_margin_rates", "currency": "BTC", "symbol": "BTC-USDT", "imr": "0.2", "mmr": "0.1"},
     "validation_error"),
    ({"type": "set_margin_rates", "imr": "0.2", "mmr": "0.1"}, "validation_error"),
    ({"type": "set_margin_rates", "currency": "BTC", "imr": "0", "mmr": "0"}, "validation_error"),
    ({"type": "set_margin_rates", "currency": "DOGE", "imr": "0.2", "mmr": "0.1"}, "unknown_currency"),
    ({"type": "set_margin_rates", "symbol": "DOGE-USDT", "imr": "0.2", "mmr": "0.1"}, "unknown_symbol"),
    ({"type": "set_risk_thresholds", "alert": "0.8", "liquidation": "1", "target": "1"}, "validation_error"),
    ({"type": "set_risk_thresholds", "alert": "0.8", "liquidation": "1", "target": "1.1"},
     "validation_error"),
    ({"type": "set_risk_thresholds", "alert": "1.1", "liquidation": "1", "target": "0.7"},
     "validation_error"),
    ({"type": "set_risk_thresholds", "alert": "0.8", "liquidation": "1"}, "validation_error"),
    ({"type": "set_platform_flags"}, "validation_error"),
    ({"type": "set_platform_flags", "whitelist_required": "no"}, "validation_error"),
    ({"type": "set_platform_flags", "unknown_flag": True}, "validation_error"),
    ({"type": "set_price", "currency": "BTC", "price": 50000}, "validation_error"),
], ids=lambda v: v if isinstance(v, str) else v["type"])
def test_setter_validation(ledger: Ledger, cmd: dict[str, Any], code: str) -> None:
    """§4/§12: malformed parameter changes are rejected with their code and record nothing."""
    ledger.price("ETH", "1")  # the platform exists, so a rejection cannot hide a first write
    before = ledger.platform()
    ledger.reject(cmd, code)
    after = ledger.platform()
    assert (after.tiers, after.margin_rates, after.thresholds, after.flags, after.currencies) == (
        before.tiers, before.margin_rates, before.thresholds, before.flags, before.currencies)


def test_platform_out_of_order(ledger: Ledger) -> None:
    """§4/T1: a parameter change whose `at` is before the last one is out_of_order."""
    ledger.ok({"type": "set_price", "currency": "BTC", "price": "100", "at": at(10)})
    ledger.reject({"type": "set_price", "currency": "BTC", "price": "90", "at": at(9)}, "out_of_order")
    ledger.reject({"type": "register_currency", "currency": "SOL", "precision": 4, "at": at(5)},
                  "out_of_order")
    ledger.reject({"type": "set_risk_thresholds", "alert": "0.8", "liquidation": "1", "target": "0.7",
                   "at": at(9.99)}, "out_of_order")
    ledger.reject({"type": "set_platform_flags", "whitelist_required": False, "at": at(0)}, "out_of_order")
    ledger.ok({"type": "set_margin_rates", "symbol": "BTC-USDT", "imr": "0.2", "mmr": "0.1", "at": at(10)})
    ledger.ok({"type": "set_price", "currency": "BTC", "price": "110", "at": at(11)})
    ledger.reject({"type": "set_price", "currency": "BTC", "price": "90", "at": at(10)}, "out_of_order")
    assert ledger.platform().price("BTC") == D(110)
