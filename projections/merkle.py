"""The Merkle sum tree of the proof of liabilities (SPEC §17, docs/audit.md §6): its hashing
and the check of one proof, with the standard library only (hashlib, hmac, json, decimal) —
the same arithmetic as the snippet in docs/audit.md, which a user runs without the ledger.

Every hash is SHA-256 over the canonical JSON of a small object (``encode``: sorted keys, no
spaces, ASCII); every amount is a canonical Decimal string (``amount``: no exponent, no
trailing zeros, ``"0"`` for zero).  A set of *sums* is ``{"<cur>": {"cash", "liability"}}``
with the currencies where either is not zero; cash and liability are summed separately and
are never negative, so nothing can be netted away.

- leaf: ``{"type": "leaf", "as_of", "account", "salt", "amounts"}``; the salt is
  HMAC-SHA256(secret, account id), hex; the leaf's sums are its amounts.
- node at level L (1: just above the leaves): ``{"type": "node", "level": L, "left": {"hash",
  "sums"}, "right": {"hash", "sums"}}``; its sums are the children's added per currency.  Both
  children's sums are committed separately (Hu, Zhang and Guo's fix of Maxwell's tree: a node
  committing to the total alone lets a prover move value between siblings).
- padding, the right sibling of the last node of a level with an odd count (and of a lone
  leaf): ``{"type": "padding", "as_of", "level": L, "salt"}``, the salt HMAC-SHA256(secret,
  "padding/L") (no account id holds a "/"); its sums are empty (zero), so padding adds
  nothing and nothing is counted twice.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

Sums = dict[str, tuple[Decimal, Decimal]]  # currency -> (cash, liability)
ZERO = Decimal(0)
MAX_DIGITS, MAX_PLACES = 40, 40  # bounds on an amount read from a file (1e999999999 would take a gigabyte)


class ProofFormatError(ValueError):
    """A proof or root file that is not what `ledger audit liabilities` writes (not a failed check)."""


def amount(value: Decimal) -> str:
    """The canonical string of an amount: plain digits, no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def encode(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256(obj: Any) -> str:
    return hashlib.sha256(encode(obj)).hexdigest()


def salt(secret: bytes, account: str) -> str:
    return hmac.new(secret, account.encode("utf-8"), hashlib.sha256).hexdigest()


def shown(sums: Mapping[str, tuple[Decimal, Decimal]]) -> dict[str, dict[str, str]]:
    """Sums as they are hashed and written: the currencies where cash or liability is not zero."""
    return {c: {"cash": amount(cash), "liability": amount(owed)}
            for c, (cash, owed) in sorted(sums.items()) if cash or owed}


def add(left: Sums, right: Sums) -> Sums:
    out = dict(left)
    for c, (cash, owed) in right.items():
        was = out.get(c, (ZERO, ZERO))
        out[c] = (was[0] + cash, was[1] + owed)
    return out


def negative(sums: Sums) -> str | None:
    """The first negative amount, in words (None: none)."""
    for c, (cash, owed) in sorted(sums.items()):
        for name, value in (("cash", cash), ("liability", owed)):
            if value < 0:
                return f"{c} {name} {amount(value)}"
    return None


def leaf_hash(as_of: str, account: str, salt_hex: str, sums: Sums) -> str:
    return sha256({"type": "leaf", "as_of": as_of, "account": account, "salt": salt_hex, "amounts": shown(sums)})


def node_hash(level: int, left: tuple[str, Sums], right: tuple[str, Sums]) -> str:
    return sha256({"type": "node", "level": level, "left": {"hash": left[0], "sums": shown(left[1])},
                   "right": {"hash": right[0], "sums": shown(right[1])}})


def padding_hash(secret: bytes, as_of: str, level: int) -> str:
    return sha256({"type": "padding", "as_of": as_of, "level": level, "salt": salt(secret, f"padding/{level}")})


EMPTY_ROOT = sha256({"type": "empty"})  # the root of a tree without leaves


def depth(leaves: int) -> int:
    """How many siblings a proof's path has for a tree of ``leaves`` (a lone leaf is padded)."""
    levels, width = 0, leaves
    while width > 1 or levels == 0:
        width, levels = (width + 1) // 2, levels + 1
    return levels


# --- reading a proof (every value checked for its form before any hash) -------------------------
def parse_sums(value: Any, where: str) -> Sums:
    if not isinstance(value, dict):
        raise ProofFormatError(f"{where} is not an object of currencies")
    out: Sums = {}
    for c, pair in value.items():
        if not isinstance(pair, dict) or set(pair) != {"cash", "liability"}:
            raise ProofFormatError(f"{where} {c!r} is not {{\"cash\", \"liability\"}}")
        out[c] = (parse_amount(pair["cash"], f"{where} {c} cash"), parse_amount(pair["liability"], f"{where} {c} liability"))
    return out


def parse_amount(value: Any, where: str) -> Decimal:
    if not isinstance(value, str):
        raise ProofFormatError(f"{where} is not a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ProofFormatError(f"{where} {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ProofFormatError(f"{where} {value!r} is not a finite number")
    if number and not (-MAX_PLACES <= number.as_tuple().exponent and number.adjusted() <= MAX_DIGITS):
        raise ProofFormatError(f"{where} {value!r} is out of range (at most {MAX_DIGITS} digits before the point "
                               f"and {MAX_PLACES} after)")
    return number


def text(obj: Mapping[str, Any], key: str, what: str, hexlen: int | None = None) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or (hexlen is not None and (len(value) != hexlen or
                                                              any(ch not in "0123456789abcdef" for ch in value))):
        kind = f"{hexlen} lower-case hex digits" if hexlen else "a string"
        raise ProofFormatError(f"{what} has no {key!r} of {kind}")
    return value


def check(proof: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[str | None, Sums]:
    """Check one proof against root.json: ``(None, amounts)`` when it holds, else ``(the
    failed check in words, amounts)``.  A file of the wrong form raises ProofFormatError."""
    if not isinstance(proof, dict) or not isinstance(root, dict):
        raise ProofFormatError("a proof and a root are JSON objects")
    as_of, account = text(proof, "as_of", "the proof"), text(proof, "account", "the proof")
    salt_hex = text(proof, "salt", "the proof", 64)
    amounts = parse_sums(proof.get("amounts"), "the proof's amounts")
    path = proof.get("path")
    if not isinstance(path, list):
        raise ProofFormatError("the proof has no 'path' list")
    root_hash, root_as_of = text(root, "root", "the root", 64), text(root, "as_of", "the root")
    totals = parse_sums(root.get("totals"), "the root's totals")
    leaves = root.get("leaves")
    if not isinstance(leaves, int) or isinstance(leaves, bool) or leaves < 1:
        raise ProofFormatError("the root has no 'leaves' count of 1 or more")
    steps = []
    for number, step in enumerate(path, 1):
        if not isinstance(step, dict) or step.get("side") not in ("left", "right"):
            raise ProofFormatError(f"path step {number} has no 'side' of left or right")
        steps.append((step["side"], text(step, "hash", f"path step {number}", 64),
                      parse_sums(step.get("sums"), f"path step {number}'s sums")))
    if as_of != root_as_of:
        return f"the proof is of {as_of}, the root of {root_as_of}", amounts
    bad = negative(amounts)
    if bad:
        return f"the account's amounts are never negative: {bad}", amounts
    if len(steps) != depth(leaves):
        return f"the path has {len(steps)} steps; a tree of {leaves} leaves needs {depth(leaves)}", amounts
    current = (leaf_hash(as_of, account, salt_hex, amounts), amounts)
    if "leaf" in proof and proof["leaf"] != current[0]:
        return "the leaf's hash is not the hash of its values and salt", amounts
    for level, (side, sibling, sums) in enumerate(steps, 1):
        bad = negative(sums)
        if bad:
            return f"path step {level}: a sibling's sums are never negative: {bad}", amounts
        pair = ((sibling, sums), current) if side == "left" else (current, (sibling, sums))
        current = (node_hash(level, *pair), add(current[1], sums))
    if current[0] != root_hash:
        return "the path does not lead to the root: an amount, the salt, a sibling's hash or sums differ", amounts
    if shown(current[1]) != shown(totals):
        return "the root's sums are not the totals root.json publishes", amounts
    return None, amounts


def total(items: Iterable[Sums]) -> Sums:
    out: Sums = {}
    for sums in items:
        out = add(out, sums)
    return out
