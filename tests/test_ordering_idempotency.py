"""Time, ordering, idempotency and atomicity: SPEC §11, rules T1, T2, T3."""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.service.app import canonical

from tests.helpers import D, Ledger, at


def deposit(account: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"type": "deposit", "account": account, "currency": "USDT", "amount": amount, **extra}


def withdraw(account: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"type": "withdraw", "account": account, "currency": "USDT", "amount": amount, **extra}


def last_id(ledger: Ledger) -> int | None:
    return ledger.app.recorder.max_notification_id()


def codes(results: list[dict[str, Any]]) -> list[str]:
    return ["ok" if r["ok"] else r["error"]["code"] for r in results]


# --- T1 -----------------------------------------------------------------------------------------
def test_out_of_order_per_account_other_accounts_unaffected(ledger: Ledger) -> None:
    """T1: an account's `at` never goes back; another account may still act at that time."""
    ledger.ok({"type": "open_account", "account": "alice", "at": at(1)})
    ledger.ok({"type": "open_account", "account": "bob", "at": at(1)})
    ledger.ok(deposit("alice", "10", at=at(10)))
    error = ledger.reject(deposit("alice", "5", at=at(5)), "out_of_order")
    assert "alice" in error["message"]
    ledger.ok(deposit("bob", "5", at=at(5)))  # bob's clock is its own
    ledger.ok(deposit("alice", "1", at=at(10)))  # the same instant is not going back
    ledger.ok(deposit("alice", "1", at=at(11)))
    ledger.reject(withdraw("alice", "1", at=at(10)), "out_of_order")
    assert ledger.cash("alice", "USDT") == D(12)
    assert ledger.cash("bob", "USDT") == D(5)
    assert [e.at.isoformat() for e in ledger.events("alice", "Deposited")] == [
        "2026-03-01T00:10:00+00:00", "2026-03-01T00:10:00+00:00", "2026-03-01T00:11:00+00:00"]


def test_out_of_order_compares_instants_across_offsets(ledger: Ledger) -> None:
    """T1: 11:00+02:00 is 09:00Z, earlier than 10:00Z."""
    ledger.ok({"type": "open_account", "account": "alice", "at": "2026-03-01T10:00:00Z"})
    ledger.reject(deposit("alice", "5", at="2026-03-01T11:00:00+02:00"), "out_of_order")
    ledger.ok(deposit("alice", "5", at="2026-03-01T12:00:00+02:00"))
    ledger.ok(deposit("alice", "5", at="2026-03-01T06:00:01-04:00"))


def test_out_of_order_master_and_sub_are_separate(ledger: Ledger) -> None:
    """T1: a sub's clock is not its master's."""
    ledger.ok({"type": "open_account", "account": "alice", "at": at(1)})
    ledger.ok({"type": "open_account", "account": "sub", "parent": "alice", "at": at(2)})
    ledger.ok(deposit("alice", "100", at=at(30)))
    ledger.ok(deposit("sub", "100", at=at(20)))
    ledger.reject(deposit("sub", "1", at=at(19)), "out_of_order")


def test_out_of_order_on_either_side_of_a_transfer(ledger: Ledger) -> None:
    """T1: a transfer acts on both accounts; if either has later events it is out_of_order
    and no money moves."""
    ledger.ok({"type": "open_account", "account": "alice", "at": at(1)})
    ledger.ok({"type": "open_account", "account": "sub", "parent": "alice", "at": at(1)})
    ledger.ok(deposit("alice", "100", at=at(5)))
    ledger.ok(deposit("sub", "1", at=at(20)))
    move = {"type": "transfer", "from_account": "alice", "to_account": "sub", "currency": "USDT", "amount": "10"}
    ledger.reject({**move, "at": at(10)}, "out_of_order")
    ledger.reject({"type": "transfer", "from_account": "sub", "to_account": "alice", "currency": "USDT",
                   "amount": "1", "at": at(3)}, "out_of_order")
    assert (ledger.cash("alice", "USDT"), ledger.cash("sub", "USDT")) == (D(100), D(1))
    ledger.ok({**move, "at": at(20)})
    assert (ledger.cash("alice", "USDT"), ledger.cash("sub", "USDT")) == (D(90), D(11))


