"""Accounts and modes: SPEC §1, rules M1-M9."""
from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import D, Ledger

ASSESS = {"score": 80, "agreements_version": "v1"}


# --- small set-ups ---------------------------------------------------------------------------
def whitelist(ledger: Ledger, account: str) -> None:
    ledger.ok({"type": "whitelist", "account": account})


def assess(ledger: Ledger, account: str, score: int = 80) -> None:
    ledger.ok({"type": "complete_risk_assessment", "account": account, "score": score,
               "agreements_version": "v1"})


def switch(account: str, mode: str, **extra: Any) -> dict[str, Any]:
    return {"type": "switch_mode", "account": account, "mode": mode, **extra}


def deposit(account: str, amount: str, currency: str = "USDT", **extra: Any) -> dict[str, Any]:
    return {"type": "deposit", "account": account, "currency": currency, "amount": amount, **extra}


def withdraw(account: str, amount: str, currency: str = "USDT", **extra: Any) -> dict[str, Any]:
    return {"type": "withdraw", "account": account, "currency": currency, "amount": amount, **extra}


ALL_PERMISSIONS = ["read", "spot", "futures", "transfer", "withdraw"]


def api_key(account: str, key_id: str, permissions: list[str], unified: bool = False) -> dict[str, Any]:
    return {"type": "create_api_key", "account": account, "key_id": key_id,
            "unified": unified, "permissions": permissions}


def spot_order(account: str, order_id: str, qty: str = "1", price: str = "10", **extra: Any) -> dict[str, Any]:
    return {"type": "place_order", "account": account, "order_id": order_id, "market": "spot",
            "symbol": "BTC-USDT", "side": "buy", "qty": qty, "price": price, **extra}


def futures_order(account: str, order_id: str, side: str = "buy", qty: str = "1",
                  price: str = "100") -> dict[str, Any]:
    return {"type": "place_order", "account": account, "order_id": order_id, "market": "futures",
            "symbol": "BTC-USDT", "side": side, "qty": qty, "price": price}


def fill(account: str, order_id: str, qty: str, price: str = "100") -> dict[str, Any]:
    return {"type": "fill_order", "account": account, "order_id": order_id, "qty": qty, "price": price}


def flags(**values: bool) -> dict[str, Any]:
    return {"type": "set_platform_flags", **values}


def eligible_master(ledger: Ledger, account: str) -> None:
    """A classic master that passed the gate (M3, M4) and activated Unified for its subs (M7)."""
    ledger.open(account)
    whitelist(ledger, account)
    assess(ledger, account)
    ledger.ok({"type": "activate_unified", "account": account})


# --- M1 / M2: opening -------------------------------------------------------------------------
def test_open_master_and_sub_defaults(ledger: Ledger) -> None:
    """M1, M2: a master has no parent, a sub has its master; VIP 0 and classic by default."""
    events = ledger.ok({"type": "open_account", "account": "alice"})
    assert [e["type"] for e in events] == ["AccountOpened"]
    assert events[0]["account"] == "alice" and events[0]["parent"] is None
    assert events[0]["vip_level"] == 0
    ledger.open("alice.sub-1", parent="alice")
    master, sub = ledger.account("alice"), ledger.account("alice.sub-1")
    assert (master.parent, master.mode, master.vip_level, master.is_master) == (None, "classic", 0, True)
    assert (sub.parent, sub.mode, sub.vip_level, sub.is_master) == ("alice", "classic", 0, False)
    assert master.wallets == {"spot": {}, "futures": {}}


@pytest.mark.parametrize("account", ["a", "A9", "x" * 64, "a_b.c:d-e", "0.:_-"])
def test_account_id_pattern_accepts(ledger: Ledger, account: str) -> None:
    """M1: ids matching ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$ are accepted as given."""
    ledger.open(account)
    assert ledger.account(account).account == account


@pytest.mark.parametrize("account", ["", "-a", "_a", ".a", ":a", "x" * 65, "a b", "a/b", "ünï", "a\n", "a@b"])
def test_account_id_pattern_rejects(ledger: Ledger, account: str) -> None:
    """M1: any other id is a validation_error and opens nothing."""
    ledger.reject({"type": "open_account", "account": account}, "validation_error")


def test_open_existing_account_is_account_exists(ledger: Ledger) -> None:
    """M1: opening an existing id (master or sub) is account_exists; the first stays as it was."""
    ledger.open("alice", vip_level=3)
    ledger.open("sub", parent="alice")
    ledger.reject({"type": "open_account", "account": "alice", "vip_level": 5}, "account_exists")
    ledger.reject({"type": "open_account", "account": "sub"}, "account_exists")
    ledger.reject({"type": "open_account", "account": "sub", "parent": "alice"}, "account_exists")
    assert ledger.account("alice").vip_level == 3
    assert len(ledger.events("alice", "AccountOpened")) == 1


