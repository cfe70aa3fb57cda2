"""The proof of liabilities (SPEC §17, docs/audit.md §6): `ledger audit liabilities` and
`liabilities-verify`, on SQLite and PostgreSQL.  Every proof verifies; any amount, salt,
sibling hash or sibling sum changed fails; an account left out makes the totals differ from
the trial balance; negative sums are rejected; the totals are the trial balance's user books
at T; the docs' standard-library snippet does the same checks."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.errors import LedgerError
from ledger.domain.times import rfc3339
from projections import audit, liabilities, merkle
from tests import pg
from tests.helpers import D, Ledger, ledger_cli
from tests.test_projections import HISTORY, HUNT, History, build_world, cli_world, fresh_env, m

SECRET = b"a test secret of enough bytes"
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "audit.md"


def tree_at(app: Any, at: Any) -> liabilities.Tree:
    return liabilities.build(rfc3339(at), liabilities.balances_at(app, at), SECRET)


def proofs(tree: liabilities.Tree) -> Iterator[dict[str, Any]]:
    return (tree.proof(i) for i in range(len(tree.accounts)))


def books_at(app: Any, at: Any) -> dict[str, dict[str, str]]:
    return merkle.shown(liabilities.user_books(audit.trial_balance(app, at)))


def check_tree(app: Any, at: Any) -> liabilities.Tree:
    """Every proof verifies, and the totals are the trial balance's user books at ``at``."""
    tree = tree_at(app, at)
    root = tree.published()
    assert root["totals"] == books_at(app, at)
    for proof in proofs(tree):
        assert merkle.check(proof, root) == (None, merkle.parse_sums(proof["amounts"], "x")), proof["account"]
    return tree


# --- the world of tests/test_projections.py, on both stores --------------------------------------
def test_every_proof_verifies_and_the_totals_are_the_trial_balance(ledger: Ledger) -> None:
    build_world(ledger)
    for at in (m(30), m(61), m(200)):
        tree = check_tree(ledger.app, at)
        assert sorted(tree.accounts) == ["alice", "bob", "carol", "dave"]
    assert books_at(ledger.app, m(30)) == {"BTC": {"cash": "2.3", "liability": "0.1"},
                                           "USDT": {"cash": "10", "liability": "8000"}}
    before = tree_at(ledger.app, m(-1))  # before any account: no leaves
    assert before.published() == {"as_of": rfc3339(m(-1)), "leaves": 0, "root": merkle.EMPTY_ROOT, "totals": {}}


