"""Fixtures shared by the recipe and export tests of nmt on real text."""

import os

import pytest

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
