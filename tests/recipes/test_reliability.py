"""Faults and bad input around runs: corrupt files are named, never silently retrained over."""

import json
import os
import shutil

import pytest

from recipes import nmt, training
from recipes.config import apply_overrides
from recipes.translator import Translator
from tests.recipes.conftest import TINY_NMT


def _copy_run(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_corrupt_model_file_is_named(tiny_nmt_run, tmp_path):
    run = _copy_run(tiny_nmt_run, tmp_path / "run")
    model = os.path.join(run, "model.keras")
    with open(model, "r+b") as f:
        f.truncate(os.path.getsize(model) // 2)
    with pytest.raises(training.RunError, match=r"model file .*model.keras is corrupt"):
        Translator.from_run(run)


def test_corrupt_checkpoint_stops_training_instead_of_starting_over(runs_root, tiny_nmt_run):
    config = apply_overrides(nmt.NmtConfig(), {**TINY_NMT, "run_id": "corrupt-ckpt"})
    run = training.run_dir_for("nmt", "corrupt-ckpt")
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(tiny_nmt_run, run)
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(json.load(open(os.path.join(tiny_nmt_run, "config.json"))) | {"run_id": "corrupt-ckpt"}, f)
    state_path = os.path.join(run, "train_state.json")
    state = json.load(open(state_path))
    state.update(finished=False, epoch=1)
    json.dump(state, open(state_path, "w"))
    ckpt = os.path.join(run, "checkpoint.keras")
    with open(ckpt, "wb") as f:
        f.write(b"PK\x03\x04 not really a zip")
    before = os.path.getmtime(ckpt)
    with pytest.raises(training.RunError, match=r"checkpoint file .*checkpoint.keras is corrupt"):
        nmt.train(config, quiet=True)
    assert os.path.getmtime(ckpt) == before  # nothing was written over it


def test_corrupt_train_state_is_named(runs_root, tiny_nmt_run):
    run = training.run_dir_for("nmt", "corrupt-state")
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(tiny_nmt_run, run)
    with open(os.path.join(run, "train_state.json"), "w") as f:
        f.write('{"epoch": ')
    config = apply_overrides(nmt.NmtConfig(), {**TINY_NMT, "run_id": "corrupt-state"})
    with pytest.raises(training.RunError, match=r"training state .*train_state.json is corrupt"):
        nmt.train(config, quiet=True)


def test_unfinished_run_says_how_to_finish(tiny_nmt_run, tmp_path):
    run = _copy_run(tiny_nmt_run, tmp_path / "run")
    os.remove(os.path.join(run, "model.keras"))
    with pytest.raises(training.RunError, match="training has not finished"):
        Translator.from_run(run)


def test_models_load_in_safe_mode_only(tiny_nmt_run):
    # A .keras file whose config smuggles a Python lambda must be refused, not executed.
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    path = os.path.join(os.path.dirname(tiny_nmt_run), "lambda.keras")
    model.save(path)
    with pytest.raises(training.RunError, match="contains Python code.*safe mode"):
        training.load_model_checked(path)


def test_same_run_id_with_another_config_is_refused(runs_root, tiny_nmt_run):
    config = apply_overrides(nmt.NmtConfig(), {**TINY_NMT, "run_id": "tiny", "units": 64})
    with pytest.raises(training.RunError, match="different config .*units"):
        nmt.train(config, quiet=True)
