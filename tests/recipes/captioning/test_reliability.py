"""kill -9 during captioning training: at any moment (inside the first epoch, while a
checkpoint is being written, right after one) the run folder holds only complete files, the
same command resumes and finishes, and no temporary file is left behind (the captioning twin of
test_nmt.py's test_kill_during_training_then_resume)."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.recipes.captioning.test_captioning import TINY

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EPOCHS = 4
# Big enough that an epoch lasts a few seconds (the kills land inside one), small enough to
# train in a minute.
KILLED = {**TINY, "train_size": 1200, "validation_size": 32, "test_size": 16, "epochs": EPOCHS,
          "fresh_scenes": "false"}


def _train_cmd(run_id):
    words = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
             for k, v in KILLED.items()]
    return [sys.executable, "-m", "recipes", "train", "captioning", *words, f"run_id={run_id}"]


def _env(root):
    return {**os.environ, "ZOO_RUNS": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _temporary(run_dir):
    """Files a writer puts down before renaming them into place (`*.tmp-<pid>*`), and the
    scratch folders of other workers."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if ".tmp" in p.name or p.name.startswith(".worker-"))


def _state(run_dir):
    path = run_dir / "train_state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _kill_when(tmp_path, run_id, ready, what, timeout=300):
    """Starts the training command and kill -9s it once `ready()` holds; fails if training
    ended first."""
    log = tmp_path / f"train-{run_id}.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_train_cmd(run_id), cwd=REPO, env=_env(tmp_path), stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline and not ready():
            time.sleep(0.005)
        assert proc.poll() is None, f"training ended before {what}: {log.read_text()[-2000:]}"
        assert ready(), f"{what} did not happen within {timeout} s"
    finally:
        proc.kill()  # SIGKILL: no finally blocks, no atexit, no cleanup
        proc.wait()


def _complete(run_dir):
    """Every file the run folder holds under its real name is whole: the JSON parses, the
    checkpoint loads."""
    import keras

    for name in ("config.json", "train_state.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())
    if (run_dir / "vocab.txt").exists():
        assert (run_dir / "vocab.txt").read_text().endswith("\n")
    if (run_dir / "checkpoint.keras").exists():
        keras.models.load_model(run_dir / "checkpoint.keras", safe_mode=True)


def test_kill_during_training_then_resume_leaves_nothing_half_written(tmp_path):
    run_dir = tmp_path / "captioning" / "killed"

    def in_first_epoch():
        # fit has started (TensorBoard opened its training log), no epoch has ended.
        return (run_dir / "logs" / "train").is_dir() and _state(run_dir) is None

    def writing_checkpoint():
        return any(p.name.startswith(("checkpoint.keras.tmp", "best.tmp"))
                   for p in run_dir.glob("*"))

    def after_checkpoint(epochs):
        return lambda: (_state(run_dir) or {}).get("epoch", 0) >= epochs

    # 1. Inside the first epoch: nothing to resume from yet; the next command starts over.
    _kill_when(tmp_path, "killed", in_first_epoch, "the first epoch")
    assert _state(run_dir) is None and not (run_dir / "checkpoint.keras").exists()
    _complete(run_dir)
    # 2. While a checkpoint (or the best weights) is being written.
    _kill_when(tmp_path, "killed", writing_checkpoint, "a checkpoint write")
    _complete(run_dir)
    epoch = (_state(run_dir) or {}).get("epoch", 0)
    # 3. Right after a checkpoint, one epoch further.
    _kill_when(tmp_path, "killed", after_checkpoint(epoch + 1), f"epoch {epoch + 1}'s checkpoint")
    _complete(run_dir)
    state = _state(run_dir)
    assert epoch + 1 <= state["epoch"] < EPOCHS and not state.get("finished")

    done = subprocess.run(_train_cmd("killed"), cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {run_dir} after epoch {state['epoch']}" in done.stdout
    final = _state(run_dir)
    assert final["finished"] and final["epoch"] == EPOCHS
    assert [h["epoch"] for h in final["history"]] == list(range(1, EPOCHS + 1))
    assert (run_dir / "model.keras").exists() and (run_dir / "metrics.json").exists()
    _complete(run_dir)
    assert _temporary(run_dir) == []
    assert _temporary(run_dir.parent) == []  # runs/captioning/latest.tmp-*
    assert os.readlink(run_dir.parent / "latest") == "killed"