def tampered(proof: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each way of changing one value of a proof."""
    def changed(what: str, edit: Any) -> tuple[str, dict[str, Any]]:
        other = copy.deepcopy(proof)
        edit(other)
        return what, other

    def bump(sums: dict[str, Any], field: str, by: str) -> None:
        currency = sorted(sums)[0] if sums else "USDT"
        pair = sums.setdefault(currency, {"cash": "0", "liability": "0"})
        pair[field] = merkle.amount(D(pair[field]) + D(by))

    for field in ("cash", "liability"):
        yield changed(f"amount {field} up", lambda p, f=field: bump(p["amounts"], f, "0.00000001"))
        yield changed(f"amount {field} down to zero", lambda p, f=field: [v.update({f: "0"}) for v in p["amounts"].values()]
                      if any(D(v[f]) for v in p["amounts"].values()) else bump(p["amounts"], f, "1"))
    yield changed("a currency added", lambda p: p["amounts"].setdefault("ETH", {"cash": "1", "liability": "0"}))
    yield changed("salt", lambda p: p.update(salt=("0" if p["salt"][0] != "0" else "1") + p["salt"][1:]))
    yield changed("account", lambda p: p.update(account=p["account"] + "x"))
    for step in range(len(proof["path"])):
        yield changed(f"sibling {step} hash", lambda p, s=step: p["path"][s].update(
            hash=("f" if p["path"][s]["hash"][0] != "f" else "e") + p["path"][s]["hash"][1:]))
        for field in ("cash", "liability"):
            yield changed(f"sibling {step} {field}", lambda p, s=step, f=field: bump(p["path"][s]["sums"], f, "1"))
        yield changed(f"sibling {step} side", lambda p, s=step: p["path"][s].update(
            side="left" if p["path"][s]["side"] == "right" else "right"))
    yield changed("a step left out", lambda p: p["path"].pop())


def test_a_proof_with_anything_changed_fails(ledger: Ledger) -> None:
    build_world(ledger)
    tree = check_tree(ledger.app, m(200))
    root = tree.published()
    for proof in proofs(tree):
        for what, other in tampered(proof):
            failed, _ = merkle.check(other, root)
            assert failed is not None, (proof["account"], what)
    changed_root = {**root, "totals": {**root["totals"], "USDT": {"cash": "10", "liability": "1"}}}
    assert merkle.check(tree.proof(0), changed_root)[0] == "the root's sums are not the totals root.json publishes"


def test_an_account_left_out_makes_the_totals_differ_from_the_trial_balance(ledger: Ledger) -> None:
    build_world(ledger)
    at = m(200)
    balances = liabilities.balances_at(ledger.app, at)
    full = tree_at(ledger.app, at)
    for left_out in sorted(a for a, sums in balances.items() if sums):
        smaller = liabilities.build(rfc3339(at), {a: s for a, s in balances.items() if a != left_out}, SECRET)
        root = smaller.published()
        for proof in proofs(smaller):  # the smaller tree is consistent in itself ...
            assert merkle.check(proof, root)[0] is None
        assert root["totals"] != books_at(ledger.app, at), left_out  # ... but not the books
        mine = full.proof(full.accounts.index(left_out))  # and the left-out account's proof says so
        assert merkle.check(mine, root)[0] is not None


def test_negative_amounts_are_refused_and_a_negative_sibling_is_rejected() -> None:
    """Maxwell's flaw: a sibling with a negative sum would shrink the published totals.  The
    builder refuses a negative amount; the verifier rejects one on a path even when every
    hash is consistent (a tree made by hand, as a cheating prover would)."""
    at = "2026-03-01T00:00:00Z"
    honest = {"ann": {"BTC": (D("5"), D(0))}, "ben": {"BTC": (D("2"), D(0))}}
    with pytest.raises(LedgerError) as raised:
        liabilities.build(at, {**honest, "cat": {"BTC": (D("-5"), D(0))}}, SECRET)
    assert raised.value.code == "negative_amount" and "cat holds BTC cash -5" in raised.value.message
    leaves = {a: (merkle.leaf_hash(at, a, merkle.salt(SECRET, a), s), s) for a, s in honest.items()}
    ghost = ("ab" * 32, {"BTC": (D("-5"), D(0))})  # cancels ann's 5 BTC
    left = (merkle.node_hash(1, leaves["ann"], ghost), {"BTC": (D(0), D(0))})
    right = (merkle.node_hash(1, leaves["ben"], (merkle.padding_hash(SECRET, at, 1), {})), leaves["ben"][1])
    root = {"as_of": at, "leaves": 3, "root": merkle.node_hash(2, left, right), "totals": merkle.shown(right[1])}
    proof = {"as_of": at, "account": "ann", "salt": merkle.salt(SECRET, "ann"), "amounts": merkle.shown(honest["ann"]),
             "path": [{"side": "right", "hash": ghost[0], "sums": {"BTC": {"cash": "-5", "liability": "0"}}},
                      {"side": "right", "hash": right[0], "sums": merkle.shown(right[1])}]}
    assert merkle.check(proof, root)[0] == "path step 1: a sibling's sums are never negative: BTC cash -5"
    without_check = dict(proof, path=[dict(s) for s in proof["path"]])
    assert merkle.negative({"BTC": (D("-5"), D(0))}) == "BTC cash -5"
    negative_leaf = {**without_check, "amounts": {"BTC": {"cash": "-1", "liability": "0"}}}
    assert merkle.check(negative_leaf, root)[0] == "the account's amounts are never negative: BTC cash -1"


def test_padding_and_depth() -> None:
    """A lone leaf, and odd counts, are padded with an empty sibling: nothing counted twice."""
    for count in (1, 2, 3, 5, 8, 9):
        balances = {f"a{i}": {"USDT": (D(i + 1), D(i))} for i in range(count)}
        tree = liabilities.build("2026-03-01T00:00:00Z", balances, SECRET)
        root = tree.published()
        assert root["leaves"] == count
        assert root["totals"] == {"USDT": {"cash": str(sum(range(1, count + 1))), "liability": str(sum(range(count)))}}
        for proof in proofs(tree):
            assert len(proof["path"]) == merkle.depth(count) and merkle.check(proof, root)[0] is None
    with pytest.raises(LedgerError) as raised:
        liabilities.build("2026-03-01T00:00:00Z", {}, b"short")
    assert raised.value.code == "no_secret"


def test_the_canonical_amount() -> None:
    assert [merkle.amount(D(v)) for v in ("1.500", "100", "1E+3", "0.00", "-0", "12345678901234567890.1234567890",
                                          "0.00000001")] == \
        ["1.5", "100", "1000", "0", "0", "12345678901234567890.123456789", "0.00000001"]


# --- generated histories: the totals are always the trial balance's user books --------------------
def history_tree(env: dict[str, str], data: st.DataObject) -> None:
    h = History(env)
    try:
        h.prelude()
        middle = None
        for step in range(data.draw(st.integers(8, 18), label="steps")):
            h.step(data)
            if step == 5:
                middle = h.t
        check_tree(h.app, h.t)
        check_tree(h.app, middle)
    finally:
        h.close()


@settings(max_examples=HUNT or 6, **HISTORY)
@given(data=st.data())
def test_totals_equal_the_trial_balance_after_generated_histories_sqlite(data: st.DataObject) -> None:
    with fresh_env("sqlite") as env:
        history_tree(env, data)


@pytest.mark.postgres
def test_totals_equal_the_trial_balance_after_generated_histories_postgres() -> None:
    pg.require_server()

    @settings(max_examples=HUNT or 3, **HISTORY)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        with fresh_env("postgres") as env:
            history_tree(env, data)

    inner()


# --- the command line, on both stores ------------------------------------------------------------
def run(db_url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    from typer.testing import CliRunner

    from entrypoints.cli import cli

    return CliRunner().invoke(cli, ["--db", db_url, *args], env=env)


def test_cli_liabilities_and_verify(db_url: str, tmp_path: Path) -> None:
    cli_world(db_url)
    secret = tmp_path / "secret"
    secret.write_bytes(b"an example secret, not for production\n")
    out = tmp_path / "por"
    made = ledger_cli(db_url, "audit", "liabilities", "--as-of", "2026-03-01T00:30:00Z", "--out", str(out),
                      "--secret-file", str(secret))
    assert made.exit_code == 0, made.output
    root = json.loads((out / "root.json").read_text())
    # the worked example of docs/audit.md §6: the same root from the same secret, instant and books
    assert root["root"] in DOC.read_text(encoding="utf-8") and f"root {root['root']} at 2026-03-01T00:30:00Z" in made.stdout
    tb = json.loads(ledger_cli(db_url, "audit", "trial-balance", "--as-of", "2026-03-01T00:30:00Z", "--json").stdout)
    books = {(b["book"], b["currency"]): D(b["balance"]) for b in tb["books"]}
    assert set(root) == {"as_of", "leaves", "root", "totals"} and root["leaves"] == 4
    for currency, sums in root["totals"].items():
        assert D(sums["cash"]) == books[("user:*:wallet", currency)]
        assert D(sums["liability"]) == -books[("user:*:liability", currency)]
    written = b"".join(p.read_bytes() for p in out.rglob("*.json"))
    assert b"an example secret" not in written  # the secret never goes into DIR
    assert sorted(p.name for p in (out / "proofs").iterdir()) == ["alice.json", "bob.json", "carol.json", "dave.json"]
    bob = out / "proofs" / "bob.json"
    ok = ledger_cli(db_url, "audit", "liabilities-verify", str(bob), "--root", str(out / "root.json"))
    assert ok.exit_code == 0 and ok.stdout == "ok: bob is in the tree of 2026-03-01T00:30:00Z\n  BTC: cash 1.1, liability 0.1\n"
    shown = json.loads(ledger_cli(db_url, "audit", "liabilities-verify", str(bob), "--root", str(out / "root.json"),
                                  "--json").stdout)
    assert shown == {"ok": True, "account": "bob", "as_of": "2026-03-01T00:30:00Z",
                     "amounts": {"BTC": {"cash": "1.1", "liability": "0.1"}}, "failed": None}
    proof = json.loads(bob.read_text())
    proof["amounts"]["BTC"]["cash"] = "1.2"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(proof))
    failed = ledger_cli(db_url, "audit", "liabilities-verify", str(bad), "--root", str(out / "root.json"))
    assert failed.exit_code == 1 and failed.stdout == "failed: the leaf's hash is not the hash of its values and salt\n", failed.output
    del proof["leaf"]  # without the leaf's hash written: the path no longer leads to the root
    bad.write_text(json.dumps(proof))
    failed = ledger_cli(db_url, "audit", "liabilities-verify", str(bad), "--root", str(out / "root.json"))
    assert failed.exit_code == 1 and failed.stdout.startswith("failed: the path does not lead to the root"), failed.output
    # the environment's secret gives the same tree; a used directory and a missing secret are one line
    again = run(db_url, "audit", "liabilities", "--as-of", "2026-03-01T00:30:00Z", "--out", str(tmp_path / "env"),
                "--json", env={"LEDGER_LIABILITIES_SECRET": "an example secret, not for production"})
    assert again.exit_code == 0 and json.loads(again.stdout) == root, again.output
    used = ledger_cli(db_url, "audit", "liabilities", "--out", str(out), "--secret-file", str(secret))
    assert used.exit_code == 2 and "output_exists" in used.stderr and "Traceback" not in used.output
    missing = run(db_url, "audit", "liabilities", "--out", str(tmp_path / "none"),
                  env={"LEDGER_LIABILITIES_SECRET": None, "LEDGER_LIABILITIES_SECRET_FILE": None})
    assert missing.exit_code == 2 and "no_secret" in missing.stderr and not (tmp_path / "none").exists()
    short = tmp_path / "short"
    short.write_bytes(b"tiny\n")
    tiny = ledger_cli(db_url, "audit", "liabilities", "--out", str(tmp_path / "tiny"), "--secret-file", str(short))
    assert tiny.exit_code == 2 and "no_secret: the secret has 4 bytes" in tiny.stderr


@pytest.mark.parametrize("content, says", [
    ("not json", "is not JSON"),
    ('{"as_of": "x"}', "the proof has no 'account'"),
    ('{"as_of": "x", "account": "a", "salt": "zz", "amounts": {}, "path": []}', "64 lower-case hex digits"),
    ('{"as_of": "x", "account": "a", "salt": "' + "0" * 64 + '", "amounts": {"BTC": {"cash": "lots", "liability": "0"}},'
     ' "path": []}', "is not a decimal number"),
    ('{"as_of": "x", "account": "a", "salt": "' + "0" * 64 + '", "amounts": {"BTC": {"cash": "NaN", "liability": "0"}},'
     ' "path": []}', "is not a finite number"),
    ('[1, 2]', "are JSON objects"),
    ('{"as_of": "x", "account": "a", "salt": "' + "0" * 64 + '", "amounts": {"BTC": {"cash": "1e999999999", '
     '"liability": "0"}}, "path": []}', "is out of range"),
])
def test_verify_bad_files_are_one_line_exit_2(tmp_path: Path, content: str, says: str) -> None:
    proof, root = tmp_path / "proof.json", tmp_path / "root.json"
    proof.write_text(content)
    root.write_text(json.dumps({"as_of": "x", "leaves": 1, "root": "0" * 64, "totals": {}}))
    result = ledger_cli("sqlite:///" + str(tmp_path / "unused.db"), "audit", "liabilities-verify", str(proof),
                        "--root", str(root))
    assert result.exit_code == 2 and result.stderr.startswith("ledger: bad_proof: ") and says in result.stderr, result.output
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1
    missing = ledger_cli("sqlite:///" + str(tmp_path / "unused.db"), "audit", "liabilities-verify",
                         str(tmp_path / "nothing.json"), "--root", str(root))
    assert missing.exit_code == 2 and "bad_proof: the proof" in missing.stderr and "cannot read it" in missing.stderr


# --- the standard-library snippet of docs/audit.md ---------------------------------------------------
def snippet(folder: Path) -> Path:
    text = DOC.read_text(encoding="utf-8")
    [code] = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "verify_liability.py" in block]
    for line in code.splitlines():  # the standard library's hashlib, hmac, json, decimal, sys only
        if line.startswith(("import ", "from ")):
            assert re.fullmatch(r"(import (hashlib|hmac|json|sys)|from decimal import Decimal)", line), line
    path = folder / "verify_liability.py"
    path.write_text(code, encoding="utf-8")
    return path


def test_the_docs_snippet_verifies_every_proof_and_rejects_every_tampering(ledger: Ledger, tmp_path: Path) -> None:
    build_world(ledger)
    script = snippet(tmp_path)
    tree = tree_at(ledger.app, m(200))
    liabilities.write(tree, tmp_path / "por")
    root_path = tmp_path / "por" / "root.json"
    root = json.loads(root_path.read_text())
    proof_files = sorted((tmp_path / "por" / "proofs").iterdir())
    assert len(proof_files) == 4
    cases: list[tuple[str, Path, int]] = [(p.stem, p, 0) for p in proof_files]
    for n, (what, other) in enumerate(tampered(json.loads(proof_files[0].read_text()))):
        path = tmp_path / f"tampered-{n}.json"
        path.write_text(json.dumps(other))
        cases.append((what, path, 1))
    negative = json.loads(proof_files[1].read_text())
    negative["path"][0]["sums"] = {"BTC": {"cash": "-1", "liability": "0"}}
    (tmp_path / "negative.json").write_text(json.dumps(negative))
    cases.append(("negative sibling", tmp_path / "negative.json", 1))
    for what, path, code in cases:
        done = subprocess.run([sys.executable, "-I", str(script), str(path), str(root_path)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == code, (what, done.stdout, done.stderr)
        if code == 0:
            assert done.stdout.startswith(f"verified: {what} is in the tree of {root['as_of']}, root {root['root']}")
        else:
            assert done.stdout.startswith("NOT VERIFIED: "), (what, done.stdout, done.stderr)
    assert "step 1: a sibling's sums are never negative" in subprocess.run(
        [sys.executable, "-I", str(script), str(tmp_path / "negative.json"), str(root_path)], capture_output=True,
        text=True, timeout=60).stdout