def test_out_of_order_inside_one_batch(ledger: Ledger) -> None:
    """T1, T3: within one batch, a later command going back is refused; the rest applies."""
    ledger.open("alice")
    results = ledger.apply(
        deposit("alice", "10", at=at(10)),
        deposit("alice", "20", at=at(9)),
        deposit("alice", "30", at=at(10)),
    )
    assert codes(results) == ["ok", "out_of_order", "ok"]
    assert ledger.reopen().account("alice").cash("USDT") == D(40)


# --- T2 -----------------------------------------------------------------------------------------
def test_duplicate_answers_first_result_and_records_nothing(ledger: Ledger) -> None:
    """T2: the same command_id again answers the first result plus "duplicate": true."""
    ledger.open("alice")
    cmd = deposit("alice", "10", command_id="dep-1")
    [first] = ledger.apply(cmd)
    assert first["ok"] and "duplicate" not in first
    assert [(e["type"], D(e["amount"])) for e in first["events"]] == [("Deposited", D(10))]
    before = last_id(ledger)
    [again] = ledger.apply(cmd)
    assert again == {**first, "duplicate": True}
    assert last_id(ledger) == before
    assert ledger.cash("alice", "USDT") == D(10)
    assert len(ledger.events("alice", "Deposited")) == 1


def test_duplicate_of_open_account_is_not_account_exists(ledger: Ledger) -> None:
    """T2: a retried open_account answers its first result, not account_exists."""
    cmd = {"type": "open_account", "account": "alice", "command_id": "open-alice"}
    first = ledger.apply(cmd)[0]
    assert first["ok"]
    assert ledger.apply(cmd)[0] == {**first, "duplicate": True}


def test_duplicate_is_answered_even_when_its_at_is_now_in_the_past(ledger: Ledger) -> None:
    """T2 before T1: a retry of an accepted command is a duplicate, not out_of_order."""
    ledger.ok({"type": "open_account", "account": "alice", "at": at(0)})
    cmd = deposit("alice", "10", at=at(1), command_id="c1")
    first = ledger.apply(cmd)[0]
    ledger.ok(deposit("alice", "1", at=at(60)))
    assert ledger.apply(cmd)[0] == {**first, "duplicate": True}
    assert ledger.cash("alice", "USDT") == D(11)


def test_duplicate_ignores_key_order(ledger: Ledger) -> None:
    """T2: the content is the JSON object, not the order of its keys."""
    ledger.open("alice")
    cmd = deposit("alice", "10", command_id="c1")
    first = ledger.apply(cmd)[0]
    reordered = dict(reversed(list(cmd.items())))
    assert ledger.apply(reordered)[0] == {**first, "duplicate": True}


def test_same_id_different_content_is_conflict(ledger: Ledger) -> None:
    """T2: the same command_id with other content is command_id_conflict, recorded nowhere."""
    ledger.open("alice")
    ledger.open("bob")
    cmd = deposit("alice", "10", command_id="c1", at=at(5))
    ledger.ok(cmd)
    for other in (
        {**cmd, "amount": "11"},
        {**cmd, "account": "bob"},
        {**cmd, "at": at(6)},
        {**cmd, "wallet": "spot"},
        {**withdraw("alice", "10"), "command_id": "c1", "at": at(5)},
        {"type": "open_account", "account": "carol", "command_id": "c1"},
    ):
        error = ledger.reject(other, "command_id_conflict")
        assert "c1" in error["message"]
    assert ledger.cash("alice", "USDT") == D(10)
    assert ledger.cash("bob", "USDT") == D(0)
    ledger.reject({"type": "deposit", "account": "carol", "currency": "USDT", "amount": "1"}, "unknown_account")


def test_duplicates_within_one_batch(ledger: Ledger) -> None:
    """T2: the same command twice in one batch applies once; the second is the duplicate."""
    ledger.open("alice")
    cmd = deposit("alice", "10", command_id="c1")
    first, second = ledger.apply(cmd, cmd)
    assert first["ok"] and "duplicate" not in first
    assert second == {**first, "duplicate": True}
    assert ledger.cash("alice", "USDT") == D(10)
    assert len(ledger.reopen().events("alice", "Deposited")) == 1


CONFLICT_UNDOES_PREVIOUS = (
    "BUG: ledger/service/app.py LedgerApp._execute raises command_id_conflict before execute() has "
    "called uow.begin(), then calls uow.rollback(); the unit of work still holds the previous "
    "command's marks, so rollback() undoes the PREVIOUS command of the batch (its events and "
    "its CommandRecord) although that command answered ok. Expected the earlier deposit to be "
    "saved; actually nothing of it is recorded."
)


