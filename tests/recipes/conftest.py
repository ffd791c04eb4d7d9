"""A tiny trained nmt run shared by the recipe tests (seconds to train; quality irrelevant)."""

import pytest

from recipes import config as recipes_config

TINY_NMT = dict(
    train_size=400,
    validation_size=40,
    test_size=40,
    max_digits=3,
    max_items=3,
    units=32,
    embedding_dim=16,
    batch_size=32,
    epochs=2,
    beam_size=3,
)


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):

    root = tmp_path_factory.mktemp("runs")
    old = recipes_config.RUNS_ROOT
    recipes_config.RUNS_ROOT = str(root)
    yield root
    recipes_config.RUNS_ROOT = old


@pytest.fixture(scope="session")
def tiny_nmt_run(runs_root):
    from recipes import nmt
    from recipes.config import apply_overrides

    config = apply_overrides(nmt.NmtConfig(), {**TINY_NMT, "run_id": "tiny"})
    return nmt.train(config, quiet=True)
