"""The dashboard's goodput section and the report's timeline, from a record alone."""

from __future__ import annotations

from ups.eval import plots
from ups.eval.goodput_view import goodput_facts, render_lines, timeline_bars, timeline_note
from ups.resume import goodput as gp


def record_of_two_attempts() -> dict:
    record = gp.empty_record()
    first = gp.begin_attempt(record, host="box-1", pid=1, started_at="2026-01-01T00:00:00Z")
    first.update(wall_s=100.0, startup_s=10.0, step_s=80.0, steps=80, at={"stage": "operator", "step": 80})
    gp.end_attempt(record, first, gp.SIGTERM)
    second = gp.begin_attempt(record, host="box-2", pid=2, started_at="2026-01-01T00:03:00Z")
    second.update(wall_s=50.0, startup_s=12.0, step_s=30.0, steps=30, save_blocked_s=1.0)
    gp.end_attempt(record, second, gp.COMPLETED)
    return record


def test_dashboard_section_names_goodput_interruptions_and_each_attempt():
    facts = goodput_facts({"details": {"goodput": record_of_two_attempts()}})
    text = "\n".join(render_lines(facts))
    assert facts["attempts"] == 2 and facts["interruptions"]["relaunch"] == 1
    assert "73.3% of 2.5 min" in text  # (80 + 30) / 150
    assert "1 sigterm, 1 relaunch" in text and "#2   completed" in text


def test_no_record_is_said_plainly():
    assert goodput_facts({"details": {}}) is None
    assert "no attempt recorded" in render_lines(None)[-1]


def test_timeline_has_one_bar_per_attempt_after_the_gap_between_them():
    first, second = timeline_bars(record_of_two_attempts())
    assert (first["label"], first["start_s"], first["end"]) == ("#1 box-1", 0.0, "sigterm")
    assert first["segments"] == {"startup": 10.0, "steps": 80.0, "saves": 0.0, "other": 10.0}
    assert (second["start_s"], second["end"]) == (180.0, "completed")  # started 3 min after the first
    assert sum(second["segments"].values()) == 50.0
    assert timeline_bars(None) == [] and timeline_note(None) == ""
    assert "Goodput 73.3%" in timeline_note(record_of_two_attempts())


def test_the_timeline_is_drawn_as_a_png():
    png = plots.attempts_png(timeline_bars(record_of_two_attempts()))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
