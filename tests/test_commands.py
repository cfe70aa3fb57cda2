"""The command contract: SPEC §12 validation_error cases (and W1 precision, T1 `at` format).

Every case goes through ``Ledger.reject``, which also checks that nothing was recorded (T3).
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import D, Ledger


def deposit(**extra: Any) -> dict[str, Any]:
    return {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "10", **extra}


@pytest.fixture
def alice(ledger: Ledger) -> Ledger:
    """A ledger with one classic master, alice, holding 100 USDT and 1 BTC in spot."""
    ledger.open("alice")
    ledger.ok(deposit(amount="100"))
    ledger.ok(deposit(currency="BTC", amount="1"))
    return ledger


def assert_unchanged(ledger: Ledger) -> None:
    assert ledger.account("alice").wallets == {"spot": {"USDT": D(100), "BTC": D(1)}, "futures": {}}


# --- unknown fields and types -----------------------------------------------------------------
@pytest.mark.parametrize("cmd", [
    deposit(amout="10"),
    deposit(memo="hi"),
    deposit(Account="alice"),
    {"type": "open_account", "account": "bob", "nickname": "b"},
    {"type": "switch_mode", "account": "alice", "mode": "unified", "force": True},
    {"type": "set_collateral_tiers", "currency": "BTC", "tiers": [{"up_to": None, "ratio": "0.5", "x": 1}]},
    {"type": "set_platform_flags", "whitelist_required": False, "debug": True},
])
def test_unknown_fields_are_validation_errors(alice: Ledger, cmd: dict[str, Any]) -> None:
    """§12: a field the command does not have is a validation_error, recorded nowhere."""
    alice.reject(cmd, "validation_error")
    assert_unchanged(alice)


@pytest.mark.parametrize("kind", ["depositt", "Deposit", "DEPOSIT", "", None, 5, ["deposit"], {"x": 1}])
def test_unknown_types_are_validation_errors(alice: Ledger, kind: Any) -> None:
    """§12: a type that is not a command name (or not a string) is a validation_error."""
    alice.reject({**deposit(), "type": kind}, "validation_error")


def test_missing_type_is_validation_error(alice: Ledger) -> None:
    """§12: a command without a type is a validation_error."""
    cmd = deposit()
    del cmd["type"]
    alice.reject(cmd, "validation_error")


@pytest.mark.parametrize("missing", ["account", "currency", "amount"])
def test_missing_required_field_is_validation_error(alice: Ledger, missing: str) -> None:
    """§12: every required field must be there."""
    cmd = deposit()
    del cmd[missing]
    alice.reject(cmd, "validation_error")


# --- amounts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("amount", [10, 10.5, 0, -1, True, None, ["10"], {"v": "10"}])
def test_amount_must_be_a_json_string(alice: Ledger, amount: Any) -> None:
    """§12, W1: amounts are JSON strings, never numbers (floats) or other types."""
    error = alice.reject(deposit(amount=amount), "validation_error")
    assert "amount" in error["message"]
    assert_unchanged(alice)


@pytest.mark.parametrize("amount", [
    "-1", "-0.5", "+1",                       # signs
    "0", "0.0", "0.000000000000000000",       # zero where not allowed
    "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf",
    "1e5", "1E5", "1e-5", "0e0",              # exponents
    "1000000000000000", "99999999999999999999",  # more than 15 integer digits (overflow)
    "", " ", " 1", "1 ", "1.", ".5", "01", "00.1", "1,5", "1_000", "0x10", "1.2.3", "١٠",
])
def test_bad_amount_strings(alice: Ledger, amount: str) -> None:
    """§12, W1: negative, zero, NaN, exponents, overflow and anything but a plain decimal."""
    error = alice.reject(deposit(amount=amount), "validation_error")
    assert "amount" in error["message"]
    assert_unchanged(alice)


def test_amount_with_trailing_newline_is_refused(alice: Ledger) -> None:
    """§12, W1: "10\\n" is not a plain decimal string."""
    alice.reject(deposit(amount="10\n"), "validation_error")


def test_more_than_18_decimals_refused_by_the_contract(alice: Ledger) -> None:
    """§12: more than 18 decimals is a validation_error even for a precision-18 currency."""
    alice.ok({"type": "register_currency", "currency": "WEI", "precision": 18})
    alice.reject(deposit(currency="WEI", amount="0.0000000000000000001"), "validation_error")
    alice.ok(deposit(currency="WEI", amount="0.000000000000000001"))
    assert alice.cash("alice", "WEI") == D("1E-18")


@pytest.mark.parametrize("amount", ["0.000000001", "1.123456789"])
def test_more_decimals_than_currency_precision(alice: Ledger, amount: str) -> None:
    """W1: USDT has 8 decimals; 9 is a validation_error from the domain, recorded nowhere."""
    error = alice.reject(deposit(amount=amount), "validation_error")
    assert "8" in error["message"]
    alice.reject({"type": "withdraw", "account": "alice", "currency": "USDT", "amount": amount}, "validation_error")
    assert_unchanged(alice)


def test_currency_precision_is_the_registered_one(alice: Ledger) -> None:
    """W1: a currency registered with 2 decimals refuses a third."""
    alice.ok({"type": "register_currency", "currency": "EUR", "precision": 2})
    alice.reject(deposit(currency="EUR", amount="1.001"), "validation_error")
    alice.ok(deposit(currency="EUR", amount="1.01"))
    assert alice.cash("alice", "EUR") == D("1.01")


def test_order_quantities_and_prices_precision(alice: Ledger) -> None:
    """W1, O1: an order's qty (base precision) and price (USDT precision) are checked too."""
    order = {"type": "place_order", "account": "alice", "order_id": "o1", "market": "spot",
             "symbol": "BTC-USDT", "side": "sell", "qty": "0.5", "price": "10"}
    alice.reject({**order, "qty": "0.000000001"}, "validation_error")
    alice.reject({**order, "price": "10.000000001"}, "validation_error")
    alice.reject({**order, "price": 10}, "validation_error")
    alice.reject({**order, "qty": "-0.5"}, "validation_error")
    alice.ok(order)