def test_sub_of_a_sub_is_parent_not_master(ledger: Ledger) -> None:
    """M1: sub-accounts have no sub-accounts."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    ledger.reject({"type": "open_account", "account": "subsub", "parent": "sub"}, "parent_not_master")


def test_unknown_parent_is_unknown_account(ledger: Ledger) -> None:
    """M1: the parent must exist."""
    ledger.reject({"type": "open_account", "account": "sub", "parent": "nobody"}, "unknown_account")
    ledger.reject({"type": "open_account", "account": "self", "parent": "self"}, "unknown_account")


@pytest.mark.parametrize("level", [0, 1, 12])
def test_vip_level_in_range(ledger: Ledger, level: int) -> None:
    """M2: VIP levels 0..12."""
    ledger.open("alice", vip_level=level)
    assert ledger.account("alice").vip_level == level


@pytest.mark.parametrize("level", [-1, 13, 100, "3", 3.0, True, None])
def test_vip_level_out_of_range_or_not_an_integer(ledger: Ledger, level: Any) -> None:
    """M2: anything but an integer 0..12 is a validation_error."""
    ledger.reject({"type": "open_account", "account": "alice", "vip_level": level}, "validation_error")


# --- M3 / M4: whitelist and risk assessment ---------------------------------------------------
def test_whitelist_and_risk_assessment_are_for_masters_only(ledger: Ledger) -> None:
    """M3, M4: a sub cannot be whitelisted nor assessed (not_master); a master records both."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    ledger.reject({"type": "whitelist", "account": "sub"}, "not_master")
    ledger.reject({"type": "complete_risk_assessment", "account": "sub", **ASSESS}, "not_master")
    ledger.reject({"type": "activate_unified", "account": "sub"}, "not_master")
    [wl] = ledger.ok({"type": "whitelist", "account": "alice"})
    assert wl["type"] == "AccountWhitelisted"
    [ra] = ledger.ok({"type": "complete_risk_assessment", "account": "alice", "score": 55,
                      "agreements_version": "2026-01"})
    assert (ra["type"], ra["score"], ra["agreements_version"]) == ("RiskAssessmentCompleted", 55, "2026-01")
    master = ledger.account("alice")
    assert master.whitelisted is True
    assert master.risk_assessment == {"score": 55, "agreements_version": "2026-01"}
    assert ledger.account("sub").whitelisted is False and ledger.account("sub").risk_assessment is None


def test_whitelist_unknown_account(ledger: Ledger) -> None:
    """M3: whitelisting an account that does not exist is unknown_account."""
    ledger.reject({"type": "whitelist", "account": "ghost"}, "unknown_account")


def test_master_upgrade_needs_whitelist_then_risk_assessment(ledger: Ledger) -> None:
    """M3, M4, M5: a master needs the whitelist, then the risk assessment, then may upgrade."""
    ledger.open("alice")
    ledger.reject(switch("alice", "unified"), "not_whitelisted")
    ledger.reject({"type": "activate_unified", "account": "alice"}, "not_whitelisted")
    whitelist(ledger, "alice")
    ledger.reject(switch("alice", "unified"), "risk_assessment_required")
    ledger.reject({"type": "activate_unified", "account": "alice"}, "risk_assessment_required")
    assess(ledger, "alice")
    [event] = ledger.ok(switch("alice", "unified"))
    assert (event["type"], event["from_mode"], event["to_mode"]) == ("ModeSwitched", "classic", "unified")
    assert ledger.account("alice").mode == "unified"


def test_whitelist_flag_off_lets_a_non_whitelisted_master_upgrade(ledger: Ledger) -> None:
    """M3: with whitelist_required off, the whitelist is not needed; the risk assessment still is."""
    ledger.open("alice")
    ledger.ok(flags(whitelist_required=False))
    ledger.reject(switch("alice", "unified"), "risk_assessment_required")
    assess(ledger, "alice")
    ledger.ok(switch("alice", "unified"))
    assert ledger.account("alice").mode == "unified"
    assert ledger.account("alice").whitelisted is False


def test_whitelist_flag_back_on_blocks_again(ledger: Ledger) -> None:
    """M3: the gate follows the flag's current value."""
    ledger.open("alice")
    assess(ledger, "alice")
    ledger.ok(flags(whitelist_required=False))
    ledger.ok(flags(whitelist_required=True))
    ledger.reject(switch("alice", "unified"), "not_whitelisted")


def test_master_risk_assessment_never_restricts_a_sub(ledger: Ledger) -> None:
    """M4: a master's lowest questionnaire score does not limit what its sub may do."""
    ledger.open("alice")
    whitelist(ledger, "alice")
    assess(ledger, "alice", score=0)
    ledger.ok({"type": "activate_unified", "account": "alice"})
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("sub", "1000"))
    ledger.ok(api_key("sub", "sub-key", ["spot", "transfer"], unified=True))
    assert ledger.account("sub").mode == "unified"
    ledger.price("BTC", "10")
    ledger.ok(spot_order("sub", "o1", qty="2", price="10", api_key="sub-key"))
    ledger.ok({"type": "borrow", "account": "sub", "currency": "USDT", "amount": "100", "api_key": "sub-key"})
    assert ledger.liability("sub", "USDT") == D(100)
    assert ledger.account("sub").orders["o1"]["hold"] == D(20)


