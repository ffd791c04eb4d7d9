"""What every recipe's runs share, over the hooks of `recipes.base.Recipe`: train / resume / fit,
the tuning trial, loading a run, evaluation bookkeeping.

    >>> from recipes import get_recipe, runner
    >>> nmt = get_recipe("nmt")
    >>> run_dir = runner.train(nmt, nmt.Config(epochs=3))   # = nmt.train(...)

A run folder's files and how they survive a kill: `recipes.training`.
"""

from __future__ import annotations

import json
import os
import time

import keras
import tensorflow as tf

from recipes import training
from recipes.config import to_dict, write_json
from zoo.errors import RunError


def _check_resumable(recipe, run_dir: str, config) -> None:
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    now = json.loads(json.dumps(to_dict(config)))  # tuples as JSON lists, as saved
    changed = sorted(k for k in set(saved) | set(now)
                     if saved.get(k) != now.get(k) and k not in recipe.continue_keys)
    if changed:
        raise RunError(
            f"{run_dir} was trained with a different config ({', '.join(changed)}); "
            "pick another run_id=... or delete the folder"
        )


def train(recipe, config, quiet: bool = False, evaluate_after: bool = True) -> str:
    """Trains (or resumes) `recipe`'s run for `config`; returns its folder.

    Re-running the same command resumes from the last finished epoch; a finished run is left as
    it is, unless the recipe lets `epochs` change on a re-run (`continue_keys`) and it grew.
    `evaluate_after`: run the recipe's `after_training` hook (captioning scores its test split).
    """
    keras.utils.set_random_seed(config.seed)
    if getattr(config, "mixed_precision", False):
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = training.choose_strategy()
    chief = training.is_chief(strategy)
    run_dir = training.run_dir_for(recipe.name, recipe.run_id(config))
    os.makedirs(run_dir, exist_ok=True)
    state = training.load_state(run_dir)
    if state is not None:
        _check_resumable(recipe, run_dir, config)
        if state.get("finished") and (state["epoch"] >= config.epochs or state.get("stopped_early")):
            more = (", raise epochs=... to train it further" if "epochs" in recipe.continue_keys
                    else "")
            print(f"{run_dir} is already trained ({state['epoch']} epochs); nothing to do. "
                  f"Delete it to train again{more}, or run "
                  f"`python -m recipes evaluate {recipe.name} --run {run_dir}`.")
            if chief:
                training.point_latest(run_dir)
            return run_dir
        state["finished"] = False
    t0 = time.time()
    data = recipe.build_data(config, run_dir if state is not None else None)
    train_ds, steps, val_ds, val_steps = recipe.datasets(
        data, config, first_epoch=(state or {}).get("epoch", 0)
    )
    summary, facts = recipe.describe_data(data, config)
    print(f"data: {summary}; {steps} batches an epoch ({time.time() - t0:.1f}s)")
    write_dir = run_dir if chief else training.scratch_dir(run_dir)
    if chief:
        write_json(os.path.join(run_dir, "config.json"), to_dict(config))
        if state is None:
            recipe.save_vocabularies(run_dir, data, config)
            if facts is not None:
                write_json(os.path.join(run_dir, "data.json"), {**facts, "batches_per_epoch": steps})
    with strategy.scope():
        if state is not None and os.path.exists(os.path.join(run_dir, "checkpoint.keras")):
            model = training.load_model_checked(os.path.join(run_dir, "checkpoint.keras"),
                                                "checkpoint")
            print(f"resuming {run_dir} after epoch {state['epoch']}")
        else:
            state = training.new_state()
            model = recipe.build_model(config, data)
            recipe.compile_model(model, config, steps)
    callbacks = [
        training.RunCheckpoint(write_dir, state, config.patience),
        training.tensorboard_callback(write_dir),
        *recipe.callbacks(model, data, config, write_dir, chief),
    ]
    if state["epoch"] < config.epochs and not state.get("stopped_early"):
        model.fit(
            train_ds,
            validation_data=val_ds,
            steps_per_epoch=steps,
            validation_steps=val_steps,
            initial_epoch=state["epoch"],
            epochs=config.epochs,
            callbacks=callbacks,
            verbose=0 if quiet else "auto",
        )
    best = os.path.join(write_dir, "best.weights.h5")
    if os.path.exists(best):
        model.load_weights(best)
    state["finished"] = True
    if not chief:
        training.remove_scratch(write_dir)
        return run_dir
    training.save_model_atomic(model, os.path.join(run_dir, "model.keras"))
    write_json(os.path.join(run_dir, "train_state.json"), state)
    training.point_latest(run_dir)
    print(f"trained {run_dir} in {state.get('train_seconds', 0):.0f}s of training "
          f"(best epoch {state['best_epoch']}, val_loss {state['best_val_loss']:.4f})")
    if evaluate_after:
        recipe.after_training(run_dir, data, quiet)
    return run_dir


