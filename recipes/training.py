"""What every recipe's training shares: run folders, strategies, checkpoints that survive a kill.

A run folder `runs/<recipe>/<run-id>/` holds `config.json`, `checkpoint.keras` (model and
optimizer, written at every epoch end), `train_state.json` (epoch, best validation loss, early
stopping counter, history), `best.weights.h5` (the best epoch's weights so far), `model.keras`
(the best weights, written when training ends), `metrics.json`, `logs/` (TensorBoard) and plots.
Every file is written to a temporary name in the same folder, fsynced and renamed (the folder
fsynced too), so a kill at any moment leaves the previous complete version in place.

An epoch end commits in one rename: `checkpoint.keras` carries its own copy of the training
state (a `train_state.json` member inside the archive, which Keras ignores when loading), so the
model, the optimizer and the epoch they belong to can never disagree. `best.weights.h5` and
`train_state.json` are written after it; `load_state` finds a kill between those writes (the
checkpoint's state is ahead of `train_state.json`), restores both from the checkpoint and says
so in one line. It also removes temporary files a kill or a full disk left behind. Re-running
the same command continues from the last finished epoch.

Test-only: `ZOO_TEST_KILL_AT=POINT[:N]` makes training SIGKILL itself at a named point of an
epoch end (`KILL_POINTS`; at every epoch, or only at epoch N), so tests can cut a run exactly
between two writes (tuning has points of its own, see `recipes.tuning`). Nothing else reads it;
never set it outside tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
import zipfile

import keras
import tensorflow as tf

from recipes.config import (  # noqa: F401 - latest_run and run_dir_for: used from here too
    RUN_ID,
    ConfigError,
    commit_file,
    latest_run,
    run_dir_for,
    write_json,
)
from zoo.errors import RunError


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


# -- writes that survive a kill ---------------------------------------------------------------

# Where an epoch end can be cut, in the order it passes them (see the module docstring).
KILL_POINTS = ("before_checkpoint", "checkpoint_unrenamed", "after_checkpoint", "after_best",
               "after_state")
STATE_MEMBER = "train_state.json"  # the training state's copy inside checkpoint.keras
# A temporary name: `<name>.tmp-<pid>[...]` (ours and `write_json`'s) or Keras's own temporary
# weights file (`tmp` + 8 characters, written beside a large model's archive).
_TEMP_NAME = re.compile(r"\.tmp-(\d+)(\.|$)|^tmp[a-z0-9_]{8}$")
_WORKER_DIR = re.compile(r"^\.worker-(.+)-(\d+)$")


def kill_point(name: str, at: int) -> None:
    """Test-only: SIGKILL this process at point `name` (of epoch or trial `at`) when
    `ZOO_TEST_KILL_AT` is `name` or `name:at`."""
    wanted = os.environ.get("ZOO_TEST_KILL_AT")
    if not wanted:
        return
    point, _, number = wanted.partition(":")
    if point == name and (not number or int(number) == at):
        print(f"ZOO_TEST_KILL_AT: killing myself at {name}:{at}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def write_text_durable(path: str, text: str, kill_at: tuple[str, int] | None = None) -> None:
    """`text` written to a temporary name, fsynced, renamed over `path`, its folder fsynced.
    `kill_at`: the test-only `kill_point` between writing and renaming."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        if kill_at is not None:
            kill_point(*kill_at)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    commit_file(tmp, path)


def save_model_atomic(model: keras.Model, path: str, state: dict | None = None,
                      epoch: int = 0) -> None:
    """Saves `model` (`.keras`) or its weights (`.weights.h5`) to `path` in one rename.

    `state` (a `.keras` file only) goes into the archive as `train_state.json`, committed by
    the same rename as the model and its optimizer.
    """
    if path.endswith(".weights.h5"):
        tmp = f"{path[: -len('.weights.h5')]}.tmp-{os.getpid()}.weights.h5"
    else:
        tmp = f"{path}.tmp-{os.getpid()}.keras"
    try:
        if path.endswith(".weights.h5"):
            model.save_weights(tmp)
        else:
            model.save(tmp)
        if state is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(STATE_MEMBER, json.dumps(state, sort_keys=True))
            kill_point("checkpoint_unrenamed", epoch)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    commit_file(tmp, path)


def checkpoint_state(path: str) -> dict | None:
    """The training state inside a checkpoint archive; None if it has none or is unreadable
    (loading the checkpoint then names the problem)."""
    try:
        with zipfile.ZipFile(path) as archive:
            state = json.loads(archive.read(STATE_MEMBER))
        int(state["epoch"])
        return state
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers: nothing of ours is being written yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _chief_by_tf_config() -> bool:
    """`is_chief` before any strategy exists, from `TF_CONFIG` (no cluster: this process)."""
    config = tf_config()
    if len(config.get("cluster", {}).get("worker", [])) <= 1:
        return True
    task = config.get("task", {})
    return task.get("type") == "chief" or (task.get("type") == "worker"
                                           and int(task.get("index", 0)) == 0)


