"""`python -m bench --quick` runs end to end on each store and reports every figure with its
baseline.  Nothing here is about speed: only that each figure was measured."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.figures import FIGURES
from tests import natsutil, pg

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_quick_bench_reports_every_figure(store: str, tmp_path: Path) -> None:
    if store == "postgres":
        pg.require_server()  # skips locally without a server; fails under LEDGER_REQUIRE_POSTGRES=1
    natsutil.require_server()  # the bus figures (bench.bus): skips without NATS; fails under LEDGER_REQUIRE_NATS=1
    output = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--store", store, "--json", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=450)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout)
    assert json.loads(output.read_text()) == printed, "the results file holds what was printed"
    assert printed["mode"] == "quick" and printed["machine"]["cpus"] >= 1
    expected = [f for f in FIGURES if store == "postgres" or f != "serve_throughput_2p"]  # several writers: PostgreSQL's
    assert [f["figure"] for f in printed["figures"]] == expected
    for f in printed["figures"]:
        assert f["store"] == store
        assert f["rate"] > 0 and f["baseline"]["rate"] > 0 and f["ratio"] > 0, f
        assert f["value"] > 0 and f["rss_mb"] > 0, f
        assert f["met"] in (True, False, None)
    assert {p["kind"] for p in printed["phases"]} == {"setup", "timed", "baseline"}
