"""Money movements (SPEC §2): W1 currencies and precision, W2 deposit / withdraw, W3 transfers,
W4 available balance."""
from __future__ import annotations

from tests.helpers import D, Ledger, at


def deposit(account: str, currency: str, amount: str, **extra: object) -> dict[str, object]:
    return {"type": "deposit", "account": account, "currency": currency, "amount": amount, **extra}


def withdraw(account: str, currency: str, amount: str, **extra: object) -> dict[str, object]:
    return {"type": "withdraw", "account": account, "currency": currency, "amount": amount, **extra}


def transfer(src: str, dst: str, currency: str, amount: str, **extra: object) -> dict[str, object]:
    return {"type": "transfer", "from_account": src, "to_account": dst, "currency": currency,
            "amount": amount, **extra}


def buy(account: str, order_id: str, qty: str, price: str, market: str = "spot") -> dict[str, object]:
    return {"type": "place_order", "account": account, "order_id": order_id, "market": market,
            "symbol": "BTC-USDT", "side": "buy", "qty": qty, "price": price}


# --- W1 ----------------------------------------------------------------------------------------
def test_unknown_currency_is_rejected_everywhere(ledger: Ledger) -> None:
    """W1: a currency that is not registered is unknown_currency for deposit, withdraw, transfer."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    ledger.ok(deposit("alice", "USDT", "10"))
    ledger.reject(deposit("alice", "DOGE", "1"), "unknown_currency")
    ledger.reject(withdraw("alice", "DOGE", "1"), "unknown_currency")
    ledger.reject(transfer("alice", "sub", "DOGE", "1"), "unknown_currency")
    assert ledger.cash("alice", "USDT") == D(10)


def test_default_precision_is_eight_places(ledger: Ledger) -> None:
    """W1: default currencies take 8 decimals, a 9th is validation_error."""
    ledger.open("alice")
    for currency in ("USDT", "USDC", "BTC", "ETH", "KCS"):
        ledger.ok(deposit("alice", currency, "0.00000001"))
        ledger.reject(deposit("alice", currency, "0.000000001"), "validation_error")
        assert ledger.cash("alice", currency) == D("0.00000001")


def test_registered_precision_limits_decimals(ledger: Ledger) -> None:
    """W1: after register_currency with precision 2, 2 decimals pass and 3 are validation_error."""
    ledger.open("alice")
    ledger.open("sub", parent="alice")
    ledger.ok({"type": "register_currency", "currency": "XYZ", "precision": 2})
    ledger.ok(deposit("alice", "XYZ", "1.23"))
    ledger.reject(deposit("alice", "XYZ", "1.234"), "validation_error")
    ledger.reject(withdraw("alice", "XYZ", "0.001"), "validation_error")
    ledger.reject(transfer("alice", "sub", "XYZ", "0.005"), "validation_error")
    ledger.ok(withdraw("alice", "XYZ", "0.23"))
    assert ledger.cash("alice", "XYZ") == D(1)


def test_amounts_are_decimal_strings_not_floats(ledger: Ledger) -> None:
    """W1/§12: a JSON number, a negative, zero, NaN or exponent amount is validation_error."""
    ledger.open("alice")
    for bad in (10.5, 10, "-1", "0", "NaN", "1e3", "1.5.0", ""):
        ledger.reject(deposit("alice", "USDT", bad), "validation_error")  # type: ignore[arg-type]
    assert ledger.cash("alice", "USDT") == 0


# --- W2 ----------------------------------------------------------------------------------------
def test_deposit_goes_to_trading_wallet_by_mode(ledger: Ledger) -> None:
    """W2: classic deposits land in `spot`, unified deposits in `unified`."""
    ledger.open("classic")
    events = ledger.ok(deposit("classic", "USDT", "100.5"))
    assert [(e["type"], e["wallet"], e["amount"], e["currency"]) for e in events] == [
        ("Deposited", "spot", "100.5", "USDT")]
    assert ledger.cash("classic", "USDT", "spot") == D("100.5")
    assert ledger.cash("classic", "USDT", "futures") == 0

    ledger.unified_master("uni")
    events = ledger.ok(deposit("uni", "BTC", "0.25"))
    assert [(e["type"], e["wallet"], e["amount"]) for e in events] == [("Deposited", "unified", "0.25")]
    assert ledger.cash("uni", "BTC", "unified") == D("0.25")
    assert ledger.view("uni")["wallets"] == {"unified": {"BTC": "0.25"}}


def test_deposit_to_named_wallet(ledger: Ledger) -> None:
    """W2: `wallet` names another of the account's wallets (classic futures)."""
    ledger.open("alice")
    events = ledger.ok(deposit("alice", "USDT", "70", wallet="futures"))
    assert events[0]["wallet"] == "futures"
    assert ledger.cash("alice", "USDT", "futures") == D(70)
    assert ledger.cash("alice", "USDT", "spot") == 0
    ledger.ok(deposit("alice", "USDT", "5", wallet="spot"))
    assert ledger.view("alice")["wallets"] == {"spot": {"USDT": "5"}, "futures": {"USDT": "70"}}