def test_conflict_within_one_batch(ledger: Ledger) -> None:
    """T2, T3: the same id with other content later in the same batch is command_id_conflict,
    and the first command stays applied."""
    ledger.open("alice")
    results = ledger.apply(deposit("alice", "10", command_id="c1"), deposit("alice", "99", command_id="c1"))
    assert codes(results) == ["ok", "command_id_conflict"]
    assert ledger.reopen().account("alice").cash("USDT") == D(10)


def test_conflict_does_not_undo_the_previous_command_of_the_batch(ledger: Ledger) -> None:
    """T2, T3: a command_id_conflict refuses only itself: the good command before it in the
    batch (here without any command_id, on another account) stays applied."""
    ledger.open("alice")
    ledger.open("bob")
    ledger.ok(deposit("alice", "1", command_id="used"))
    results = ledger.apply(deposit("bob", "10"), deposit("alice", "99", command_id="used"))
    assert codes(results) == ["ok", "command_id_conflict"]
    assert [e["type"] for e in results[0]["events"]] == ["Deposited"]
    assert ledger.reopen().account("bob").cash("USDT") == D(10)


def test_conflict_alone_in_its_batch_records_nothing(ledger: Ledger) -> None:
    """T2: a conflicting command in a batch of its own is refused and records nothing."""
    ledger.open("alice")
    ledger.ok(deposit("alice", "10", command_id="c1"))
    ledger.reject(deposit("alice", "99", command_id="c1"), "command_id_conflict")
    assert ledger.reopen().account("alice").cash("USDT") == D(10)


def test_duplicates_across_application_instances(ledger: Ledger) -> None:
    """T2: a second application on the same store (another process, a restart) knows the id."""
    ledger.open("alice")
    cmd = deposit("alice", "10", command_id="c1")
    first = ledger.apply(cmd)[0]
    other = ledger.reopen()
    try:
        before = last_id(other)
        assert other.apply(cmd)[0] == {**first, "duplicate": True}
        assert last_id(other) == before
        other.reject({**cmd, "amount": "12"}, "command_id_conflict")
        assert other.cash("alice", "USDT") == D(10)
    finally:
        other.close()


def test_concurrent_duplicates_across_instances_apply_once(ledger: Ledger) -> None:
    """T2, M6: several applications racing with one command_id: one applies, the rest are
    duplicates of it (or a retryable conflict), never a second deposit."""
    ledger.open("alice")
    cmd = deposit("alice", "10", command_id="race")
    apps = [ledger.reopen() for _ in range(4)]
    barrier = threading.Barrier(len(apps))
    results: list[dict[str, Any]] = []

    def run(book: Ledger) -> None:
        barrier.wait()
        results.extend(book.apply(cmd))

    threads = [threading.Thread(target=run, args=(book,)) for book in apps]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        for book in apps:
            book.close()
    assert len(results) == len(apps)
    applied = [r for r in results if r["ok"] and not r.get("duplicate")]
    assert len(applied) == 1
    for r in results:
        if r is not applied[0]:
            assert r == {**applied[0], "duplicate": True} or r["error"]["code"] == "conflict", r
    assert ledger.reopen().account("alice").cash("USDT") == D(10)


def test_rejected_command_does_not_consume_its_command_id(ledger: Ledger) -> None:
    """T2, T3: a refused command's id is free: the corrected command with it applies later."""
    ledger.open("alice")
    ledger.reject(withdraw("alice", "5", command_id="w1"), "insufficient_balance")
    ledger.reject(deposit("alice", "-5", command_id="w1"), "validation_error")
    ledger.reject(deposit("ghost", "5", command_id="w1"), "unknown_account")
    ledger.ok(deposit("alice", "5", command_id="w1"))
    assert ledger.cash("alice", "USDT") == D(5)
    # and now it is taken
    assert ledger.apply(deposit("alice", "5", command_id="w1"))[0]["duplicate"] is True
    ledger.reject(withdraw("alice", "5", command_id="w1"), "command_id_conflict")


def test_rejected_command_id_free_within_the_same_batch(ledger: Ledger) -> None:
    """T2, T3: in one batch, a refused command then the corrected one with the same id."""
    ledger.open("alice")
    results = ledger.apply(withdraw("alice", "5", command_id="w1"), deposit("alice", "5", command_id="w1"),
                           deposit("alice", "5", command_id="w1"))
    assert codes(results) == ["insufficient_balance", "ok", "ok"]
    assert results[2] == {**results[1], "duplicate": True}
    assert ledger.reopen().account("alice").cash("USDT") == D(5)