def remove_leftovers(run_dir: str) -> list[str]:
    """Removes what a killed writer left in `run_dir`: temporary files (of processes no longer
    running) and the scratch folders of this machine's killed workers. Returns their names."""
    removed = []
    host = socket.gethostname()
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        temp = _TEMP_NAME.search(name)
        worker = _WORKER_DIR.match(name)
        if temp and os.path.isfile(path) and not (temp.group(1) and _pid_alive(int(temp.group(1)))):
            os.remove(path)
        elif worker and worker.group(1) == host and not _pid_alive(int(worker.group(2))):
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed.append(name)
    return removed


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
        if state["wait"] >= self.patience:
            state["stopped_early"] = True  # saved with the epoch: a resumed run stops too
        if self.write:
            # The checkpoint (with the state inside) is the commit; the rest follows from it.
            kill_point("before_checkpoint", epoch + 1)
            save_model_atomic(self.model, os.path.join(self.run_dir, "checkpoint.keras"),
                              state=state, epoch=epoch + 1)
            kill_point("after_checkpoint", epoch + 1)
            if improved:
                save_model_atomic(self.model, os.path.join(self.run_dir, "best.weights.h5"))
            kill_point("after_best", epoch + 1)
            write_json(os.path.join(self.run_dir, "train_state.json"), state)
            kill_point("after_state", epoch + 1)
        if self.on_epoch is not None:
            self.on_epoch(epoch, logs)
        if state.get("stopped_early"):
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
    """The state to resume `run_dir` from (None: start it), after removing what a kill left.

    `train_state.json` unless the checkpoint's own state is further on: then the run was
    killed between committing the checkpoint and writing the rest, which is finished here.
    """
    # Only the chief writes in the run folder: another worker (maybe on another machine, where
    # the chief's process number means nothing) could take the chief's live files for leftovers.
    removed = remove_leftovers(run_dir) if _chief_by_tf_config() else []
    if removed:
        print(f"removed {len(removed)} temporary file(s) a stopped run left in {run_dir}: "
              f"{', '.join(removed)}")
    path = os.path.join(run_dir, "train_state.json")
    state = None
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            int(state["epoch"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunError(
                f"training state {path} is corrupt ({e}); delete {run_dir} to start the run over"
            ) from None
    checkpoint = os.path.join(run_dir, "checkpoint.keras")
    saved = checkpoint_state(checkpoint) if os.path.exists(checkpoint) else None
    if saved is None or (state is not None and int(saved["epoch"]) <= int(state["epoch"])):
        return state
    was = "missing" if state is None else f"at epoch {state['epoch']}"
    print(f"{path} was {was} but {checkpoint} holds epoch {saved['epoch']} (the run stopped "
          "between the two writes): resuming from the checkpoint's own state")
    if saved.get("best_epoch") == saved["epoch"]:
        # The checkpoint is the best epoch; best.weights.h5 may not have been written after it.
        best = os.path.join(run_dir, "best.weights.h5")
        tmp = f"{best[: -len('.weights.h5')]}.tmp-{os.getpid()}.weights.h5"
        with zipfile.ZipFile(checkpoint) as archive, open(tmp, "wb") as out:
            shutil.copyfileobj(archive.open("model.weights.h5"), out)
        commit_file(tmp, best)
    write_json(path, saved)
    return saved


def optimizer(config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Every recipe's optimizer: Adam with `clipnorm`, its `learning_rate` decayed on a cosine to
    5% over the run's `epochs`."""
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05
    )
    return keras.optimizers.Adam(schedule, clipnorm=config.clipnorm)


def epoch_dataset(batches, spec) -> tf.data.Dataset:
    """A `tf.data` pipeline over `batches()`, a generator of one epoch's batches that the
    recipe shuffles itself (`spec`: their `output_signature`): repeated, prefetched, and
    sharded by data across workers."""
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).repeat().prefetch(2)


def tensorboard_callback(run_dir: str) -> keras.callbacks.Callback:
    return keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq="epoch")


def scratch_dir(run_dir: str) -> str:
    """Where a non-chief worker writes (then throws away) its copy of the checkpoints; named
    after its machine and process, so `remove_leftovers` can tell a killed worker's folder."""
    path = os.path.join(run_dir, f".worker-{socket.gethostname()}-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    return path


def remove_scratch(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