def test_smallest_and_largest_plain_amounts_accepted(alice: Ledger) -> None:
    """W1: 8 decimals and 15 integer digits are within the contract for USDT."""
    alice.ok(deposit(amount="0.00000001"))
    alice.ok(deposit(amount="999999999999999"))
    assert alice.cash("alice", "USDT") == D("1000000000000099.00000001")


@pytest.mark.parametrize("field, value", [
    ("hourly_rate", "-0.1"), ("hourly_rate", "1.5"), ("hourly_rate", 0.01), ("hourly_rate", "NaN"),
])
def test_bad_rates(alice: Ledger, field: str, value: Any) -> None:
    """§12, §4: rates are decimal strings within 0..1."""
    alice.reject({"type": "set_interest_rate", "currency": "USDT", field: value}, "validation_error")


# --- `at` -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("at", [
    "2026-03-01", "2026-03-01T00:00:00", "2026-03-01T00:00Z", "yesterday", "", "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-03-01T25:00:00Z", "2026-03-01T00:00:00+2500", "01/03/2026 00:00:00Z",
    1772323200, 1772323200.0, ["2026-03-01T00:00:00Z"],
])
def test_malformed_at(alice: Ledger, at: Any) -> None:
    """T1, §12: `at` is an RFC 3339 string with a time zone; anything else is refused."""
    error = alice.reject(deposit(at=at), "validation_error")
    assert "at" in error["message"]
    assert_unchanged(alice)


def test_at_with_offset_is_stored_in_utc(ledger: Ledger) -> None:
    """T1: an offset is converted; events carry RFC 3339 UTC."""
    [event] = ledger.ok({"type": "open_account", "account": "alice", "at": "2026-03-01T12:30:00+02:00"})
    assert event["at"] == "2026-03-01T10:30:00Z"
    [event] = ledger.ok(deposit(at="2026-03-01T10:30:00.250000Z"))
    assert event["at"] == "2026-03-01T10:30:00.250000Z"


