"""scripts/download_data.py as a user runs it: a real subprocess, a local HTTP server, file:// URIs.

Nothing here reaches the internet: the server listens on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ups.config import GeneratorConfig
from ups.data.burgers import generate_burgers, write_pdebench_h5
from ups.data.pdebench import PDEBenchFile

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "download_data.py"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """A directory with one PDEBench file, served over HTTP on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()
    tensor, x, t = generate_burgers(GeneratorConfig(nx=16, nt=5), 3, seed=1)
    write_pdebench_h5(root / "burgers.h5", tensor, x, t, {})
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_script(cwd, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", "burgers", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_http_fetch_verifies_sha256_and_lands_at_the_config_path(tmp_path, served):
    root, base = served
    want = sha256(root / "burgers.h5")
    r = run_script(tmp_path, "--split", "train", "--url", f"{base}/burgers.h5", "--sha256", want)
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "data" / "pdebench" / "burgers1d_train.h5"
    assert sha256(dest) == want and f"sha256 {want}" in r.stdout
    with PDEBenchFile(dest) as f:
        assert f.n_samples == 3
    assert sorted(p.name for p in dest.parent.iterdir()) == ["burgers1d_train.h5"]


def test_existing_verified_file_is_skipped_unless_forced(tmp_path, served):
    root, base = served
    args = ["--split", "val", "--url", f"{base}/burgers.h5", "--md5",
            hashlib.md5((root / "burgers.h5").read_bytes()).hexdigest(), "--output", "v.h5"]
    assert run_script(tmp_path, *args).returncode == 0
    again = run_script(tmp_path, *args)
    assert again.returncode == 0 and "skipping" in again.stdout and "Fetching" not in again.stdout
    forced = run_script(tmp_path, *args, "--force")
    assert forced.returncode == 0 and "Fetching" in forced.stdout


def test_checksum_mismatch_exits_2_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, served):
    root, base = served
    dest = tmp_path / "out" / "train.h5"
    dest.parent.mkdir()
    dest.write_bytes(b"previous contents")
    r = run_script(tmp_path, "--split", "train", "--url", f"{base}/burgers.h5",
                   "--sha256", "0" * 64, "--output", str(dest))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "checksum mismatch" in r.stderr and "Traceback" not in r.stderr
    assert dest.read_bytes() == b"previous contents"
    assert [p.name for p in dest.parent.iterdir()] == ["train.h5"]


def test_file_uri_fetch_works_and_rejects_a_non_pdebench_file(tmp_path, served):
    root, _ = served
    r = run_script(tmp_path, "--split", "test", "--url", (root / "burgers.h5").as_uri(), "--output", "t.h5")
    assert r.returncode == 0, r.stderr
    assert sha256(tmp_path / "t.h5") == sha256(root / "burgers.h5")
    (root / "junk.bin").write_bytes(b"\x00" * 100)
    bad = run_script(tmp_path, "--split", "test", "--url", (root / "junk.bin").as_uri(), "--output", "j.h5")
    assert bad.returncode == 2 and "not a PDEBench-layout HDF5 file" in bad.stderr
    assert not (tmp_path / "j.h5").exists() and not list(tmp_path.glob(".tmp-*"))


def test_missing_source_is_one_line_and_exit_2(tmp_path, served):
    _, base = served
    r = run_script(tmp_path, "--split", "train", "--url", f"{base}/nope.h5", "--output", "n.h5")
    assert r.returncode == 2 and r.stderr.startswith("error: cannot fetch") and r.stderr.count("\n") == 1
    assert not (tmp_path / "n.h5").exists()


def test_generate_writes_every_split_from_the_config(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  root: gen\n  generator: {nx: 16, nt: 5, n_train: 4, n_val: 2, n_test: 2}\n")
    r = run_script(tmp_path, "--split", "all", "--generate", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "Generating Burgers data for split 'val': 2 trajectories" in r.stdout
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        with PDEBenchFile(tmp_path / "gen" / f"burgers1d_{split}.h5") as f:
            assert f.n_samples == n and np.isfinite(f.tensor[:]).all()


def test_usage_errors_are_one_line_and_exit_2(tmp_path):
    cases = [
        ["--split", "all", "--url", "file:///x.h5", "--output", "o.h5"],
        ["--split", "train", "--url", "file:///x.h5", "--sha256", "xyz"],
        ["--split", "train", "--config", str(tmp_path / "missing.yaml")],
        ["--split", "all", "--url", "file:///x.h5"],
    ]
    for args in cases:
        r = run_script(tmp_path, *args)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, args


def test_help_explains_options_with_an_example(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0
    for word in ("--url", "--sha256", "--md5", "--output", "--generate", "--force", "examples:"):
        assert word in r.stdout
