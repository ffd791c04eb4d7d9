"""What the whole suite shares: the tiny configs, the runs root, and one tiny trained run of each
recipe (seconds to train; quality irrelevant), trained once per session for every test that needs
one."""

import os

import pytest

from recipes import config as recipes_config

# Seconds of training; quality is irrelevant. A small vocabulary makes [UNK] common on both
# sides, so the in-graph [UNK] replacement (replace_unk=true) is exercised; a short
# max_source_length makes truncation cheap to test.
TINY_NMT = dict(
    train_size=300,
    validation_size=30,
    test_size=30,
    max_digits=4,
    max_items=3,
    units=32,
    embedding_dim=16,
    batch_size=32,
    epochs=1,
    beam_size=3,
    coverage_penalty=0.2,
    max_source_length=12,
    max_target_length=16,
    max_vocab_size=30,
    replace_unk="true",
    run_id="tiny",
)

TINY_CAPTIONING = dict(
    train_size=96,
    validation_size=8,
    test_size=8,
    image_size=32,
    max_caption_length=12,
    encoder_filters=(8, 16, 32),
    feature_dim=32,
    embedding_dim=16,
    units=32,
    batch_size=32,
    epochs=1,
    beam_size=2,
    length_penalty=0.6,
    run_id="tiny",
)


SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "bible-en-fr")

# A subword run on the committed sample, in seconds; quality is irrelevant. The sample needs
# more than 300 ids (its characters, the 256 byte pieces and the 4 special ids).
TINY_SUBWORD_NMT = dict(
    train=os.path.join(SAMPLE, "train.tsv"),
    valid=os.path.join(SAMPLE, "valid.tsv"),
    test=os.path.join(SAMPLE, "test.tsv"),
    tokenizer="sentencepiece",
    vocab_size=400,
    units=32,
    embedding_dim=16,
    epochs=1,
    batch_tokens=1500,
    label_smoothing=0.1,
    max_source_length=60,
    max_target_length=80,
    run_id="subword-tiny",
)


@pytest.fixture(scope="session")
def subword_run(tmp_path_factory):
    """The folder of a tiny trained `tokenizer=sentencepiece` nmt run on the committed sample."""
    from recipes import nmt
    from tests.helpers import train_under

    return train_under(tmp_path_factory.mktemp("subword-runs"), nmt.train,
                       nmt.NmtConfig(**TINY_SUBWORD_NMT))


@pytest.fixture(scope="session")
def varied_subword_run(subword_run, tmp_path_factory):
    """`subword_run` with freshly initialised (seeded) weights in place of the trained ones.

    Seconds of training leave the tiny model repeating its commonest piece, so outputs that
    agree would say little; random weights decode varied pieces (byte pieces too), which is what
    the checks that two decoders agree need.
    """
    import json
    import shutil

    import keras

    from recipes import nmt, training

    run = str(tmp_path_factory.mktemp("varied-subword-run") / "run")
    shutil.copytree(subword_run, run, ignore=shutil.ignore_patterns("checkpoint.keras", "logs"))
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        config = nmt.NmtConfig(**json.load(f))
    keras.utils.set_random_seed(1)
    model = nmt.build_model(config, config.vocab_size, config.vocab_size)
    training.save_model_atomic(model, os.path.join(run, "model.keras"))
    return run


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):
    """The runs root (`recipes.config.RUNS_ROOT`) for the rest of the session, once asked for."""
    root = tmp_path_factory.mktemp("runs")
    old = recipes_config.RUNS_ROOT
    recipes_config.RUNS_ROOT = str(root)
    yield root
    recipes_config.RUNS_ROOT = old


@pytest.fixture(scope="session")
def tiny_nmt_run(runs_root):
    """The folder of the session's tiny trained nmt run (`TINY_NMT`)."""
    from recipes import nmt

    return nmt.train(nmt.NmtConfig(**TINY_NMT), quiet=True)


@pytest.fixture(scope="session")
def tiny_captioning_run(runs_root):
    """The folder of the session's tiny trained captioning run (`TINY_CAPTIONING`), evaluated."""
    from recipes import captioning

    return captioning.train(captioning.CaptioningConfig(**TINY_CAPTIONING), quiet=True)
