"""The proof of liabilities (SPEC §17, docs/audit.md §6): `ledger audit liabilities` and
`ledger audit liabilities-verify`.

Every account's cash and liability per currency at T come from the trial balance's own
reading of the log (``audit.legs_at``: each event's legs, ledger.domain.postings), summed per
user book instead of over the users — so the tree's totals are the trial balance's user books
at T by construction, and any change to what an event posts reaches both.  The tree, its
hashes and the check of a proof are ``projections.merkle`` (standard library only).

Memory: the log is read a page at a time; what is held is per account its sums (the leaves),
then per level of the tree one hash and one set of sums per node — about two entries per
account.  Proofs are written one at a time from the levels; root.json last.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from ledger.domain import ids
from ledger.domain.errors import LedgerError
from ledger.domain.times import rfc3339
from ledger.service.app import LedgerApp

from projections import audit, merkle
from projections.merkle import ZERO, Sums

MIN_SECRET_BYTES = 16
INDENTED = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE  # the proofs: json.dumps(indent=2) costs most of a build


def balances_at(app: LedgerApp, as_of: datetime) -> dict[str, Sums]:
    """Per account (every one with an event at or before ``as_of``) its cash and liability
    per currency: its ``user:<id>:wallet`` book, and its ``user:<id>:liability`` book negated."""
    out: dict[str, dict[str, list[Decimal]]] = {}
    for aggregate, legs in audit.legs_at(app, as_of):
        if aggregate.startswith(ids.ACCOUNT_PREFIX):
            out.setdefault(ids.account_name(aggregate), {})
        for name, currency, value in legs:
            if not name.startswith("user:"):
                continue
            account, _, kind = name[len("user:"):].rpartition(":")
            pair = out.setdefault(account, {}).setdefault(currency, [ZERO, ZERO])
            if kind == "wallet":
                pair[0] += value
            elif kind == "liability":
                pair[1] -= value
    return {a: {c: (cash, owed) for c, (cash, owed) in sums.items() if cash or owed} for a, sums in out.items()}


@dataclass
class Tree:
    """The levels of a Merkle sum tree, leaves first: per node its hash and sums."""
    as_of: str
    accounts: list[str]  # in leaf order
    salts: list[str]
    levels: list[list[tuple[str, Sums]]]

    @property
    def root(self) -> str:
        return self.levels[-1][0][0] if self.accounts else merkle.EMPTY_ROOT

    @property
    def totals(self) -> Sums:
        return self.levels[-1][0][1] if self.accounts else {}

    def path(self, index: int) -> list[dict[str, Any]]:
        """The siblings from leaf ``index`` up to the root, each with its side and sums."""
        steps = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            hash_, sums = level[sibling]
            steps.append({"side": "left" if sibling < index else "right", "hash": hash_, "sums": merkle.shown(sums)})
            index //= 2
        return steps

    def proof(self, index: int) -> dict[str, Any]:
        hash_, sums = self.levels[0][index]
        return {"as_of": self.as_of, "account": self.accounts[index], "salt": self.salts[index],
                "amounts": merkle.shown(sums), "leaf": hash_, "root": self.root, "path": self.path(index)}

    def published(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "leaves": len(self.accounts), "root": self.root, "totals": merkle.shown(self.totals)}


def check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise LedgerError("no_secret", f"the secret has {len(secret)} bytes; it needs {MIN_SECRET_BYTES} or more")


def build(as_of: str, balances: dict[str, Sums], secret: bytes) -> Tree:
    """The tree over ``balances`` at ``as_of`` (RFC 3339).  Leaves are ordered by a keyed hash
    of the account and the instant, so a leaf's place says nothing of its account; a negative
    amount is refused (``negative_amount``): it would net value away."""
    check_secret(secret)
    for account in sorted(balances):
        bad = merkle.negative(balances[account])
        if bad:
            raise LedgerError("negative_amount", f"{account} holds {bad} at {as_of}: a Merkle sum tree's amounts are "
                                                 "never negative")
    order = sorted(balances, key=lambda a: merkle.salt(secret, f"order/{as_of}/{a}"))
    salts = [merkle.salt(secret, a) for a in order]
    level = [(merkle.leaf_hash(as_of, a, s, balances[a]), balances[a]) for a, s in zip(order, salts)]
    levels = [level]
    height = 0
    while level and (len(level) > 1 or height == 0):
        height += 1
        if len(level) % 2:
            level.append((merkle.padding_hash(secret, as_of, height), {}))
        level = [(merkle.node_hash(height, level[i], level[i + 1]), merkle.add(level[i][1], level[i + 1][1]))
                 for i in range(0, len(level), 2)]
        levels.append(level)
    return Tree(as_of, order, salts, levels)


def refuse_used(out: Path) -> None:
    """Never write into a directory that holds anything: the proofs of another instant would
    mix with these."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LedgerError("output_exists", f"{out} exists and is not an empty directory: liabilities writes a fresh one")


def prepare(out: Path) -> Path:
    """``out``/proofs, made (``out`` new or empty)."""
    refuse_used(out)
    proofs = out / "proofs"
    try:
        proofs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LedgerError("output_exists", f"cannot make {proofs}: {error.strerror or error}") from None
    return proofs


def write(tree: Tree, out: Path, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Each account's proof in ``out``/proofs/<account>.json, then ``out``/root.json; the root's contents."""
    proofs = prepare(out)
    try:
        for index, account in enumerate(tree.accounts):
            (proofs / f"{account}.json").write_bytes(orjson.dumps(tree.proof(index), option=INDENTED))
            if progress and (index + 1) % 1000 == 0:
                progress(index + 1, len(tree.accounts))
        published = tree.published()
        temporary = out / "root.json.part"
        temporary.write_text(json.dumps(published, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, out / "root.json")  # last, whole: a root.json means every proof is there
    except OSError as error:
        raise LedgerError("output_exists", f"cannot write into {out}: {error.strerror or error}") from None
    return published


def liabilities(app: LedgerApp, as_of: datetime, secret: bytes, out: Path,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """`ledger audit liabilities`: the tree at ``as_of`` written into ``out``; root.json's contents."""
    check_secret(secret)  # before reading the log: a short secret and a used directory are said at once
    refuse_used(out)
    tree = build(rfc3339(as_of), balances_at(app, as_of), secret)
    return write(tree, out, progress)


def read_json(path: Path, what: str) -> Any:
    """A proof's or root's JSON (``bad_proof`` when it cannot be read or is not JSON)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise LedgerError("bad_proof", f"{what} {path}: cannot read it: {error.strerror or error}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise LedgerError("bad_proof", f"{what} {path} is not JSON: {error}") from None


def verify(proof_path: Path, root_path: Path) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """`ledger audit liabilities-verify`: (the failed check or None, the proof, the root)."""
    proof, root = read_json(proof_path, "the proof"), read_json(root_path, "the root")
    try:
        failed, _ = merkle.check(proof, root)
    except merkle.ProofFormatError as error:
        raise LedgerError("bad_proof", f"{error}: not a file `ledger audit liabilities` writes") from None
    return failed, proof, root


def user_books(rows: Iterable[dict[str, Any]]) -> Sums:
    """The trial balance's user books as sums: the users' wallets, their liabilities negated."""
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for row in rows:
        cash, owed = out.get(row["currency"], (ZERO, ZERO))
        if row["book"] == audit.USER_BOOKS["wallet"]:
            out[row["currency"]] = (cash + row["balance"], owed)
        elif row["book"] == audit.USER_BOOKS["liability"]:
            out[row["currency"]] = (cash, owed - row["balance"])
    return {c: v for c, v in out.items() if v[0] or v[1]}