def test_unknown_wallet_for_mode(ledger: Ledger) -> None:
    """W2: a wallet the account's mode does not have is unknown_wallet."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "10"))
    ledger.reject(deposit("alice", "USDT", "1", wallet="unified"), "unknown_wallet")
    ledger.reject(withdraw("alice", "USDT", "1", wallet="unified"), "unknown_wallet")
    ledger.unified_master("uni", deposits={"USDT": "10"})
    ledger.reject(deposit("uni", "USDT", "1", wallet="spot"), "unknown_wallet")
    ledger.reject(deposit("uni", "USDT", "1", wallet="futures"), "unknown_wallet")
    ledger.reject(withdraw("uni", "USDT", "1", wallet="spot"), "unknown_wallet")
    ledger.reject(deposit("uni", "USDT", "1", wallet="wallet9"), "validation_error")


def test_withdraw_at_most_available(ledger: Ledger) -> None:
    """W2: withdraw debits the trading wallet and may not exceed the available balance."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100"))
    ledger.reject(withdraw("alice", "USDT", "100.00000001"), "insufficient_balance")
    ledger.reject(withdraw("alice", "BTC", "0.00000001"), "insufficient_balance")
    events = ledger.ok(withdraw("alice", "USDT", "60.5"))
    assert [(e["type"], e["wallet"], e["amount"]) for e in events] == [("Withdrawn", "spot", "60.5")]
    ledger.ok(withdraw("alice", "USDT", "39.5"))
    assert ledger.cash("alice", "USDT") == 0
    ledger.reject(withdraw("alice", "USDT", "0.00000001"), "insufficient_balance")


def test_withdraw_from_named_wallet_uses_that_wallet_only(ledger: Ledger) -> None:
    """W2: a withdrawal from `futures` is limited by the futures wallet, whatever spot holds."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(deposit("alice", "USDT", "10", wallet="futures"))
    ledger.reject(withdraw("alice", "USDT", "10.00000001", wallet="futures"), "insufficient_balance")
    ledger.ok(withdraw("alice", "USDT", "10", wallet="futures"))
    assert ledger.cash("alice", "USDT", "futures") == 0
    assert ledger.cash("alice", "USDT", "spot") == D(1000)


def test_withdraw_blocked_by_holds_of_open_orders(ledger: Ledger) -> None:
    """W2/W4: funds held by an open order (buy: quote, sell: base) cannot be withdrawn."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(deposit("alice", "BTC", "1"))
    ledger.ok(buy("alice", "b1", "0.01", "50000"))  # holds 500 USDT
    ledger.ok({"type": "place_order", "account": "alice", "order_id": "s1", "market": "spot",
               "symbol": "BTC-USDT", "side": "sell", "qty": "0.4", "price": "60000"})  # holds 0.4 BTC
    ledger.reject(withdraw("alice", "USDT", "500.00000001"), "insufficient_balance")
    ledger.reject(withdraw("alice", "BTC", "0.60000001"), "insufficient_balance")
    ledger.ok(withdraw("alice", "USDT", "500"))
    ledger.ok(withdraw("alice", "BTC", "0.6"))
    assert ledger.cash("alice", "USDT") == D(500)
    assert ledger.cash("alice", "BTC") == D("0.4")
    # cancelling releases the hold, so it can then be withdrawn
    ledger.ok({"type": "cancel_order", "account": "alice", "order_id": "b1"})
    ledger.ok(withdraw("alice", "USDT", "500"))
    assert ledger.cash("alice", "USDT") == 0


