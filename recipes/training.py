"""What every recipe's training shares: run folders, strategies, checkpoints that survive a kill.

A run folder `runs/<recipe>/<run-id>/` holds `config.json`, `checkpoint.keras` (model and
optimizer, written at every epoch end), `train_state.json` (epoch, best validation loss, early
stopping counter, history), `model.keras` (the best weights, written when training ends),
`metrics.json`, `logs/` (TensorBoard) and plots. Every file is written to a temporary name and
renamed, so a kill at any moment leaves the previous complete version in place. Re-running the
same command finds `train_state.json` and continues from the last finished epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import keras
import tensorflow as tf

from recipes.config import RUN_ID, ConfigError, check_run_id, write_json

# The runs root of every command (train, evaluate, translate, export, bench): $ZOO_RUNS or runs/.
RUNS_ROOT = os.environ.get("ZOO_RUNS", "runs")


class RunError(RuntimeError):
    """A run folder is missing, corrupt or does not match the command."""


def latest_run(recipe: str) -> str:
    """`<runs root>/<recipe>/latest`: where every command looks when no run is given."""
    return os.path.join(RUNS_ROOT, recipe, "latest")


def run_dir_for(recipe: str, run_id: str) -> str:
    """`<runs root>/<recipe>/<run_id>`; the id is a plain name, so the folder stays in the root."""
    check_run_id(run_id)
    return os.path.join(RUNS_ROOT, recipe, run_id)


def point_latest(run_dir: str) -> None:
    """Atomically points `runs/<recipe>/latest` at `run_dir`.

    Only a link this project made (a relative link to a sibling folder) is replaced: a file,
    folder or other link of that name is the user's, and refreshing it is an error.
    """
    parent = os.path.dirname(os.path.abspath(run_dir))
    link = os.path.join(parent, "latest")
    if os.path.lexists(link) and not (
        os.path.islink(link) and RUN_ID.fullmatch(os.readlink(link))
    ):
        raise RunError(
            f"{link} exists and is not the link to the latest run this project keeps; move it "
            "away (training writes a link named latest there)"
        )
    tmp = f"{link}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(os.path.basename(run_dir), tmp)
    os.replace(tmp, link)


def resolve_run(path: str) -> str:
    """A run folder from a path that may be `runs/<recipe>/latest`; clear error when missing."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        recipe = os.path.basename(os.path.dirname(os.path.abspath(path))) or "RECIPE"
        raise RunError(
            f"no run at {path}; `python -m recipes train {recipe}` (or `make train "
            f"RECIPE={recipe}`) creates one"
        )
    return real


def tf_config() -> dict:
    """The `TF_CONFIG` environment variable (multi-worker training), checked; `{}` when unset."""
    text = os.environ.get("TF_CONFIG", "") or "{}"
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e.msg}); {example}") from None
    workers = value.get("cluster", {}).get("worker", []) if isinstance(value, dict) else None
    task = value.get("task", {}) if isinstance(value, dict) else None
    if not isinstance(workers, list) or not isinstance(task, dict) or (
        workers and not isinstance(task.get("index", 0), int)
    ):
        raise ConfigError(f"TF_CONFIG has no list of workers or no task index; {example}")
    return value


def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored from TF_CONFIG, Mirrored on several GPUs, else the default strategy."""
    if len(tf_config().get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


def save_model_atomic(model: keras.Model, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}.keras" if path.endswith(".keras") else f"{path}.tmp"
    if path.endswith(".weights.h5"):
        tmp = f"{path[: -len('.weights.h5')]}.tmp-{os.getpid()}.weights.h5"
        model.save_weights(tmp)
    else:
        model.save(tmp)
    os.replace(tmp, path)


def load_model_checked(path: str, what: str = "model") -> keras.Model:
    """Loads a `.keras` file in safe mode; a corrupt file is a clear error naming it."""
    if not os.path.exists(path):
        raise RunError(f"{what} file {path} does not exist")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means the same to the user
        if "safe_mode" in str(e):
            raise RunError(
                f"{what} file {path} contains Python code (e.g. a Lambda layer), which safe "
                "mode refuses to run; the project's own files never do: is it from elsewhere?"
            ) from None
        raise RunError(
            f"{what} file {path} is corrupt or unreadable ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); delete the run folder "
            f"{os.path.dirname(path)} to train again from scratch"
        ) from None


class RunCheckpoint(keras.callbacks.Callback):
    """Saves model + optimizer + training state at every epoch end; early stopping on val_loss.

    The early-stopping counter and the best validation loss are part of the saved state, so a
    resumed run stops at the same epoch an uninterrupted one would.
    """

    def __init__(self, run_dir, state, patience, write=True, on_epoch=None):
        super().__init__()
        self.run_dir = run_dir
        self.state = state
        self.patience = patience
        self.write = write
        self.on_epoch = on_epoch
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        state = self.state
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, **logs})
        state["train_seconds"] = state.get("train_seconds", 0.0) + time.time() - self._start
        self._start = time.time()
        val = logs.get("val_loss", logs.get("loss"))
        improved = val is not None and val < state["best_val_loss"]
        if improved:
            state["best_val_loss"] = val
            state["best_epoch"] = epoch + 1
            state["wait"] = 0
        else:
            state["wait"] += 1
        if self.write:
            if improved:
                save_model_atomic(self.model, os.path.join(self.run_dir, "best.weights.h5"))
            save_model_atomic(self.model, os.path.join(self.run_dir, "checkpoint.keras"))
            write_json(os.path.join(self.run_dir, "train_state.json"), state)
        if self.on_epoch is not None:
            self.on_epoch(epoch, logs)
        if state["wait"] >= self.patience:
            state["stopped_early"] = True
            self.model.stop_training = True


class LearningCheck(keras.callbacks.Callback):
    """Says at once when a run is not learning: after an epoch, validation token accuracy still
    within a point of the rate of always predicting the most frequent token (`baseline`, 0-1).

    A collapsed run shows it after its first epoch, not when training ends; the message names
    what to try.
    """

    def __init__(self, baseline: float, metric: str = "val_masked_accuracy", margin: float = 0.01):
        super().__init__()
        self.baseline = float(baseline)
        self.metric = metric
        self.margin = margin
        self.warnings = []

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None or float(value) > self.baseline + self.margin:
            return
        message = (
            f"warning: not learning: after epoch {epoch + 1} validation token accuracy is "
            f"{100 * float(value):.2f}%, the rate of always predicting the most frequent token "
            f"({100 * self.baseline:.2f}%). Try a lower learning_rate (e.g. half), smaller "
            "batches, or a subword vocabulary (tokenizer=sentencepiece) for a large vocabulary."
        )
        self.warnings.append(message)
        print(message, flush=True)


def new_state() -> dict:
    return {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "wait": 0, "history": []}


def load_state(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "train_state.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        int(state["epoch"])
        return state
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(
            f"training state {path} is corrupt ({e}); delete {run_dir} to start the run over"
        ) from None


def tensorboard_callback(run_dir: str) -> keras.callbacks.Callback:
    return keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq="epoch")


def scratch_dir(run_dir: str) -> str:
    """Where a non-chief worker writes (then throws away) its copy of the checkpoints."""
    path = os.path.join(run_dir, f".worker-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    return path


def remove_scratch(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