def test_sub_of_unassessed_master_trades_in_classic(ledger: Ledger) -> None:
    """M4: a sub never needs a risk assessment for its own classic trading."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("sub", "100"))
    ledger.ok(spot_order("sub", "o1", qty="2", price="10"))
    assert ledger.account("sub").holds("USDT") == D(20)


# --- M5: check order ------------------------------------------------------------------------
def test_m5_order_not_whitelisted_before_risk_assessment_and_prerequisites(ledger: Ledger) -> None:
    """M5: a master failing the whitelist, the assessment and having a pending order gets
    not_whitelisted; once whitelisted, risk_assessment_required; once assessed, pending_orders."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "100"))
    ledger.ok(spot_order("alice", "o1"))
    ledger.reject(switch("alice", "unified"), "not_whitelisted")
    whitelist(ledger, "alice")
    ledger.reject(switch("alice", "unified"), "risk_assessment_required")
    assess(ledger, "alice")
    ledger.reject(switch("alice", "unified"), "pending_orders")
    ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "o1"})
    ledger.ok(switch("alice", "unified"))


def test_m5_eligibility_before_already_in_mode(ledger: Ledger) -> None:
    """M5: a unified master no longer whitelisted (flag turned on after it upgraded) asking for
    unified again gets not_whitelisted, not already_in_mode."""
    ledger.ok(flags(whitelist_required=False))
    ledger.open("alice")
    assess(ledger, "alice")
    ledger.ok(switch("alice", "unified"))
    ledger.reject(switch("alice", "unified"), "already_in_mode")
    ledger.ok(flags(whitelist_required=True))
    ledger.reject(switch("alice", "unified"), "not_whitelisted")


def test_m5_sub_not_whitelisted_before_master_not_eligible_and_already_in_mode(ledger: Ledger) -> None:
    """M5, M3: a sub inherits its master's whitelist: not_whitelisted comes first, before
    master_not_eligible and before already_in_mode."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("sub", "100"))
    ledger.ok(spot_order("sub", "o1"))
    # master: not whitelisted, not activated; sub: pending order
    ledger.reject(switch("sub", "unified"), "not_whitelisted")
    whitelist(ledger, "alice")
    ledger.reject(switch("sub", "unified"), "master_not_eligible")
    # a sub that is already unified, whose master is no longer whitelisted
    ledger.ok({"type": "cancel_order", "account": "sub", "order_id": "o1"})
    ledger.ok(flags(whitelist_required=False))
    ledger.open("bob")
    assess(ledger, "bob")
    ledger.ok({"type": "activate_unified", "account": "bob"})
    ledger.open("bsub", parent="bob")
    ledger.ok(switch("bsub", "unified"))
    ledger.reject(switch("bsub", "unified"), "already_in_mode")
    ledger.ok(flags(whitelist_required=True))
    ledger.reject(switch("bsub", "unified"), "not_whitelisted")


def test_m5_master_not_eligible_before_prerequisites(ledger: Ledger) -> None:
    """M5: a sub whose whitelisted, assessed master has neither upgraded nor activated gets
    master_not_eligible even when it also has a pending order; a sub never needs its own
    assessment (risk_assessment_required is never a sub's answer)."""
    ledger.open("alice")
    whitelist(ledger, "alice")
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("sub", "100"))
    ledger.ok(spot_order("sub", "o1"))
    ledger.reject(switch("sub", "unified"), "master_not_eligible")
    assess(ledger, "alice")
    ledger.reject(switch("sub", "unified"), "master_not_eligible")
    ledger.ok({"type": "activate_unified", "account": "alice"})
    ledger.reject(switch("sub", "unified"), "pending_orders")
    ledger.ok({"type": "cancel_order", "account": "sub", "order_id": "o1"})
    ledger.ok(switch("sub", "unified"))
    assert ledger.account("sub").mode == "unified"
    assert ledger.account("alice").mode == "classic"


def test_m5_master_upgraded_makes_sub_eligible(ledger: Ledger) -> None:
    """M5: a master that upgraded (without activate_unified) makes its subs eligible."""
    ledger.unified_master("alice")
    ledger.open("sub", parent="alice")
    ledger.ok(switch("sub", "unified"))
    assert ledger.account("sub").mode == "unified"