def test_unified_withdraw_may_not_leave_im_above_ae(ledger: Ledger) -> None:
    """W2: unified withdraw leaving IM > AE is insufficient_margin; IM = AE is allowed.

    1000 USDT deposited, 500 USDT borrowed: cash 1500, liability 500, IM = 500 × 0.2 = 100.
    After withdrawing w: AE = 1000 − w, so w ≤ 900."""
    ledger.unified_master("uni", deposits={"USDT": "1000"})
    ledger.ok({"type": "borrow", "account": "uni", "currency": "USDT", "amount": "500"})
    assert ledger.cash("uni", "USDT") == D(1500)
    ledger.reject(withdraw("uni", "USDT", "1500.00000001"), "insufficient_balance")
    ledger.reject(withdraw("uni", "USDT", "1000"), "insufficient_margin")
    ledger.reject(withdraw("uni", "USDT", "900.00000001"), "insufficient_margin")
    ledger.ok(withdraw("uni", "USDT", "900"))
    view = ledger.view("uni")
    assert D(view["adjusted_equity"]) == D(100)
    assert D(view["initial_margin"]) == D(100)
    assert ledger.cash("uni", "USDT") == D(600)
    assert ledger.liability("uni", "USDT") == D(500)
    ledger.reject(withdraw("uni", "USDT", "0.00000001"), "insufficient_margin")


def test_unified_transfer_out_also_checks_margin(ledger: Ledger) -> None:
    """W2/W3: a transfer out of a unified wallet is a pay-out: IM must stay ≤ AE."""
    ledger.unified_master("uni", deposits={"USDT": "1000"})
    ledger.open("sub", parent="uni")
    ledger.ok({"type": "borrow", "account": "uni", "currency": "USDT", "amount": "500"})
    ledger.reject(transfer("uni", "sub", "USDT", "900.00000001"), "insufficient_margin")
    ledger.ok(transfer("uni", "sub", "USDT", "900"))
    assert ledger.cash("sub", "USDT") == D(900)


def test_unified_withdraw_without_liability_takes_everything(ledger: Ledger) -> None:
    """W2: with nothing owed and no position, the whole unified balance can be withdrawn."""
    ledger.unified_master("uni", deposits={"USDT": "250", "BTC": "1"})
    ledger.ok(withdraw("uni", "USDT", "250"))
    ledger.ok(withdraw("uni", "BTC", "1"))
    assert ledger.view("uni")["wallets"] == {"unified": {}}


# --- W3 ----------------------------------------------------------------------------------------
def test_transfers_within_one_family(ledger: Ledger) -> None:
    """W3: master→sub, sub→master and sub→sub of one master move funds between trading wallets."""
    ledger.open("m")
    ledger.open("s1", parent="m")
    ledger.open("s2", parent="m")
    ledger.ok(deposit("m", "USDT", "100"))

    events = ledger.ok(transfer("m", "s1", "USDT", "60"))
    assert [(e["type"], e["account"], e["amount"], e["wallet"]) for e in events] == [
        ("TransferredOut", "m", "60", "spot"), ("TransferredIn", "s1", "60", "spot")]
    assert events[0]["to_account"] == "s1" and events[1]["from_account"] == "m"

    events = ledger.ok(transfer("s1", "s2", "USDT", "25"))
    assert [(e["type"], e["account"]) for e in events] == [("TransferredOut", "s1"), ("TransferredIn", "s2")]

    ledger.ok(transfer("s2", "m", "USDT", "10"))
    assert (ledger.cash("m", "USDT"), ledger.cash("s1", "USDT"), ledger.cash("s2", "USDT")) == (
        D(50), D(35), D(15))
    ledger.reject(transfer("s2", "s1", "USDT", "15.00000001"), "insufficient_balance")