# -- a run folder, and what evaluation writes in it -------------------------------------------


def load_run(name: str, config_from_json, run_dir: str, weights: str = "model.keras"):
    """(run folder, config, Keras model) of a finished run of recipe `name`, its config read
    by `config_from_json(dict)`; errors say what to do."""
    run_dir = training.resolve_run(run_dir)
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        raise RunError(f"{run_dir} has no config.json; is it {_a(name)} run folder?")
    with open(config_path, encoding="utf-8") as f:
        values = json.load(f)
    try:
        config = config_from_json(values)
    except TypeError as e:  # config.json has keys this recipe's config does not know
        raise RunError(f"{run_dir} is not {_a(name)} run ({e}); pass {_a(name)} run folder "
                       "with --run") from None
    path = os.path.join(run_dir, weights)
    if not os.path.exists(path):
        raise RunError(
            f"{run_dir} has no {weights}: its training has not finished; re-run "
            f"`python -m recipes train {name}` with the same arguments to finish it"
        )
    return run_dir, config, training.load_model_checked(path)


def _a(name: str) -> str:
    """"an nmt", "a captioning": the article as the name is read aloud (nmt letter by letter)."""
    return f"{'an' if name[:1] in 'aeio' or name == 'nmt' else 'a'} {name}"


def record_metrics(run_dir: str, key: str, report: dict) -> None:
    """Adds (or replaces) `report` under `key` in the run's `metrics.json`, atomically."""
    path = os.path.join(run_dir, "metrics.json")
    metrics = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            metrics = json.load(f)
    metrics[key] = report
    write_json(path, metrics)


def progress_bar(total: int, unit: str, quiet: bool = False):
    """A callable(n_done_now) that advances a Keras progress bar over `total` items."""
    bar = keras.utils.Progbar(total, unit_name=unit, verbose=0 if quiet else 1)
    done = [0]

    def advance(n):
        done[0] += n
        bar.update(done[0])

    return advance


def decoding_name(beam: int) -> str:
    return "greedy" if beam == 1 else f"beam{beam}"


# -- tuning trials ---------------------------------------------------------------------------


class Trials:
    """Trains one tuning trial of `recipe` and scores it (`recipes.tuning` calls `run`).

    The data is built once per process and shared by every trial whose config has the same
    `recipe.data_fields` (a search space only touches model and training fields).
    """

    def __init__(self, recipe):
        self.recipe = recipe
        self.objectives = recipe.objectives
        self._data = {}

    def data(self, config):
        key = tuple(getattr(config, f) for f in self.recipe.data_fields)
        if key not in self._data:
            t0 = time.time()
            data = self.recipe.build_data(config)
            summary, _ = self.recipe.describe_data(data, config)
            print(f"data: {summary} ({time.time() - t0:.1f}s, once per process)")
            self._data[key] = data
        return self._data[key]

    def run(self, config, epochs, initial_epoch=0, weights_in=None, weights_out=None,
            strategy=None, seed=0, log=print) -> dict:
        """Trains `config` to `epochs` (from `weights_in`: Hyperband's continued trial) and
        returns every objective: the recipe's scores and `val_loss`."""
        recipe = self.recipe
        data = self.data(config)
        strategy = strategy or tf.distribute.get_strategy()
        keras.utils.set_random_seed(seed)
        train_ds, steps, val_ds, val_steps = recipe.datasets(data, config, first_epoch=initial_epoch)
        with strategy.scope():
            model = recipe.build_model(config, data, initialise=not weights_in)
            recipe.compile_model(model, config, steps)
            if weights_in:  # Hyperband's continued trial: weights and Adam's moments
                model.optimizer.build(model.trainable_variables)
                model.load_weights(weights_in)
        log(f"variables on {variable_devices(model)}; compute dtype {model.compute_dtype}")
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            steps_per_epoch=steps,
            validation_steps=val_steps,
            initial_epoch=initial_epoch,
            epochs=epochs,
            verbose=2,
        )
        if weights_out:
            model.save_weights(weights_out)
        scores = recipe.score_trial(model, data, config)
        return {**scores, "val_loss": float(history.history["val_loss"][-1])}


def variable_devices(model) -> str:
    """Where the model's first variable lives (every replica's copy under a strategy)."""
    if not model.weights:
        return "?"
    value = getattr(model.weights[0], "value", model.weights[0])
    copies = getattr(value, "values", None) or (value,)
    return ", ".join(sorted({str(getattr(v, "device", "?")) for v in copies}))