def test_m5_already_in_mode_before_open_positions_classic(ledger: Ledger) -> None:
    """M5: a classic account with an open position and a pending order asking for classic gets
    already_in_mode; asking for unified gets open_positions (before pending_orders)."""
    ledger.open("alice")
    whitelist(ledger, "alice")
    assess(ledger, "alice")
    ledger.ok(deposit("alice", "1000", wallet="futures"))
    ledger.ok(futures_order("alice", "f1", qty="2"))
    ledger.ok(fill("alice", "f1", "1"))  # half filled: a position and a pending order
    acct = ledger.account("alice")
    assert acct.positions == {"BTC-USDT": [D(1), D(100)]}
    assert set(acct.orders) == {"f1"}
    ledger.reject(switch("alice", "classic"), "already_in_mode")
    ledger.reject(switch("alice", "unified"), "open_positions")


def test_m5_prerequisites_in_order_on_downgrade(ledger: Ledger) -> None:
    """M5: a unified account with a position, a pending order and a liability: already_in_mode
    for unified, then open_positions, pending_orders, outstanding_liabilities as each clears."""
    ledger.unified_master("alice", {"USDT": "1000"})
    ledger.price("BTC", "100")
    ledger.ok(futures_order("alice", "f1", qty="2"))
    ledger.ok(fill("alice", "f1", "1"))
    ledger.ok({"type": "borrow", "account": "alice", "currency": "USDT", "amount": "10"})
    assert ledger.liability("alice", "USDT") == D(10)
    ledger.reject(switch("alice", "unified"), "already_in_mode")
    ledger.reject(switch("alice", "classic"), "open_positions")
    ledger.ok(futures_order("alice", "close", side="sell", qty="1"))
    ledger.ok(fill("alice", "close", "1"))
    assert ledger.account("alice").positions == {}
    ledger.reject(switch("alice", "classic"), "pending_orders")
    ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "f1"})
    ledger.reject(switch("alice", "classic"), "outstanding_liabilities")
    ledger.ok({"type": "repay", "account": "alice", "currency": "USDT", "amount": "10"})
    assert ledger.liability("alice", "USDT") == D(0)
    [event] = ledger.ok(switch("alice", "classic"))
    assert (event["from_mode"], event["to_mode"]) == ("unified", "classic")
    assert ledger.cash("alice", "USDT", "spot") == D(1000)


def test_m5_downgrade_needs_no_eligibility(ledger: Ledger) -> None:
    """M5: going back to classic is not gated by the whitelist."""
    ledger.open("bob")
    ledger.ok(flags(whitelist_required=False))
    assess(ledger, "bob")
    ledger.ok(switch("bob", "unified"))
    ledger.ok(flags(whitelist_required=True))
    ledger.ok(switch("bob", "classic"))
    assert ledger.account("bob").mode == "classic"
    ledger.reject(switch("bob", "classic"), "already_in_mode")


def test_switch_unknown_account(ledger: Ledger) -> None:
    """M5: switching an account that does not exist is unknown_account."""
    ledger.reject(switch("ghost", "unified"), "unknown_account")
    ledger.reject(switch("ghost", "sideways"), "validation_error")


# --- M6: wallet moves --------------------------------------------------------------------------
def test_upgrade_moves_spot_and_futures_into_unified_summed(ledger: Ledger) -> None:
    """M6: every spot and futures balance moves into the unified wallet, per currency summed."""
    ledger.open("alice")
    whitelist(ledger, "alice")
    assess(ledger, "alice")
    ledger.oks(
        deposit("alice", "100.5"),
        deposit("alice", "50.25", wallet="futures"),
        deposit("alice", "0.3", currency="BTC"),
        deposit("alice", "0.2", currency="BTC", wallet="futures"),
        deposit("alice", "7", currency="ETH", wallet="futures"),
    )
    [event] = ledger.ok(switch("alice", "unified"))
    assert event["type"] == "ModeSwitched"
    moves = {(m["currency"], m["from_wallet"], m["to_wallet"], D(m["amount"])) for m in event["moves"]}
    assert moves == {
        ("USDT", "spot", "unified", D("100.5")), ("USDT", "futures", "unified", D("50.25")),
        ("BTC", "spot", "unified", D("0.3")), ("BTC", "futures", "unified", D("0.2")),
        ("ETH", "futures", "unified", D(7)),
    }
    acct = ledger.account("alice")
    assert acct.wallets == {"unified": {"USDT": D("150.75"), "BTC": D("0.5"), "ETH": D(7)}}
    assert acct.cash("USDT") == D("150.75")
    # the classic wallets are gone
    ledger.reject(deposit("alice", "1", wallet="spot"), "unknown_wallet")
    ledger.reject(deposit("alice", "1", wallet="futures"), "unknown_wallet")
    # a deposit now lands in unified
    ledger.ok(deposit("alice", "0.25"))
    assert ledger.cash("alice", "USDT", "unified") == D(151)