# --- T3 -----------------------------------------------------------------------------------------
def test_batch_mixing_good_and_bad_commands(ledger: Ledger) -> None:
    """T3: in one batch, each refused command leaves nothing and every good one applies; the
    aggregates rebuilt from the store equal the state the batch computed."""
    ledger.ok({"type": "set_platform_flags", "whitelist_required": False})
    batch = [
        {"type": "open_account", "account": "alice"},                                    # ok
        {"type": "open_account", "account": "alice"},                                    # account_exists
        {"type": "open_account", "account": "sub", "parent": "alice"},                   # ok
        {"type": "open_account", "account": "subsub", "parent": "sub"},                  # parent_not_master
        deposit("alice", "1000"),                                                        # ok
        withdraw("alice", "2000"),                                                       # insufficient_balance
        deposit("alice", "1.000000001"),                                                 # validation_error
        {"type": "deposit", "account": "alice", "currency": "DOGE", "amount": "1"},      # unknown_currency
        {"type": "transfer", "from_account": "alice", "to_account": "sub", "currency": "USDT",
         "amount": "300"},                                                               # ok
        {"type": "create_api_key", "account": "sub", "key_id": "k1", "permissions": ["spot"],
         "unified": True},                                                               # master_not_eligible
        {"type": "complete_risk_assessment", "account": "alice", "score": 70,
         "agreements_version": "v2"},                                                    # ok
        {"type": "switch_mode", "account": "alice", "mode": "unified"},                  # ok
        {"type": "create_api_key", "account": "sub", "key_id": "k1", "permissions": ["spot", "withdraw"],
         "unified": True},                                                               # ok (M8)
        {"type": "create_api_key", "account": "alice", "key_id": "k1", "permissions": ["read"]},  # api_key_exists
        {"type": "borrow", "account": "alice", "currency": "USDT", "amount": "50"},      # ok
        {"type": "borrow", "account": "sub", "currency": "USDT", "amount": "9999999"},   # borrow_limit_exceeded
        {"type": "place_order", "account": "sub", "order_id": "f1", "market": "futures", "symbol": "BTC-USDT",
         "side": "buy", "qty": "1", "price": "100"},                                     # no_price (BTC unset)
        {"type": "set_price", "currency": "BTC", "price": "100"},                        # ok
        {"type": "place_order", "account": "sub", "order_id": "o1", "market": "spot", "symbol": "BTC-USDT",
         "side": "buy", "qty": "1", "price": "100", "api_key": "k1"},                  # ok
        {"type": "place_order", "account": "sub", "order_id": "o1", "market": "spot", "symbol": "BTC-USDT",
         "side": "buy", "qty": "1", "price": "100"},                                     # order_exists
        withdraw("sub", "250", api_key="k1"),                                            # insufficient_balance
        withdraw("sub", "250"),                                                          # insufficient_balance
        withdraw("sub", "100", api_key="k1"),                                            # ok
    ]
    before = last_id(ledger)
    results = ledger.apply(*batch)
    assert codes(results) == [
        "ok", "account_exists", "ok", "parent_not_master", "ok", "insufficient_balance",
        "validation_error", "unknown_currency", "ok", "master_not_eligible", "ok", "ok", "ok",
        "api_key_exists", "ok", "borrow_limit_exceeded", "no_price", "ok", "ok", "order_exists",
        "insufficient_balance", "insufficient_balance", "ok",
    ]
    assert last_id(ledger) > before

    # what the batch answered is exactly what the store holds, account by account
    answered: dict[str, list[tuple[str, str]]] = {}
    for r in results:
        for e in r.get("events", []):
            if "account" in e:
                answered.setdefault(e["account"], []).append((e["type"], e["at"]))
    store = ledger.reopen()
    try:
        for account in ("alice", "sub"):
            recorded = [(type(e).__name__, e.at.isoformat().replace("+00:00", "Z")) for e in store.events(account)]
            assert recorded == answered[account], account
        store.reject({"type": "deposit", "account": "subsub", "currency": "USDT", "amount": "1"}, "unknown_account")

        alice, sub = store.account("alice"), store.account("sub")
        assert (alice.mode, sub.mode) == ("unified", "unified")
        assert alice.wallets == {"unified": {"USDT": D(750)}}
        assert alice.liabilities() == {"USDT": D(50)}
        assert alice.risk_assessment == {"score": 70, "agreements_version": "v2"}
        assert alice.api_keys == {}
        assert sub.wallets == {"unified": {"USDT": D(200)}}
        assert sub.liabilities() == {}
        assert sub.api_keys == {"k1": {"unified": True, "permissions": ["spot", "withdraw"]}}
        assert list(sub.orders) == ["o1"] and sub.orders["o1"]["hold"] == D(100)
        assert store.platform().prices["BTC"] == D(100)
        assert store.app.platform_owed("USDT") == D(50)
        # and equal to what the first application holds after the batch
        for account in ("alice", "sub"):
            live, rebuilt = ledger.account(account), store.account(account)
            assert (live.mode, live.wallets, live.orders, live.api_keys, live.liabilities(), live.last_at) == (
                rebuilt.mode, rebuilt.wallets, rebuilt.orders, rebuilt.api_keys, rebuilt.liabilities(),
                rebuilt.last_at)
    finally:
        store.close()


