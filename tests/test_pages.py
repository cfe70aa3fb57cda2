"""`ledger report KIND --format html` (issue 18, point 6): one self-contained page per report
(nothing fetched from a network), its table, and a server-side SVG chart where one helps;
opened in headless Chromium, whose screenshot must show the chart's bars.  Chromium missing:
skipped with the reason, unless LEDGER_REQUIRE_CHROMIUM=1 (CI) makes that a failure.
LEDGER_KEEP_SCREENSHOTS=DIR keeps the screenshots there, to look at them."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from projections import pages, reports
from tests.helpers import ledger_cli
from tests.png import pixels
from tests.test_projections import cli_world

BAR = tuple(int(pages.BAR[i:i + 2], 16) for i in (1, 3, 5))
CHARTED = ("interest", "repayments", "liquidations", "forced-swaps", "borrowers")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("LEDGER_REQUIRE_CHROMIUM"):
            pytest.fail("LEDGER_REQUIRE_CHROMIUM is set but no chromium is installed (Debian: apt-get install chromium)")
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium): the pages were not screenshotted")
    return found


def screenshot(page: Path, folder: Path) -> Path:
    shot = folder / (page.stem + ".png")
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={folder / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return shot


@pytest.fixture
def pages_of_the_world(db_url: str, tmp_path: Path) -> dict[str, Path]:
    cli_world(db_url)
    assert ledger_cli(db_url, "projections", "run").exit_code == 0
    out = {}
    for kind in reports.REPORTS:
        result = ledger_cli(db_url, "report", kind, "--format", "html")
        assert result.exit_code == 0, (kind, result.output)
        out[kind] = tmp_path / f"{kind}.html"
        out[kind].write_text(result.stdout, encoding="utf-8")
    return out


def test_every_report_is_one_self_contained_page(pages_of_the_world: dict[str, Path]) -> None:
    for kind, path in pages_of_the_world.items():
        html = path.read_text(encoding="utf-8")
        assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>"), kind
        # nothing to fetch: no script, stylesheet, image or font from anywhere
        assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|\bhref=|url\(|@import", html, re.I), kind
        assert re.findall(r"https?://[^\"' ]+", html) in ([], ["http://www.w3.org/2000/svg"] * html.count("<svg")), kind
        for column in reports.REPORTS[kind].columns:
            assert f"<th>{column}</th>" in html, (kind, column)
        assert ("<svg" in html) == (kind in CHARTED), kind
    assert "<td>infinite</td>" in pages_of_the_world["liquidations"].read_text(encoding="utf-8")  # dave's ratio before


def test_the_charts_are_drawn_in_chromium(pages_of_the_world: dict[str, Path], tmp_path: Path) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    for kind in ("interest", "liquidations", "borrowers", "mode-switches"):
        shot = screenshot(pages_of_the_world[kind], shots)
        shutil.copy(shot, Path(os.environ.get("LEDGER_KEEP_SCREENSHOTS", tmp_path)) / shot.name)
        counts = pixels(shot.read_bytes())
        assert sum(counts.values()) == 1200 * 900
        bars = counts.get(BAR, 0)
        if kind == "mode-switches":  # a page without a chart has none of the bars' colour
            assert bars == 0
        else:
            assert bars > 5000, (kind, bars, counts.most_common(3))  # the bars, not a blank page


def test_the_stress_page_draws_the_risk_ratio_distribution_before_and_after(db_url: str, tmp_path: Path) -> None:
    """`ledger risk stress --format html` (§17): one self-contained page, two charts (the
    changed accounts' risk ratios before and after the shock), drawn in Chromium."""
    from tests.test_stress import S, SHOCKS, world

    world(db_url)
    result = ledger_cli(db_url, "risk", "stress", *SHOCKS, "--as-of", S, "--format", "html")
    assert result.exit_code == 0, result.output
    html = result.stdout
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|\bhref=|url\(|@import", html, re.I)
    assert html.count("<svg") == 2 and "accounts by risk ratio before" in html and "accounts by risk ratio after" in html
    assert "<td>crash</td>" in html and "insurance fund after: -22000 USDT" in html
    page = tmp_path / "stress.html"
    page.write_text(html, encoding="utf-8")
    shots = tmp_path / "shots"
    shots.mkdir()
    shot = screenshot(page, shots)
    shutil.copy(shot, Path(os.environ.get("LEDGER_KEEP_SCREENSHOTS", tmp_path)) / shot.name)
    counts = pixels(shot.read_bytes())
    assert sum(counts.values()) == 1200 * 900
    assert counts.get(BAR, 0) > 5000, counts.most_common(3)  # the bars, not a blank page