def test_transfer_between_own_wallets(ledger: Ledger) -> None:
    """W3: one account's own wallets, spot→futures and back."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "100"))
    events = ledger.ok(transfer("alice", "alice", "USDT", "30", from_wallet="spot", to_wallet="futures"))
    assert [(e["type"], e["from_wallet"], e["to_wallet"], e["amount"]) for e in events] == [
        ("WalletTransferred", "spot", "futures", "30")]
    assert ledger.cash("alice", "USDT", "spot") == D(70)
    assert ledger.cash("alice", "USDT", "futures") == D(30)
    ledger.reject(transfer("alice", "alice", "USDT", "30.00000001", from_wallet="futures",
                           to_wallet="spot"), "insufficient_balance")
    ledger.ok(transfer("alice", "alice", "USDT", "10", from_wallet="futures", to_wallet="spot"))
    assert ledger.cash("alice", "USDT", "futures") == D(20)
    assert ledger.cash("alice", "USDT", "spot") == D(80)


def test_transfer_to_named_wallet_of_a_sub(ledger: Ledger) -> None:
    """W3: `to_wallet` picks the receiving wallet of the other account."""
    ledger.open("m")
    ledger.open("s1", parent="m")
    ledger.ok(deposit("m", "USDT", "100"))
    ledger.ok(transfer("m", "s1", "USDT", "40", to_wallet="futures"))
    assert ledger.cash("s1", "USDT", "futures") == D(40)
    assert ledger.cash("s1", "USDT", "spot") == 0


def test_transfer_not_allowed_outside_family(ledger: Ledger) -> None:
    """W3: unrelated masters, subs of different masters, a master and another's sub, the same
    wallet: transfer_not_allowed."""
    ledger.open("m1")
    ledger.open("m2")
    ledger.open("a1", parent="m1")
    ledger.open("b1", parent="m2")
    for acct in ("m1", "m2", "a1", "b1"):
        ledger.ok(deposit(acct, "USDT", "100"))
    ledger.reject(transfer("m1", "m2", "USDT", "1"), "transfer_not_allowed")
    ledger.reject(transfer("a1", "b1", "USDT", "1"), "transfer_not_allowed")
    ledger.reject(transfer("m1", "b1", "USDT", "1"), "transfer_not_allowed")
    ledger.reject(transfer("b1", "m1", "USDT", "1"), "transfer_not_allowed")
    ledger.reject(transfer("m1", "m1", "USDT", "1"), "transfer_not_allowed")
    ledger.reject(transfer("a1", "a1", "USDT", "1", from_wallet="spot", to_wallet="spot"),
                  "transfer_not_allowed")
    ledger.reject(transfer("m1", "m1", "USDT", "1", from_wallet="futures", to_wallet="futures"),
                  "transfer_not_allowed")
    for acct in ("m1", "m2", "a1", "b1"):
        assert ledger.cash(acct, "USDT") == D(100)


def test_unified_account_has_one_wallet_to_transfer_between(ledger: Ledger) -> None:
    """W3: a unified account has only `unified`: own-wallet transfer is not allowed, `spot` unknown."""
    ledger.unified_master("uni", deposits={"USDT": "10"})
    ledger.reject(transfer("uni", "uni", "USDT", "1"), "transfer_not_allowed")
    ledger.reject(transfer("uni", "uni", "USDT", "1", from_wallet="unified", to_wallet="spot"),
                  "unknown_wallet")


def test_transfer_blocked_by_holds(ledger: Ledger) -> None:
    """W3/W4: a transfer pays out at most the available balance (cash − holds)."""
    ledger.open("m")
    ledger.open("s", parent="m")
    ledger.ok(deposit("m", "USDT", "1000"))
    ledger.ok(buy("m", "b1", "0.01", "50000"))  # holds 500
    ledger.reject(transfer("m", "s", "USDT", "500.00000001"), "insufficient_balance")
    ledger.reject(transfer("m", "m", "USDT", "500.00000001", from_wallet="spot", to_wallet="futures"),
                  "insufficient_balance")
    ledger.ok(transfer("m", "s", "USDT", "500"))
    assert ledger.cash("m", "USDT") == D(500)


def test_transfer_into_unified_sub_lands_in_unified(ledger: Ledger) -> None:
    """W3: a transfer into a unified sub-account lands in its `unified` trading wallet."""
    ledger.unified_master("m", deposits={"USDT": "100"})
    ledger.open("s", parent="m")
    ledger.ok({"type": "switch_mode", "account": "s", "mode": "unified"})
    events = ledger.ok(transfer("m", "s", "USDT", "40"))
    assert events[-1]["wallet"] == "unified"
    assert ledger.cash("s", "USDT", "unified") == D(40)


# --- W4 ----------------------------------------------------------------------------------------
def test_available_is_cash_minus_holds(ledger: Ledger) -> None:
    """W4: available = cash − holds of open orders, per currency."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "USDT", "1000"))
    ledger.ok(deposit("alice", "BTC", "2"))
    ledger.ok(buy("alice", "b1", "0.003", "40000"))  # 120
    ledger.ok(buy("alice", "b2", "0.001", "30000.5"))  # 30.0005
    ledger.ok({"type": "place_order", "account": "alice", "order_id": "s1", "market": "spot",
               "symbol": "BTC-USDT", "side": "sell", "qty": "0.75", "price": "60000"})
    platform = ledger.platform()
    acct = ledger.account("alice")
    assert acct.available("USDT", platform) == D("849.9995")
    assert acct.available("BTC", platform) == D("1.25")
    balances = ledger.view("alice")["balances"]
    assert (D(balances["USDT"]["cash"]), D(balances["USDT"]["available"])) == (D(1000), D("849.9995"))
    assert (D(balances["BTC"]["cash"]), D(balances["BTC"]["available"])) == (D(2), D("1.25"))