# --- ids ------------------------------------------------------------------------------------------
BAD_IDS = ["", "-x", "a b", "x" * 65, "a/b", "é", "a\tb"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("cmd, field", [
    (deposit(), "account"),
    ({"type": "open_account", "account": "sub"}, "parent"),
    ({"type": "create_api_key", "account": "alice", "key_id": "k", "permissions": ["read"]}, "key_id"),
    ({"type": "place_order", "account": "alice", "order_id": "o", "market": "spot", "symbol": "BTC-USDT",
      "side": "sell", "qty": "1", "price": "1"}, "order_id"),
    ({"type": "transfer", "from_account": "alice", "to_account": "alice", "currency": "USDT", "amount": "1",
      "from_wallet": "spot", "to_wallet": "futures"}, "to_account"),
    (deposit(), "api_key"),
])
def test_malformed_ids(alice: Ledger, cmd: dict[str, Any], field: str, bad: str) -> None:
    """M1, §12: account, parent, key and order ids follow the M1 pattern."""
    error = alice.reject({**cmd, field: bad}, "validation_error")
    assert field in error["message"]
    assert_unchanged(alice)


@pytest.mark.parametrize("command_id", ["", "-1", "a b", "x" * 129, 17, ["c1"]])
def test_malformed_command_id(alice: Ledger, command_id: Any) -> None:
    """T2, §12: a command_id must be a short id string."""
    alice.reject(deposit(command_id=command_id), "validation_error")


@pytest.mark.parametrize("field, value", [
    ("currency", "usdt"), ("currency", "U"), ("currency", 5), ("wallet", "margin"),
    ("account", 5), ("account", None),
])
def test_malformed_names(alice: Ledger, field: str, value: Any) -> None:
    """§12: currency codes, wallet names and ids are strings of the documented forms."""
    alice.reject(deposit(**{field: value}), "validation_error")


def test_unknown_currency_is_not_a_validation_error(alice: Ledger) -> None:
    """W1: a well-formed but unregistered currency is unknown_currency."""
    alice.reject(deposit(currency="DOGE"), "unknown_currency")


def test_rejected_first_command_does_not_even_initialise_the_platform(ledger: Ledger) -> None:
    """T3: a command rejected after touching the platform leaves no PlatformInitialised."""
    ledger.open("alice")
    ledger.reject(deposit(currency="DOGE"), "unknown_currency")
    ledger.reject(deposit(amount="1.000000001"), "validation_error")
    ledger.ok(deposit())
    assert ledger.cash("alice", "USDT") == D(10)


# --- the JSON level -------------------------------------------------------------------------------
def test_non_object_inputs_through_the_application(ledger: Ledger) -> None:
    """§12: LedgerApp.apply answers one result per input, in order; a JSON value that is not an
    object is a validation_error and records nothing, while the objects around it apply."""
    ledger.open("alice")
    before = ledger.app.recorder.max_notification_id()
    inputs: list[Any] = ["deposit", 5, 1.5, None, True, [], [deposit()], deposit(amount="7"), {}]
    results = ledger.app.apply(inputs, ledger.now, ledger.latest)
    assert len(results) == len(inputs)
    codes = [r["error"]["code"] if not r["ok"] else "ok" for r in results]
    assert codes == ["validation_error"] * 7 + ["ok", "validation_error"]
    for r in results:
        if not r["ok"]:
            assert set(r) == {"ok", "error"} and r["error"]["message"]
    assert [e["type"] for e in results[7]["events"]] == ["Deposited"]
    assert ledger.cash("alice", "USDT") == D(7)
    # only the deposit was recorded: a second application sees just that
    assert [type(e).__name__ for e in ledger.reopen().events("alice")] == ["AccountOpened", "Deposited"]
    assert ledger.app.recorder.max_notification_id() > before


def test_json_decoded_lines(ledger: Ledger) -> None:
    """§12: what a JSON Lines reader decodes goes straight in; bad lines are validation_error."""
    import json

    lines = [
        '{"type": "open_account", "account": "alice"}',
        '{"type": "deposit", "account": "alice", "currency": "USDT", "amount": 10}',
        '{"type": "deposit", "account": "alice", "currency": "USDT", "amount": "10.5"}',
        '["deposit"]',
        '"open_account"',
        '{"type": "deposit", "account": "alice", "currency": "USDT", "amount": "NaN"}',
    ]
    results = ledger.app.apply([json.loads(line) for line in lines], ledger.now, ledger.latest)
    assert [r["ok"] for r in results] == [True, False, True, False, False, False]
    assert {r["error"]["code"] for r in results if not r["ok"]} == {"validation_error"}
    assert ledger.cash("alice", "USDT") == D("10.5")
