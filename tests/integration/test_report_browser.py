"""The report page in a real browser: headless Chromium renders the table and every plot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from honed.config import ReportConfig
from honed.report.run import report

pytestmark = pytest.mark.integration
CHROMIUM = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)  # fmt: skip


def chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (make sysdeps installs it)")
def test_report_page_renders_in_chromium(report_results: Path, tmp_path: Path):
    page = report(ReportConfig(dirs=[str(report_results)], output=tmp_path / "r"))
    dom = chromium("--dump-dom", page.as_uri()).stdout
    assert '<table id="variants">' in dom and dom.count("<tr") == 5  # header + 4 variants
    assert dom.count('<img alt="') == 3
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri())
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1400, 1800)
    assert len(set(image.getdata())) > 50  # drawn plots and text, not a blank page