def test_downgrade_moves_unified_into_spot(ledger: Ledger) -> None:
    """M6: downgrading moves every unified balance into spot; futures starts empty."""
    ledger.unified_master("alice", {"USDT": "250", "BTC": "1.5"})
    [event] = ledger.ok(switch("alice", "classic"))
    moves = {(m["currency"], m["from_wallet"], m["to_wallet"], D(m["amount"])) for m in event["moves"]}
    assert moves == {("USDT", "unified", "spot", D(250)), ("BTC", "unified", "spot", D("1.5"))}
    acct = ledger.account("alice")
    assert acct.mode == "classic"
    assert acct.wallets == {"spot": {"USDT": D(250), "BTC": D("1.5")}, "futures": {}}
    ledger.reject(deposit("alice", "1", wallet="unified"), "unknown_wallet")


def test_switch_round_trip_is_free_and_replays(ledger: Ledger) -> None:
    """M5, M6: switching both ways costs nothing; the store replays to the same wallets."""
    ledger.open("alice")
    whitelist(ledger, "alice")
    assess(ledger, "alice")
    ledger.ok(deposit("alice", "10"))
    ledger.ok(deposit("alice", "5", wallet="futures"))
    ledger.ok(switch("alice", "unified"))
    ledger.ok(switch("alice", "classic"))
    ledger.ok(switch("alice", "unified"))
    assert ledger.reopen().account("alice").wallets == {"unified": {"USDT": D(15)}}
    assert [(e.from_mode, e.to_mode) for e in ledger.events("alice", "ModeSwitched")] == [
        ("classic", "unified"), ("unified", "classic"), ("classic", "unified")]


def test_empty_account_switch_has_no_moves(ledger: Ledger) -> None:
    """M6: with nothing to move the switch still happens, with an empty move list."""
    ledger.open("alice")
    whitelist(ledger, "alice")
    assess(ledger, "alice")
    [event] = ledger.ok(switch("alice", "unified"))
    assert event["moves"] == []
    assert ledger.account("alice").wallets == {"unified": {}}


# --- M7: activate_unified ------------------------------------------------------------------------
def test_activate_unified_keeps_master_classic_and_lets_subs_upgrade(ledger: Ledger) -> None:
    """M7: the master passes the gate, stays classic with its wallets; subs may then upgrade."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    whitelist(ledger, "alice")
    assess(ledger, "alice")
    ledger.ok(deposit("alice", "40", wallet="futures"))
    ledger.reject(switch("sub", "unified"), "master_not_eligible")
    [event] = ledger.ok({"type": "activate_unified", "account": "alice"})
    assert (event["type"], event["account"]) == ("UnifiedActivated", "alice")
    master = ledger.account("alice")
    assert (master.mode, master.activated) == ("classic", True)
    assert master.wallets == {"spot": {}, "futures": {"USDT": D(40)}}
    ledger.ok(deposit("sub", "12"))
    ledger.ok(switch("sub", "unified"))
    assert ledger.account("sub").wallets == {"unified": {"USDT": D(12)}}
    ledger.reject({"type": "activate_unified", "account": "alice"}, "already_activated")


def test_activate_unified_with_flag_off_needs_only_assessment(ledger: Ledger) -> None:
    """M7, M3: with the whitelist flag off, an assessed master activates without the whitelist."""
    ledger.ok(flags(whitelist_required=False))
    ledger.open("alice")
    ledger.reject({"type": "activate_unified", "account": "alice"}, "risk_assessment_required")
    assess(ledger, "alice")
    ledger.ok({"type": "activate_unified", "account": "alice"})
    ledger.open("sub", parent="alice")
    ledger.ok(switch("sub", "unified"))


def test_activated_master_may_still_upgrade_itself(ledger: Ledger) -> None:
    """M7, M5: activation does not stop the master from upgrading later."""
    eligible_master(ledger, "alice")
    ledger.ok(switch("alice", "unified"))
    assert ledger.account("alice").mode == "unified"


# --- M8: a sub goes unified through a unified API key ---------------------------------------
def test_sub_becomes_unified_by_creating_unified_api_key(ledger: Ledger) -> None:
    """M8: a unified API key on a classic sub switches the sub (moving its wallets) and records
    the key, in one command."""
    eligible_master(ledger, "alice")
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("sub", "30"))
    ledger.ok(deposit("sub", "20", wallet="futures"))
    events = ledger.ok(api_key("sub", "k1", ["read", "spot"], unified=True))
    assert [e["type"] for e in events] == ["ModeSwitched", "ApiKeyCreated"]
    assert (events[0]["from_mode"], events[0]["to_mode"]) == ("classic", "unified")
    assert (events[1]["key_id"], events[1]["unified"], events[1]["permissions"]) == ("k1", True, ["read", "spot"])
    sub = ledger.account("sub")
    assert sub.mode == "unified"
    assert sub.wallets == {"unified": {"USDT": D(50)}}
    assert sub.api_keys == {"k1": {"unified": True, "permissions": ["read", "spot"]}}


def test_non_unified_api_key_leaves_sub_classic(ledger: Ledger) -> None:
    """M8: only the unified option switches the sub."""
    eligible_master(ledger, "alice")
    ledger.open("sub", parent="alice")
    [event] = ledger.ok(api_key("sub", "k1", ["read"]))
    assert event["type"] == "ApiKeyCreated"
    assert ledger.account("sub").mode == "classic"


def test_unified_api_key_on_already_unified_sub_only_creates_the_key(ledger: Ledger) -> None:
    """M8: a sub already unified just gets the key."""
    eligible_master(ledger, "alice")
    ledger.open("sub", parent="alice")
    ledger.ok(switch("sub", "unified"))
    assert [e["type"] for e in ledger.ok(api_key("sub", "k1", ["spot"], unified=True))] == ["ApiKeyCreated"]


@pytest.mark.parametrize("blocker, code", [
    ("not_whitelisted", "not_whitelisted"),
    ("not_activated", "master_not_eligible"),
    ("pending_order", "pending_orders"),
    ("open_position", "open_positions"),
])
def test_unified_api_key_refused_with_the_m5_code(ledger: Ledger, blocker: str, code: str) -> None:
    """M8, M5: when the sub may not switch, creating the unified key is refused with the M5
    code and nothing (no key, no switch) is recorded."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    if blocker != "not_whitelisted":
        whitelist(ledger, "alice")
        assess(ledger, "alice")
    if blocker in ("pending_order", "open_position"):
        ledger.ok({"type": "activate_unified", "account": "alice"})
        ledger.ok(deposit("sub", "1000", wallet="futures" if blocker == "open_position" else None))
    if blocker == "pending_order":
        ledger.ok(spot_order("sub", "o1"))
    if blocker == "open_position":
        ledger.ok(futures_order("sub", "f1"))
        ledger.ok(fill("sub", "f1", "1"))
    ledger.reject(api_key("sub", "k1", ["spot"], unified=True), code)
    sub = ledger.account("sub")
    assert (sub.mode, sub.api_keys) == ("classic", {})
    # the key id was not taken: a non-unified key with the same id is fine
    ledger.ok(api_key("sub", "k1", ["spot"]))


