"""Every report figure renders to a PNG of the expected size from plain numbers (Agg, no display)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.image import imread

from ups.eval import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(png), format="png")


def test_the_rollout_figure_is_a_png_that_survives_nan_and_zero():
    img = pixels(plots.rollout_png({"persistence": [1.0, 2.0, float("nan")], "operator": [0.1, 0.0, 0.3]},
                                   ["persistence"], "t"))
    assert img.shape[:2] == (420, 750)
    assert img.std() > 0.01, "something is drawn"


def test_the_field_figure_has_one_panel_row_per_sample():
    x = list(np.linspace(0, 1, 16))
    panel = {"index": 0, "step": 1, "true": list(np.sin(x)), "lines": {"operator": list(np.cos(x))},
             "bands": {"diff_residual": (list(np.cos(x)), [0.1] * 16)}}
    img = pixels(plots.fields_png(x, [panel, {**panel, "step": 2}, {**panel, "index": 1}, {**panel, "index": 1, "step": 2}],
                                  [0.1, 0.2]))
    assert img.shape[:2] == (600, 840)


@pytest.mark.parametrize("draw", [
    lambda: plots.ensemble_png({"operator": {"crps": [0.1, 0.2], "spread_skill": [None, None]},
                                "diff_residual": {"crps": [0.09, 0.15], "spread_skill": [0.5, 0.8]}}, (0.7, 1.3)),
    lambda: plots.losses_png("operator", {"train": {"step": [1, 2, 3], "loss": [1.0, 0.5, 0.2]},
                                          "val": {"step": [3], "loss": [0.3]}}),
    lambda: plots.prior_png([0.0, 0.5], {"held_out": [1.0, 0.1, 0.01], "steady_prior": [1.0, 0.2, 0.02]},
                            {"held_out": [[0.0, 1.0]], "steady_prior": [[0.1, 0.9]]}),
])
def test_each_stage_figure_renders(draw):
    assert pixels(draw()).std() > 0.01