def test_available_unified_usdt_includes_negative_upl_only(ledger: Ledger) -> None:
    """W4: in unified mode USDT available = cash − holds + UPL when UPL is negative."""
    ledger.price("BTC", "50000")
    ledger.unified_master("uni", deposits={"USDT": "10000"})
    ledger.ok(buy("uni", "f1", "1", "50000", market="futures"))
    ledger.ok({"type": "fill_order", "account": "uni", "order_id": "f1", "qty": "1", "price": "50000"})
    assert ledger.cash("uni", "USDT") == D(10000)

    ledger.price("BTC", "51000")  # UPL +1000 does not add
    assert D(ledger.view("uni")["balances"]["USDT"]["available"]) == D(10000)
    assert ledger.account("uni").available("USDT", ledger.platform()) == D(10000)

    ledger.price("BTC", "49000")  # UPL −1000
    view = ledger.view("uni")
    assert view["positions"][0]["unrealized_pnl"] == "-1000"
    assert D(view["balances"]["USDT"]["cash"]) == D(10000)
    assert D(view["balances"]["USDT"]["available"]) == D(9000)
    assert ledger.liability("uni", "USDT") == 0  # cash covers the loss: nothing borrowed
    ledger.reject(withdraw("uni", "USDT", "9000.00000001"), "insufficient_balance")
    # then the margin rule: AE = cash − 1000, IM = 49000 × 0.1 = 4900, so cash ≥ 5900
    ledger.ok(withdraw("uni", "USDT", "4100"))
    ledger.reject(withdraw("uni", "USDT", "0.00000001"), "insufficient_margin")
    # a spot buy hold reduces it further
    ledger.ok(deposit("uni", "USDT", "1000"))
    ledger.ok(buy("uni", "b1", "0.01", "30000"))  # holds 300
    assert D(ledger.view("uni")["balances"]["USDT"]["available"]) == D(6900 - 1000 - 300)
