"""Session-wide fixtures. Engineers add fixtures here; keep each one documented."""

from __future__ import annotations

import os

# The models under test are tiny: one thread per process is as fast, and it keeps
# OpenMP from spinning against the training subprocesses on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from tests.helpers import checkpoint_dir, train, write_config


@pytest.fixture(scope="session", autouse=True)
def matplotlib_cache(tmp_path_factory):
    """matplotlib's config and font cache in a directory of this session (MPLCONFIGDIR, which the
    CLI subprocesses inherit): no test depends on, or writes into, the user's ~/.cache/matplotlib."""
    previous = os.environ.get("MPLCONFIGDIR")
    os.environ["MPLCONFIGDIR"] = str(tmp_path_factory.mktemp("matplotlib"))
    yield
    if previous is None:
        os.environ.pop("MPLCONFIGDIR", None)
    else:
        os.environ["MPLCONFIGDIR"] = previous


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory):
    """One generated data directory for every tiny pipeline (generation is seeded, reads are shared)."""
    return tmp_path_factory.mktemp("shared-data")


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, shared_data):
    """The tiny pipeline trained once, uninterrupted: the weights every resumed run must match."""
    root = tmp_path_factory.mktemp("reference")
    config = write_config(root, data_root=shared_data)
    train(config, "--stage", "all", check=True)
    return checkpoint_dir(config)


@pytest.fixture
def finished_run(tmp_path, reference_run, shared_data):
    """A private copy of the finished tiny pipeline, and a config that points at it: (config, checkpoint_dir).

    Stage fingerprints leave out where files live, so the copy is as `completed,
    outputs verified` for this config as the original; tests may alter it freely.
    """
    import shutil

    reports = {"eval": {"output_prefix": str(tmp_path / "reports" / "eval")}}  # never into the checkout
    config = write_config(tmp_path, extra=reports, data_root=shared_data)
    ckpt = checkpoint_dir(config)
    shutil.copytree(reference_run, ckpt)
    return config, ckpt
