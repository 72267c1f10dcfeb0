"""The bad-input catalogue (cases in `bad_input_cases.py`): every hostile input to every command
ends in its documented exit code and one clear line, never a traceback, and changes no
completed output and no file outside the checkpoint directory."""

import pytest

from tests.helpers import REPO
from tests.integration.bad_input_cases import CASES, Ctx, classify, error_lines, release_holders, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_clear_line(case, tmp_path, reference_run, shared_data):
    ctx = Ctx(tmp_path / "case", shared_data, reference_run)
    ctx.root.mkdir()
    try:
        outcome = run_case(case, ctx, REPO)
    finally:
        release_holders()
    shown = f"exit {outcome.exit_code}\nstderr:\n{outcome.stderr[-3000:]}\nstdout:\n{outcome.stdout[-1500:]}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, shown
    assert outcome.exit_code == case.exit_code, shown
    lines = error_lines(outcome)
    assert len(lines) == 1 and lines[0].startswith(case.line_prefix), shown
    assert case.needle in lines[0], shown
    assert outcome.changed == [], f"files changed: {outcome.changed}\n{shown}"
    assert classify(case, outcome) == "clear"
