"""The evaluation report opens in a real (headless) browser, offline, and its plots render.

Chromium comes from Debian's package: `tools/ensure_chromium.sh` installs it when
missing (idempotent). The test skips — saying why — only if no browser can be
found after that.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ups.commands.common import run_main
from ups.commands.evaluate import main as evaluate_main

REPO = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

# Run inside the page after layout: every plot's size and every line's length, as the browser drew them.
PROBE = """<script>
const svgs = [...document.querySelectorAll('svg')].map(s => {
  const box = s.getBoundingClientRect();
  const lines = [...s.querySelectorAll('polyline')].map(p => p.getTotalLength());
  return {width: box.width, height: box.height, lines: lines};
});
const out = document.createElement('pre');
out.id = 'render-probe';
out.textContent = JSON.stringify({svgs: svgs, tables: document.querySelectorAll('table').length});
document.body.appendChild(out);
</script>"""


def find_browser() -> str | None:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    subprocess.run(["sh", str(REPO / "tools" / "ensure_chromium.sh")], capture_output=True, timeout=900)
    return next((shutil.which(n) for n in BROWSERS if shutil.which(n)), None)


@pytest.fixture(scope="module")
def browser():
    path = find_browser()
    if path is None:
        pytest.skip("no chromium found, and tools/ensure_chromium.sh could not install it "
                    "(see /tmp/ensure_chromium.log)")
    return path


def render_in_browser(browser: str, page: Path, profile: Path) -> dict:
    proc = subprocess.run([browser, *HEADLESS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="render-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the browser printed no probe result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_the_html_report_renders_its_plots_in_a_headless_browser(browser, finished_run, tmp_path):
    config, ckpt = finished_run
    prefix = tmp_path / "report"
    argv = ["--operator", str(ckpt / "operator_ema.pt"), "--diffusion", str(ckpt / "diffusion_residual_ema.pt"),
            "--config", str(config), "--device", "cpu", "--output-prefix", str(prefix),
            "--set", "eval.plot_samples=2"]
    assert run_main(evaluate_main, argv) == 0
    html = (tmp_path / "report.html").read_text()
    assert not re.search(r'(src|href)=["\']?https?://', html), "the report must load nothing from the network"
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))

    result = render_in_browser(browser, probed, tmp_path / "profile")

    svgs = result["svgs"]
    assert len(svgs) == 1 + 2 * 3, "one error-vs-step chart and three field panels per plotted sample"
    for svg in svgs:
        assert svg["width"] > 100 and svg["height"] > 100
        assert svg["lines"] and all(length > 10 for length in svg["lines"]), svg
    assert len(svgs[0]["lines"]) == 3, "persistence, operator and operator+diffusion curves"
    assert result["tables"] >= 2

