"""Signed digests (issue 18, docs/audit.md §2, §5): `audit keygen`, `audit digest --sign`,
`audit verify --digest-file --public-key`, and the documented offline script, which checks
the signature and the export with the public key alone, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

from tests.helpers import ledger_cli
from tests.test_projections import cli_world

DOCS = Path(__file__).resolve().parent.parent / "docs" / "audit.md"


def keygen(db_url: str, folder: Path, name: str) -> tuple[Path, Path]:
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    result = ledger_cli(db_url, "audit", "keygen", "--private-key", str(private), "--public-key", str(public))
    assert result.exit_code == 0, result.output
    return private, public


def offline_script(folder: Path) -> Path:
    """The script of docs/audit.md §5, as the auditor saves it."""
    text = DOCS.read_text(encoding="utf-8")
    [code] = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "verify_export.py" in block]
    path = folder / "verify_export.py"
    path.write_text(code, encoding="utf-8")
    return path


def test_signed_digest_verifies_in_the_ledger_and_offline(db_url: str, tmp_path: Path) -> None:
    cli_world(db_url)
    private, public = keygen(db_url, tmp_path, "signer")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    again = ledger_cli(db_url, "audit", "keygen", "--private-key", str(private), "--public-key", str(tmp_path / "x.pub"))
    assert again.exit_code == 2 and "never overwrites" in again.stderr
    result = ledger_cli(db_url, "audit", "digest", "--sign", str(private))
    assert result.exit_code == 0, result.output
    signed = json.loads(result.stdout)
    assert set(signed) == {"digest", "position", "link", "signed_at", "signature"}
    assert signed["digest"] == ledger_cli(db_url, "audit", "digest").stdout.strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", signed["signed_at"])
    kept = tmp_path / "digest.json"
    kept.write_text(result.stdout, encoding="utf-8")
    # in the ledger: the signature, then the log up to the digest
    ok = ledger_cli(db_url, "audit", "verify", "--digest-file", str(kept), "--public-key", str(public), "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True, ok.output
    _, other = keygen(db_url, tmp_path, "other")
    wrong = ledger_cli(db_url, "audit", "verify", "--digest-file", str(kept), "--public-key", str(other))
    assert wrong.exit_code == 1 and "bad_signature" in wrong.stderr, wrong.output
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**signed, "digest": f"{signed['position']}:{'f' * 64}"}), encoding="utf-8")
    refused = ledger_cli(db_url, "audit", "verify", "--digest-file", str(forged), "--public-key", str(public))
    assert refused.exit_code == 1 and "bad_signature" in refused.stderr, refused.output
    assert ledger_cli(db_url, "audit", "verify", "--digest-file", str(kept)).exit_code == 2  # no key: unusable
    # offline: the export, the signed digest and the public key alone, in a folder of their own
    export = ledger_cli(db_url, "audit", "export")
    assert export.exit_code == 0, export.output
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    (auditor / "all.jsonl").write_text(export.stdout, encoding="utf-8")
    (auditor / "digest.json").write_text(kept.read_text(encoding="utf-8"), encoding="utf-8")
    (auditor / "signer.pub").write_bytes(public.read_bytes())
    (auditor / "forged.json").write_text(forged.read_text(encoding="utf-8"), encoding="utf-8")
    script = offline_script(auditor)

    def offline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-I", str(script), "all.jsonl", *args], cwd=auditor,
                              capture_output=True, text=True, timeout=60)

    run = offline("--signed", "digest.json", "signer.pub")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"signature verified: digest {signed['digest']}" in run.stdout and f"recomputed head {signed['digest']}: verified" in run.stdout
    run = offline("--signed", "forged.json", "signer.pub")
    assert run.returncode == 1 and "does not verify" in run.stdout and "NOT VERIFIED" in run.stdout, run.stdout
    lines = export.stdout.splitlines()
    row = json.loads(lines[5])
    row["state"] = row["state"].replace("USDT", "USDC", 1) if "USDT" in row["state"] else row["state"] + " "
    (auditor / "all.jsonl").write_text("\n".join(lines[:5] + [json.dumps(row)] + lines[6:]) + "\n", encoding="utf-8")
    run = offline("--signed", "digest.json", "signer.pub")
    assert run.returncode == 1 and "NOT VERIFIED" in run.stdout and "signature verified" in run.stdout, run.stdout
