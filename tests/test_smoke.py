from tests.helpers import D, Ledger


def test_deposit_then_duplicate_command_id_records_once(ledger: Ledger) -> None:
    ledger.open("alice")
    cmd = {"type": "deposit", "account": "alice", "currency": "USDT", "amount": "10", "command_id": "dep-1"}
    first = ledger.apply(cmd)[0]
    again = ledger.apply(cmd)[0]
    assert again == {**first, "duplicate": True}
    assert ledger.cash("alice", "USDT") == D(10)
    ledger.reject({**cmd, "amount": "11"}, "command_id_conflict")
