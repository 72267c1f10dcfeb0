"""The local metrics log: always written, trimmed on resume, readable after a torn write."""

import io
import json

from ups.training.metrics import MetricsLogger, read_metrics


def record(stage, step, loss=1.0):
    return {"stage": stage, "kind": "train", "epoch": 0, "step": step, "global_step": step, "loss": loss, "lr": 0.1}


def test_resume_drops_only_the_resumed_stages_lines_after_its_step(tmp_path):
    log = MetricsLogger(tmp_path, progress="off")
    for step in (5, 10, 15):
        log.log(record("operator", step))
    log.log(record("diff_residual", 5))
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"stage": "operator", "st')  # torn by a kill
    MetricsLogger(tmp_path, progress="off").truncate("operator", after_step=10)
    assert [(r["stage"], r["step"]) for r in read_metrics(tmp_path)] == [
        ("operator", 5), ("operator", 10), ("diff_residual", 5)]


def test_plain_lines_when_not_a_terminal(tmp_path, capsys):
    log = MetricsLogger(tmp_path, progress="auto")
    log.log(record("operator", 20, loss=0.5))
    log.close()
    out = capsys.readouterr().out
    assert "[operator] train" in out and "loss 5.0000e-01" in out
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["loss"] == 0.5


def test_progress_bar_when_asked(tmp_path, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    log = MetricsLogger(tmp_path, progress="bar")
    with log.progress("operator", total=10, start=4) as bar:
        bar.update(10)
    assert "operator" in err.getvalue() and "10/10" in err.getvalue()


def test_foreign_lines_are_skipped_not_fatal(tmp_path):
    log = MetricsLogger(tmp_path, progress="off")
    log.log(record("operator", 5))
    log.close()
    with open(tmp_path / "metrics.jsonl", "ab") as f:
        f.write(b"\xff\xfe not utf-8\n[1, 2]\n42\n")
    MetricsLogger(tmp_path, progress="off").truncate("operator", after_step=10)
    assert [(r["stage"], r["step"]) for r in read_metrics(tmp_path)] == [("operator", 5)]


def test_a_non_finite_number_is_written_as_null_never_as_a_nan_token(tmp_path):
    log = MetricsLogger(tmp_path, progress="off")
    log.log(record("operator", 5, loss=float("nan")))
    log.close()
    line = (tmp_path / "metrics.jsonl").read_text().strip()
    assert json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))["loss"] is None
