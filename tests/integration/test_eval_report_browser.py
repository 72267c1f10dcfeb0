"""The evaluation report opens in a real (headless) browser, offline, and its PNG plots render.

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

# Run inside the page once it has loaded: every image as the browser decoded and laid it out.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img')].map(i => {
    const box = i.getBoundingClientRect();
    return {src: i.getAttribute('src'), complete: i.complete, natural: [i.naturalWidth, i.naturalHeight],
            shown: [box.width, box.height]};
  });
  const out = document.createElement('pre');
  out.id = 'render-probe';
  out.textContent = JSON.stringify({imgs: imgs, tables: document.querySelectorAll('table').length});
  document.body.appendChild(out);
});
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


def test_the_html_report_renders_its_png_plots_in_a_headless_browser(browser, finished_run, tmp_path):
    config, ckpt = finished_run
    prefix = tmp_path / "report"
    argv = ["--operator", str(ckpt / "operator_ema.pt"), "--diffusion", str(ckpt / "diffusion_residual_ema.pt"),
            "--config", str(config), "--device", "cpu", "--output-prefix", str(prefix),
            "--set", "eval.plot_samples=2", "--set", "eval.ensemble_size=2", "--set", "eval.ensemble_max_samples=4"]
    assert run_main(evaluate_main, argv) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    html = (tmp_path / "report.html").read_text()
    assert not re.search(r'(src|href)=["\']?https?://', html), "the report must load nothing from the network"
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))

    result = render_in_browser(browser, probed, tmp_path / "profile")

    imgs = result["imgs"]
    assert sorted(i["src"] for i in imgs) == sorted(f["file"] for f in report["figures"].values()), \
        "one image per figure"
    assert {"rollout", "fields", "ensemble", "prior", "loss_operator", "loss_steady_prior"} <= set(report["figures"])
    for img in imgs:
        assert img["complete"] and img["natural"][0] > 300 and img["natural"][1] > 200, img
        assert img["shown"][0] > 300 and img["shown"][1] > 100, img
    assert result["tables"] >= 5


def test_a_missing_png_shows_as_a_broken_image(browser, tmp_path):
    """The probe can fail: an image whose file is gone decodes to nothing."""
    (tmp_path / "page.html").write_text('<!DOCTYPE html><html><body><img src="gone.png" alt="x"></body></html>')
    page = tmp_path / "page.html"
    page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = render_in_browser(browser, page, tmp_path / "profile")
    assert result["imgs"][0]["natural"] == [0, 0]
