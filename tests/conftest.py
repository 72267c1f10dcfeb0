"""Session-wide fixtures. Engineers add fixtures here; keep each one documented."""

from __future__ import annotations

import pytest

from tests.helpers import checkpoint_dir, train, write_config


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
