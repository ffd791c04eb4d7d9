"""Faults and bad input around runs: corrupt files are named, never silently retrained over."""

import json
import os
import shutil

import pytest

from recipes import nmt, training
from recipes.config import apply_overrides
from recipes.nmt.inference import Translator
from tests.conftest import TINY_NMT


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


# -- kills between the writes of an epoch end (in process: the files a kill leaves) ----------


def _small_model():
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    return model


def _state(epoch, losses):
    return {"epoch": epoch, "best_val_loss": min(losses), "best_epoch": 1 + losses.index(min(losses)),
            "wait": 0, "history": [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(losses)]}


@pytest.mark.parametrize("state_file_epoch", [None, 1])
def test_a_checkpoint_ahead_of_train_state_is_resumed_from_its_own_state(tmp_path, capsys,
                                                                          state_file_epoch):
    """What a kill between committing checkpoint.keras (epoch 2) and writing best.weights.h5
    and train_state.json leaves: train_state.json at epoch 1 (or none, in the first epoch)."""
    import numpy as np

    from recipes.config import write_json

    run = str(tmp_path)
    model = _small_model()
    if state_file_epoch:
        write_json(os.path.join(run, "train_state.json"), _state(1, [2.0]))
    committed = _state(2, [2.0, 1.0])
    training.save_model_atomic(model, os.path.join(run, "checkpoint.keras"), state=committed)
    assert training.load_state(run) == committed
    assert "resuming from the checkpoint's own state" in capsys.readouterr().out
    with open(os.path.join(run, "train_state.json"), encoding="utf-8") as f:
        assert json.load(f) == committed  # the lagging file is brought up to date
    # Epoch 2 is the best one: best.weights.h5 holds its weights (restored from the checkpoint).
    other = _small_model()
    other.load_weights(os.path.join(run, "best.weights.h5"))
    for a, b in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The checkpoint still loads as a model, optimizer included.
    loaded = training.load_model_checked(os.path.join(run, "checkpoint.keras"))
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)
    assert training.load_state(run) == committed and "checkpoint" not in capsys.readouterr().out


def test_leftovers_of_a_killed_writer_are_removed_on_the_next_start(tmp_path, capsys,
                                                                   monkeypatch):
    import socket
    import subprocess

    finished = subprocess.Popen(["true"])
    finished.wait()
    dead, alive, host = finished.pid, os.getppid(), socket.gethostname()
    run = tmp_path
    left = [f"checkpoint.keras.tmp-{dead}.keras", f"train_state.json.tmp-{dead}",
            f"best.tmp-{dead}.weights.h5", f"model.keras.tmp-{dead}.keras", "tmpk3x_9q2a"]
    kept = [f"metrics.json.tmp-{alive}", "config.json", "tmp-notes.txt"]
    for name in left + kept:
        (run / name).write_bytes(b"partial")
    (run / f".worker-{host}-{dead}").mkdir()
    (run / f".worker-{host}-{dead}" / "checkpoint.keras").write_bytes(b"x")
    (run / f".worker-elsewhere-{dead}").mkdir()  # another machine's: not ours to judge
    everything = sorted(p.name for p in run.iterdir())
    # A worker other than the chief leaves them: only the chief writes in the run folder.
    workers = ["127.0.0.1:1", "127.0.0.1:2"]
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": workers},
                                                "task": {"type": "worker", "index": 1}}))
    assert training.load_state(str(run)) is None
    assert sorted(p.name for p in run.iterdir()) == everything
    monkeypatch.delenv("TF_CONFIG")
    assert training.load_state(str(run)) is None
    assert sorted(p.name for p in run.iterdir()) == sorted(kept + [f".worker-elsewhere-{dead}"])
    assert "removed 6 temporary file(s)" in capsys.readouterr().out