# --- M9: API keys -------------------------------------------------------------------------------
def keyed_family(ledger: Ledger) -> None:
    """alice (classic master) with key mk; sub (unified via its key sk) with 100 USDT."""
    eligible_master(ledger, "alice")
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("alice", "100"))
    ledger.ok(deposit("sub", "100"))
    ledger.ok(api_key("alice", "mk", ALL_PERMISSIONS))
    ledger.ok(api_key("sub", "sk", ALL_PERMISSIONS, unified=True))


def test_api_key_allows_what_it_permits(ledger: Ledger) -> None:
    """M9, M10: a key of the command's account holding the permission works.  (Deposits,
    which an API key may no longer record (M10), were replaced by withdrawals.)"""
    keyed_family(ledger)
    ledger.ok(withdraw("alice", "5", api_key="mk"))
    ledger.ok(withdraw("sub", "5", api_key="sk"))
    ledger.ok({"type": "transfer", "from_account": "sub", "to_account": "alice", "currency": "USDT",
               "amount": "1", "api_key": "sk"})
    assert ledger.cash("alice", "USDT") == D(96)
    assert ledger.cash("sub", "USDT") == D(94)


def test_unknown_api_key(ledger: Ledger) -> None:
    """M9: a key id nobody created is unknown_api_key."""
    keyed_family(ledger)
    ledger.reject(deposit("alice", "5", api_key="nokey"), "unknown_api_key")


def test_master_key_never_acts_on_sub(ledger: Ledger) -> None:
    """M9: a master's key on its sub (and a sub's key on its master) is api_key_wrong_account."""
    keyed_family(ledger)
    ledger.reject(deposit("sub", "5", api_key="mk"), "api_key_wrong_account")
    ledger.reject(spot_order("sub", "o1", api_key="mk"), "api_key_wrong_account")
    ledger.reject({"type": "transfer", "from_account": "sub", "to_account": "alice", "currency": "USDT",
                   "amount": "1", "api_key": "mk"}, "api_key_wrong_account")
    ledger.reject(deposit("alice", "5", api_key="sk"), "api_key_wrong_account")


def test_api_key_missing_permission_is_forbidden(ledger: Ledger) -> None:
    """M9: each command needs its permission: transfer for deposits, spot/futures for orders."""
    eligible_master(ledger, "alice")
    ledger.ok(deposit("alice", "1000"))
    ledger.ok(deposit("alice", "1000", wallet="futures"))
    ledger.ok(api_key("alice", "read-only", ["read"]))
    ledger.ok(api_key("alice", "spot-only", ["spot"]))
    ledger.ok(api_key("alice", "futures-only", ["futures"]))
    ledger.reject(deposit("alice", "5", api_key="read-only"), "api_key_forbidden")
    ledger.reject(deposit("alice", "5", api_key="spot-only"), "api_key_forbidden")
    ledger.reject(spot_order("alice", "o1", api_key="futures-only"), "api_key_forbidden")
    ledger.reject({**futures_order("alice", "f1"), "api_key": "spot-only"}, "api_key_forbidden")
    ledger.ok(spot_order("alice", "o1", api_key="spot-only"))
    ledger.ok({**futures_order("alice", "f1"), "api_key": "futures-only"})
    # cancelling needs the permission of the order's market
    ledger.reject({"type": "cancel_order", "account": "alice", "order_id": "f1", "api_key": "spot-only"},
                  "api_key_forbidden")
    ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "f1", "api_key": "futures-only"})
    assert set(ledger.account("alice").orders) == {"o1"}