def test_batch_state_is_carried_between_its_commands(ledger: Ledger) -> None:
    """T3: a refused command between two good ones does not disturb what the next one sees."""
    ledger.open("alice")
    results = ledger.apply(
        deposit("alice", "100"),
        withdraw("alice", "60"),     # ok: 40 left
        withdraw("alice", "50"),     # refused: only 40
        withdraw("alice", "40"),     # ok: 0 left
        withdraw("alice", "0.00000001"),
    )
    assert codes(results) == ["ok", "ok", "insufficient_balance", "ok", "insufficient_balance"]
    assert ledger.reopen().account("alice").wallets == {"spot": {}, "futures": {}}
    assert [type(e).__name__ for e in ledger.events("alice")] == ["AccountOpened", "Deposited", "Withdrawn", "Withdrawn"]


def test_batch_of_only_refused_commands_records_nothing(ledger: Ledger) -> None:
    """T3: a batch whose every command is refused leaves the store as it was."""
    ledger.open("alice")
    before = last_id(ledger)
    results = ledger.apply(
        withdraw("alice", "1"), deposit("ghost", "1"), deposit("alice", "0"),
        {"type": "switch_mode", "account": "alice", "mode": "unified"},
        {"type": "deposit", "account": "alice", "currency": "DOGE", "amount": "1"},
    )
    assert codes(results) == ["insufficient_balance", "unknown_account", "validation_error",
                              "not_whitelisted", "unknown_currency"]
    assert last_id(ledger) == before


def test_account_opened_and_refused_in_one_batch(ledger: Ledger) -> None:
    """T3: an account opened earlier in the batch is seen by later commands of the batch."""
    results = ledger.apply(
        {"type": "open_account", "account": "alice"},
        deposit("alice", "5"),
        {"type": "open_account", "account": "alice", "vip_level": 3},
        {"type": "open_account", "account": "sub", "parent": "alice"},
        {"type": "open_account", "account": "sub2", "parent": "sub"},
    )
    assert codes(results) == ["ok", "ok", "account_exists", "ok", "parent_not_master"]
    store = ledger.reopen()
    try:
        assert store.account("alice").vip_level == 0
        assert store.account("alice").cash("USDT") == D(5)
        assert store.account("sub").parent == "alice"
        store.reject({"type": "open_account", "account": "sub2", "parent": "alice", "vip_level": 13},
                     "validation_error")
        store.ok({"type": "open_account", "account": "sub2", "parent": "alice"})
    finally:
        store.close()


# --- T2's digest: the same bytes whichever encoder made them --------------------------------------
flat_values = st.one_of(st.text(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.booleans(), st.none())
any_values = st.recursive(flat_values | st.floats(allow_nan=False),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                          max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=12), flat_values | any_values, max_size=8))
def test_digest_bytes_are_the_json_module_s(content: dict[str, Any]) -> None:
    """Every stored T2 digest was taken of ``json.dumps(sort_keys, compact, ASCII)``; the fast
    path (orjson, for flat ASCII objects) must give exactly those bytes, or a repeat of an
    old command would answer command_id_conflict."""
    expected = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()
    assert canonical(content) == expected


def test_digest_fast_path_covers_control_characters_and_big_integers() -> None:
    for content in ({"a": "\x7f"}, {"a": "\x00\x1f\n\t"}, {"a": 2 ** 64}, {"b": "é", "a": 1}, {"a": True, "b": None}):
        assert canonical(content) == json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
