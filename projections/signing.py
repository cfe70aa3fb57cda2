"""Signed digests (docs/audit.md §2): the chain's head, the instant it was signed, and an
Ed25519 signature over both, so that an auditor's kept digest is attributable and dated and
anyone holding only the public key can check it offline.

The signed message is the UTF-8 text ``ledger-audit-digest|<position>:<link>|<signed_at>``;
the signed digest is a JSON object ``{"digest", "position", "link", "signed_at",
"signature"}`` with the signature in base64.  Keys are PEM files: PKCS#8 private, SPKI public.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "ledger-audit-digest"


class SigningError(ValueError):
    """A key or a signed digest that cannot be used, in one sentence."""


def keygen() -> tuple[bytes, bytes]:
    """A new key pair as PEM: (private, public)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def message(digest: str, signed_at: str) -> bytes:
    return f"{PREFIX}|{digest}|{signed_at}".encode()


def sign(digest: str, signed_at: str, private_key_pem: bytes) -> dict[str, Any]:
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise SigningError(f"not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError("the private key is not an Ed25519 key")
    position, _, link = digest.partition(":")
    signature = base64.b64encode(key.sign(message(digest, signed_at))).decode()
    return {"digest": digest, "position": int(position), "link": link, "signed_at": signed_at, "signature": signature}


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as error:
        raise SigningError(f"{path}: not a PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 public key")
    return key


def verified(document: Path, public_key: Path) -> dict[str, Any]:
    """The signed digest in ``document`` once its signature checks with ``public_key``."""
    key = load_public(public_key)
    try:
        signed = json.loads(document.read_text(encoding="utf-8"))
        signature = base64.b64decode(signed["signature"], validate=True)
        digest, signed_at = signed["digest"], signed["signed_at"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SigningError(f"{document}: not a signed digest as `ledger audit digest --sign` writes it ({error})") from None
    try:
        key.verify(signature, message(digest, signed_at))
    except InvalidSignature:
        raise SigningError(f"{document}: the signature does not verify with {public_key}") from None
    return signed