@pytest.mark.parametrize("command", [
    {"type": "switch_mode", "account": "alice", "mode": "unified"},
    {"type": "whitelist", "account": "alice"},
    {"type": "complete_risk_assessment", "account": "alice", **ASSESS},
    {"type": "activate_unified", "account": "alice"},
    {"type": "create_api_key", "account": "alice", "key_id": "k2", "permissions": ["read"]},
])
def test_account_admin_commands_refuse_api_keys(ledger: Ledger, command: dict[str, Any]) -> None:
    """M9: account administration is internal: any API key, even with every permission, is
    api_key_forbidden."""
    ledger.open("alice")
    ledger.ok(flags(whitelist_required=False))
    assess(ledger, "alice")
    ledger.ok(api_key("alice", "all", ALL_PERMISSIONS, unified=True))
    ledger.reject({**command, "api_key": "all"}, "api_key_forbidden")


def test_non_unified_key_on_unified_account(ledger: Ledger) -> None:
    """M9: a key created while classic stops working once the account is unified.  (With
    withdrawals: no key may record a deposit, M10.)"""
    ledger.open("alice")
    whitelist(ledger, "alice")
    assess(ledger, "alice")
    ledger.ok(deposit("alice", "20"))
    ledger.ok(api_key("alice", "plain", ["withdraw"]))
    ledger.ok(api_key("alice", "uni", ["withdraw"], unified=True))
    ledger.ok(withdraw("alice", "5", api_key="plain"))
    ledger.ok(switch("alice", "unified"))
    ledger.reject(withdraw("alice", "5", api_key="plain"), "api_key_not_unified")
    ledger.ok(withdraw("alice", "5", api_key="uni"))
    assert ledger.cash("alice", "USDT") == D(10)


def test_api_key_forbidden_checked_before_not_unified(ledger: Ledger) -> None:
    """M9: a non-unified key without the permission on a unified account: api_key_forbidden."""
    ledger.unified_master("alice")
    ledger.ok(api_key("alice", "ro", ["read"]))
    ledger.reject(deposit("alice", "5", api_key="ro"), "api_key_forbidden")


def test_api_key_exists(ledger: Ledger) -> None:
    """M9: key ids are unique across all accounts."""
    ledger.open("alice")
    ledger.open("bob")
    ledger.ok(api_key("alice", "k1", ["read"]))
    ledger.reject(api_key("alice", "k1", ["spot"]), "api_key_exists")
    ledger.reject(api_key("bob", "k1", ["spot"]), "api_key_exists")
    assert ledger.account("alice").api_keys == {"k1": {"unified": False, "permissions": ["read"]}}
    assert ledger.account("bob").api_keys == {}


def test_api_key_exists_before_m8_switch(ledger: Ledger) -> None:
    """M9, M8: a taken key id refuses the unified key without switching the sub."""
    eligible_master(ledger, "alice")
    ledger.open("sub", parent="alice")
    ledger.ok(api_key("alice", "k1", ["read"]))
    ledger.reject(api_key("sub", "k1", ["read"], unified=True), "api_key_exists")
    assert ledger.account("sub").mode == "classic"


@pytest.mark.parametrize("permissions", [[], ["read", "read"], ["admin"], ["read", "spot", "futures", "transfer", "read"]])
def test_api_key_bad_permissions(ledger: Ledger, permissions: list[str]) -> None:
    """M9: permissions come from read, spot, futures, transfer; at least one, none repeated."""
    ledger.open("alice")
    ledger.reject(api_key("alice", "k1", permissions), "validation_error")


def test_api_key_for_unknown_account(ledger: Ledger) -> None:
    """M9: a key for an account that does not exist is unknown_account."""
    ledger.reject(api_key("ghost", "k1", ["read"]), "unknown_account")


# --- M10: what a key may do -----------------------------------------------------------------------
def test_a_subs_own_transfer_key_cannot_mint_a_deposit(ledger: Ledger) -> None:
    """M10, issue 13 as written: a sub-account's own key with `transfer` recorded
    `deposit 1,000,000` from nowhere.  A deposit is a fact from the exchange's wallet service:
    any key, even one with every permission, is api_key_forbidden and nothing is recorded."""
    eligible_master(ledger, "alice")
    ledger.open("sub", parent="alice")
    ledger.ok(api_key("sub", "sub-transfer", ["transfer"]))
    ledger.ok(api_key("sub", "sub-all", ALL_PERMISSIONS))
    for key in ("sub-transfer", "sub-all"):
        error = ledger.reject(deposit("sub", "1000000", api_key=key), "api_key_forbidden")
        assert "deposit" in error["message"]
        ledger.reject(deposit("sub", "1000000", wallet="futures", api_key=key), "api_key_forbidden")
    assert ledger.account("sub").wallets == {"spot": {}, "futures": {}}
    assert [type(e).__name__ for e in ledger.events("sub")] == ["AccountOpened", "ApiKeyCreated", "ApiKeyCreated"]
    ledger.ok(deposit("sub", "1000000"))  # the wallet service itself (no key) still can
    assert ledger.cash("sub", "USDT") == D(1000000)


@pytest.mark.parametrize("command", [
    {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "5"},
    {"type": "fill_order", "account": "alice", "order_id": "o1", "qty": "1", "price": "10"},
    {"type": "whitelist", "account": "alice"},
    {"type": "complete_risk_assessment", "account": "alice", **ASSESS},
    {"type": "activate_unified", "account": "alice"},
    {"type": "set_price", "currency": "BTC", "price": "20"},
    {"type": "register_currency", "currency": "XRP", "precision": 2},
    {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.5"},
    {"type": "set_borrow_quota", "currency": "USDT", "amount": "100000000"},
    {"type": "set_platform_flags", "whitelist_required": True},
])
def test_facts_refuse_every_api_key(ledger: Ledger, command: dict[str, Any]) -> None:
    """M10: deposits, fills, whitelist entries, risk assessments, activations and every platform
    command come from the exchange's own services: a key with every permission is refused."""
    ledger.open("alice")
    ledger.ok(flags(whitelist_required=False))
    assess(ledger, "alice")
    ledger.ok(deposit("alice", "100"))
    ledger.price("BTC", "10")
    ledger.ok(spot_order("alice", "o1"))
    ledger.ok(api_key("alice", "all", ALL_PERMISSIONS))
    ledger.reject({**command, "api_key": "all"}, "api_key_forbidden")
    ledger.ok(command)  # the same command without a key is the service's own: accepted


def test_withdraw_needs_the_withdraw_permission(ledger: Ledger) -> None:
    """M10: `withdraw` needs `withdraw`; `transfer` needs `transfer`; neither stands in for
    the other."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("alice", "100"))
    ledger.ok(api_key("alice", "t", ["read", "spot", "futures", "transfer"]))
    ledger.ok(api_key("alice", "w", ["withdraw"]))
    move = {"type": "transfer", "from_account": "alice", "to_account": "sub", "currency": "USDT", "amount": "10"}
    error = ledger.reject(withdraw("alice", "10", api_key="t"), "api_key_forbidden")
    assert "withdraw permission" in error["message"]
    ledger.reject({**move, "api_key": "w"}, "api_key_forbidden")
    ledger.ok(withdraw("alice", "10", api_key="w"))
    ledger.ok({**move, "api_key": "t"})
    assert (ledger.cash("alice", "USDT"), ledger.cash("sub", "USDT")) == (D(80), D(10))
    assert ledger.account("alice").api_keys["w"] == {"unified": False, "permissions": ["withdraw"]}


@pytest.mark.parametrize("permission", ["spot", "futures"])
def test_borrow_and_repay_need_spot_or_futures(ledger: Ledger, permission: str) -> None:
    """M10: `borrow` and `repay` need `spot` or `futures`; read, transfer, withdraw do not do."""
    ledger.unified_master("alice", {"USDT": "1000"})
    ledger.ok(api_key("alice", "k", [permission], unified=True))
    ledger.ok(api_key("alice", "other", ["read", "transfer", "withdraw"], unified=True))
    borrow = {"type": "borrow", "account": "alice", "currency": "USDT", "amount": "100"}
    repay = {"type": "repay", "account": "alice", "currency": "USDT", "amount": "40"}
    error = ledger.reject({**borrow, "api_key": "other"}, "api_key_forbidden")
    assert "futures or spot permission" in error["message"]
    ledger.ok({**borrow, "api_key": "k"})
    ledger.reject({**repay, "api_key": "other"}, "api_key_forbidden")
    ledger.ok({**repay, "api_key": "k"})
    assert ledger.liability("alice", "USDT") == D(60)


def test_a_fill_by_key_is_refused_even_with_the_markets_permission(ledger: Ledger) -> None:
    """M10: a fill is reported by the matching engine; an order's own key may place and
    cancel it, never fill it."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "100"))
    ledger.ok(api_key("alice", "k", ["spot"]))
    ledger.ok(spot_order("alice", "o1", api_key="k"))
    ledger.reject({**fill("alice", "o1", "1", "10"), "api_key": "k"}, "api_key_forbidden")
    assert ledger.account("alice").orders["o1"]["filled_qty"] == D(0)
    ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "o1", "api_key": "k"})
