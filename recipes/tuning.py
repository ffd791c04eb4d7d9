"""Hyperparameter search with keras-tuner, for any recipe that declares a `search_space`.

    python -m recipes tune nmt tuner=random max_trials=12 train_size=4000 epochs=3
    python -m recipes train nmt hp=runs/nmt/tune-random-1a2b3c4d/best.json

A recipe's `search_space(hp, config)` returns `config` with values drawn from `hp` (a
`kt.HyperParameters`); each hyperparameter is named after the config field it sets, so the
best values go straight back into a config (`hp=best.json`). Every trial trains the trial's
config for the base config's `epochs` (Hyperband: the epochs its schedule gives) and reports
the recipe's objective to the oracle (nmt: `val_bleu`, corpus BLEU of the validation split
decoded with the trial's `beam_size`). A searched field given on the command line is fixed at
that value instead of searched (`units=64`: every trial has 64 units).

Keys that are not config fields (`split_tuning_words`):
    tuner=hyperband|bayesian|random  the search (default hyperband)
    max_trials=N     at most N trials (default 20; 0: Hyperband's full schedule)
    executions=N     train each trial N times (seeds seed..seed+N-1), average the objective
    objective=NAME   what to optimise (nmt: val_bleu, or val_loss)
    factor=N         Hyperband's reduction factor (default 3)
    fresh=true       delete the search and start over

The search lives in `runs/<recipe>/tune-<tuner>-<hash>/`, the hash a function of the base config
and the settings above except `max_trials` and `fresh`: re-running the same command resumes
the search (completed trials are not re-run; the interrupted one is), and raising `max_trials`
extends it. The folder holds keras-tuner's project (`search/`), `trials.md` and `trials.json`
(every trial's hyperparameters, objective and seconds) and `best.json`.

A kill never leaves a search that cannot resume: keras-tuner's own records (`oracle.json`, each
`trial_*/trial.json`, `tuner0.json`) are written to a temporary name, fsynced and renamed here
(keras-tuner writes them in place). A search whose records were cut all the same (written by an
older version, or a full disk) resumes without the cut trial, with a warning line: see
`DurableOracle`. Test-only, as in training: `ZOO_TEST_KILL_AT=trial_<status>_unrenamed:N` (e.g.
`trial_completed_unrenamed:0`) or `oracle_unrenamed:N` kills the process between writing a
record's temporary file and renaming it.

Across machines, keras-tuner's own mode: the process with `KERASTUNER_TUNER_ID=chief` runs the
oracle (a gRPC server at `KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT`) and writes the table and
`best.json` when the search ends; every other process (`KERASTUNER_TUNER_ID=worker1`, ...) asks
it for trials and runs them. All of them run the same command (`make tune-chief`, `make
tune-worker`). Each trial runs on the GPU(s) its process sees: MirroredStrategy over several.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import sys
import time
import traceback

import keras
import numpy as np
import tensorflow as tf

from recipes import get_recipe, runner, training
from recipes.config import (
    ConfigError,
    apply_overrides,
    field_types,
    parse_words,
    to_dict,
    write_json,
)
from zoo.errors import missing_extra

try:
    import keras_tuner as kt
except ModuleNotFoundError as e:  # an extra: pip install 'attention-zoo[tune]'
    raise missing_extra(e) from None

TUNERS = ("hyperband", "bayesian", "random")


@dataclasses.dataclass(frozen=True)
class TuneSettings:
    """How to search (the tuning-only `key=value` words); see the module docstring."""

    tuner: str = "hyperband"
    max_trials: int = 20
    executions: int = 1
    objective: str = ""  # empty: the recipe's own objective
    factor: int = 3
    fresh: bool = False
    # Searched fields held at the base config's value (those set on the command line).
    fixed: tuple[str, ...] = ()

    def validate(self):
        if self.tuner not in TUNERS:
            raise ConfigError(
                f"tuner={self.tuner!r} is not a known search; choose one of: {', '.join(TUNERS)}"
            )
        if self.max_trials < 0:
            raise ConfigError(f"max_trials={self.max_trials}: must be 0 (no cap) or more")
        if self.max_trials == 0 and self.tuner != "hyperband":
            raise ConfigError(f"tuner={self.tuner} needs a budget: give max_trials=N (N >= 1)")
        if self.executions < 1:
            raise ConfigError(f"executions={self.executions}: must be at least 1")
        if self.factor < 2:
            raise ConfigError(f"factor={self.factor}: Hyperband's factor must be at least 2")


def split_tuning_words(words: list[str]) -> tuple[dict, list[str]]:
    """`key=value` words -> (TuneSettings keyword arguments, the words meant for the config).

    The config words' keys become `fixed` (a searched field set on the command line is not
    searched); `hp=FILE` only sets the base config.
    """
    tuning_keys = set(field_types(TuneSettings)) - {"fixed"}
    pairs = parse_words(words)
    settings = apply_overrides(TuneSettings(), {k: v for k, v in pairs.items() if k in tuning_keys})
    rest = [w for w in words if w.split("=", 1)[0].strip() not in tuning_keys]
    fixed = tuple(sorted(k for k in pairs if k not in tuning_keys and k != "hp"))
    return dataclasses.asdict(dataclasses.replace(settings, fixed=fixed)), rest


# -- a trial ------------------------------------------------------------------------------------


def make_trials(recipe) -> runner.Trials:
    """What trains and scores a trial of `recipe`: the shared runner's (tests swap in their own)."""
    return runner.Trials(recipe)


# -- devices -----------------------------------------------------------------------------------


def device_report(strategy) -> str:
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    where = f"GPUs visible: {', '.join(gpus)}" if gpus else "no GPU visible, running on CPU"
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    name = type(strategy).__name__ if strategy is not None else "default strategy"
    return f"{where}; {name} with {replicas} replica(s)"


def _strategy():
    """MirroredStrategy when several GPUs are visible (keras-tuner's `distribution_strategy`)."""
    strategy = training.choose_strategy()
    return None if strategy is tf.distribute.get_strategy() else strategy


# -- the tuner ---------------------------------------------------------------------------------


def _tuner_role() -> str:
    """"single", "chief" or "worker", from keras-tuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    if "KERASTUNER_TUNER_ID" not in os.environ or "KERASTUNER_ORACLE_PORT" not in os.environ:
        raise ConfigError(
            "distributed tuning needs KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and "
            "KERASTUNER_ORACLE_PORT on every process (`make tune-chief`, `make tune-worker` set them)"
        )
    role = "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"
    address = os.environ["KERASTUNER_ORACLE_IP"].strip("[]")
    if role == "chief" and address in ("", "0.0.0.0", "::") and not os.environ.get(
        "ZOO_ORACLE_ALL_INTERFACES"
    ):
        raise ConfigError(
            f"KERASTUNER_ORACLE_IP={address or '(empty)'} would serve the oracle, which has no "
            "authentication, on every network interface; give the chief's address on a private "
            "network that the workers reach (e.g. 10.0.0.5), or 127.0.0.1 on one machine "
            "(set ZOO_ORACLE_ALL_INTERFACES=1 only behind a firewall)"
        )
    return role


class RecipeTuner(kt.Tuner):
    """Runs each trial as `trials.run(search_space(hp, base_config), ...)`; no Keras fit of its
    own. Hyperband's continued trials start from the weights of the trial they continue."""

    def __init__(self, oracle, recipe, base_config, trials, settings, **kwargs):
        self.recipe = recipe
        self.base_config = base_config
        self.trials = trials
        self.settings = settings
        self.ran = []  # trial ids this process ran
        super().__init__(
            oracle,
            hypermodel=lambda hp: recipe.search_space(hp, base_config),
            executions_per_trial=settings.executions,
            **kwargs,
        )

    def trial_config(self, hp):
        config = self.recipe.search_space(hp, self.base_config)
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate()
        return config

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        config = self.trial_config(hp)
        mixed_precision = getattr(config, "mixed_precision", False)  # captioning has none
        if mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            keras.mixed_precision.set_global_policy("float32")
        epochs = int(hp.values.get("tuner/epochs", config.epochs))
        initial_epoch = int(hp.values.get("tuner/initial_epoch", 0))
        previous = hp.values.get("tuner/trial_id")
        weights_in = None
        if previous:
            path = self._weights_path(previous)
            if os.path.exists(path):
                weights_in = path
            else:  # another machine trained it: start over rather than fail
                initial_epoch = 0
        searched = {k: v for k, v in hp.values.items()
                    if not k.startswith("tuner/") and k not in self.settings.fixed}
        tag = f"trial {trial.trial_id} [{self.tuner_id}]"

        def log(message):
            print(f"{tag} {message}", flush=True)

        log(" ".join(f"{k}={v}" for k, v in searched.items())
            + f"; epochs {initial_epoch}->{epochs}"
            + (f" from trial {previous}" if weights_in else ""))
        log(f"{device_report(self.distribution_strategy)}; mixed precision "
            f"{'on' if mixed_precision else 'off'}")
        t0 = time.time()
        for done in getattr(self.oracle, "trials", {}).values():  # single process or chief
            if (done.status == "COMPLETED" and done.trial_id != trial.trial_id
                    and done.hyperparameters.values == hp.values):
                # The Bayesian oracle can propose a point it has tried: same config, same result.
                log(f"same values as trial {done.trial_id}: reusing its result")
                self.ran.append(trial.trial_id)
                reused = {name: done.metrics.get_last_value(name) for name in done.metrics.metrics}
                return {**reused, "seconds": round(time.time() - t0, 1)}
        scores = []
        try:
            for execution in range(self.executions_per_trial):
                keras.backend.clear_session()
                scores.append(self.trials.run(
                    config, epochs, initial_epoch, weights_in,
                    self._weights_path(trial.trial_id) if self.settings.tuner == "hyperband" else None,
                    strategy=self.distribution_strategy, seed=config.seed + execution, log=log,
                ))
        except Exception:
            log("failed:\n" + traceback.format_exc())
            raise
        result = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        result["seconds"] = round(time.time() - t0, 1)
        log("done: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
        self.ran.append(trial.trial_id)
        return result

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if not self._is_worker():
            write_results(self, final=False)

    def save(self):
        """keras-tuner's save, each record written durably (see `DurableOracle`)."""
        if not self._is_worker():
            self.oracle.save()
        training.write_text_durable(self._get_tuner_fname(), json.dumps(self.get_state()))

    def reload(self):
        if not self._is_worker():
            self.oracle.reload()
        # The tuner's own record holds nothing to resume (keras-tuner's is `{}`): a cut one
        # is rewritten at the next save.
        state = _read_json(self._get_tuner_fname())
        self.set_state(state if isinstance(state, dict) else {})

    def _weights_path(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), "weights.weights.h5")


# -- records that survive a kill ---------------------------------------------------------------


def _read_json(path):
    """A JSON file's content; None if it is missing or not whole JSON (cut by a kill)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class DurableOracle:
    """Put first among a keras-tuner oracle's bases: its records survive a kill.

    Each save writes `oracle.json` or a `trial_*/trial.json` to a temporary name, fsyncs it and
    renames it over the record (`remove_search_leftovers` clears the temporary files a kill
    leaves). `reload` (resuming) copes with records cut before this was so (by an older version, or a full disk), with a
    warning line each:

    - a cut `trial.json` of a trial the search had not recorded yet: the search creates it again;
    - a cut `trial.json` of a recorded trial: its values and results are lost. The newest one
      (the trial running when the kill came) is dropped and a new trial takes its number; an
      older one (several running at once across machines), or any under Hyperband, whose
      brackets name it, is kept as a FAILED trial;
    - a cut `oracle.json`: rebuilt from the trials (their order, statuses, values, and for
      Hyperband the brackets their values name); unfinished trials run again.
    """

    def save(self):
        training.write_text_durable(self._get_oracle_fname(), json.dumps(self.get_state()),
                                    kill_at=("oracle_unrenamed", len(self.trials)))

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        # Test-only kill points (training's ZOO_TEST_KILL_AT): `trial_running_unrenamed:1`
        # cuts trial 1's first record, `trial_completed_unrenamed:0` trial 0's last.
        training.write_text_durable(path, json.dumps(trial.get_state()), kill_at=(
            f"trial_{str(trial.status).lower()}_unrenamed", int(trial.trial_id)))

    def reload(self):
        project = self._project_dir
        cut = []
        for path in sorted(glob.glob(os.path.join(project, "trial_*", "trial.json"))):
            record = _read_json(path)
            try:
                trial = kt.engine.trial.Trial.from_state(record)
            except (KeyError, TypeError, ValueError):
                cut.append((os.path.basename(os.path.dirname(path))[len("trial_"):], path))
                continue
            self.trials[trial.trial_id] = trial
        state = _read_json(self._get_oracle_fname())
        rebuilt = state is None or "start_order" not in state
        if rebuilt:
            state = self._rebuilt_state()
            unfinished = len(state["retry_queue"])
            print(f"warning: {self._get_oracle_fname()} was cut short (a kill while writing it): "
                  f"rebuilt the search's record from its {len(self.trials)} trial(s); "
                  f"{unfinished} unfinished trial(s) run again", flush=True)
        known = set(state["start_order"])
        for trial_id in [t for t in self.trials if t not in known]:
            del self.trials[trial_id]  # written just before oracle.json: created again
        for trial_id, path in cut:
            self._drop_cut_trial(trial_id, path, state, known)
        try:
            self.set_state(state)
        except KeyError as e:
            raise training.RunError(f"{self._get_oracle_fname()} does not match the trials in "
                               f"{project} ({e}); rerun with fresh=true to start over") from None
        if rebuilt:
            for trial in self.trials.values():
                if trial.hyperparameters.values:
                    self._record_values(trial)
            self.save()
        # As keras-tuner's own reload: trials that were running are run again.
        for trial in self.ongoing_trials.values():
            self._retry_queue.append(trial.trial_id)
        self.ongoing_trials = {}

    def _drop_cut_trial(self, trial_id, path, state, known):
        if trial_id not in known:
            os.remove(path)
            print(f"warning: {path} was cut short before the search recorded trial {trial_id} "
                  "(a kill while writing it): the trial is created again", flush=True)
            return
        newest = max(known | set(self.trials), key=int) == trial_id
        state["ongoing_trials"] = {k: v for k, v in state["ongoing_trials"].items()
                                   if v != trial_id}
        state["retry_queue"] = [t for t in state["retry_queue"] if t != trial_id]
        if newest and not isinstance(self, kt.oracles.HyperbandOracle):
            state["start_order"] = [t for t in state["start_order"] if t != trial_id]
            state["end_order"] = [t for t in state["end_order"] if t != trial_id]
            state["run_times"].pop(trial_id, None)
            value_hash = state["id_to_hash"].pop(trial_id, None)
            state["tried_so_far"] = [h for h in state["tried_so_far"] if h != value_hash]
            known.discard(trial_id)
            os.remove(path)
            print(f"warning: {path} was cut short (a kill while writing it): trial {trial_id}'s "
                  f"values and results are lost; a new trial {trial_id} runs in its place and "
                  "the search goes on with the others", flush=True)
            return
        hyperparameters = self.hyperparameters.copy()
        hyperparameters.values = {}
        trial = kt.engine.trial.Trial(hyperparameters, trial_id=trial_id, status="FAILED",
                                      message="its record was cut short by a kill")
        self.trials[trial_id] = trial
        if trial_id not in state["end_order"]:
            state["end_order"].append(trial_id)
        self._save_trial(trial)
        print(f"warning: {path} was cut short (a kill while writing it): trial {trial_id}'s "
              "values and results are lost; it is counted as failed and the search goes on "
              "with the others", flush=True)

    def _rebuilt_state(self):
        """The oracle's state as its trials tell it (`oracle.json` was cut)."""
        trials = sorted(self.trials.values(), key=lambda t: int(t.trial_id))
        for trial in trials:
            self.update_space(trial.hyperparameters)
        state = self.get_state()
        ids = [t.trial_id for t in trials]
        ended = [t.trial_id for t in trials if t.status in ("COMPLETED", "FAILED")]
        state.update(
            ongoing_trials={}, start_order=ids, end_order=ended,
            run_times={t: 1 for t in ended},
            retry_queue=[t for t in reversed(ids) if t not in ended],  # popped from the end
            # Past the draws the trials took (a repeated draw is skipped anyway).
            seed_state=state["seed_state"] + sum(len(t.hyperparameters.values) for t in trials),
            tried_so_far=[], id_to_hash={},
        )
        if isinstance(self, kt.oracles.HyperbandOracle) and trials:
            state.update(self._rebuilt_brackets(trials))
        return state

    def _rebuilt_brackets(self, trials):
        """Hyperband's brackets from the `tuner/bracket`, `tuner/round` and `tuner/trial_id`
        values its trials carry, in the order they were created."""
        brackets, iteration, current = [], 0, None
        for trial in trials:
            values = trial.hyperparameters.values
            number, round_num = values.get("tuner/bracket"), values.get("tuner/round")
            if number is None or round_num is None:
                continue
            if round_num == 0:
                bracket = next((b for b in reversed(brackets) if b["bracket_num"] == number
                                and len(b["rounds"][0]) < self._get_size(number, 0)), None)
                if bracket is None:
                    if current is not None and number >= current:
                        iteration += 1  # the bracket numbers wrapped round: a new sweep
                    current = number
                    bracket = {"bracket_num": number,
                               "rounds": [[] for _ in range(self._get_num_rounds(number))]}
                    brackets.append(bracket)
                bracket["rounds"][0].append({"past_id": None, "id": trial.trial_id})
                continue
            past = values.get("tuner/trial_id")
            for bracket in reversed(brackets):
                if (bracket["bracket_num"] == number
                        and any(i["id"] == past for i in bracket["rounds"][round_num - 1])):
                    bracket["rounds"][round_num].append({"past_id": past, "id": trial.trial_id})
                    break
        if current is None:
            return {}
        return {"brackets": brackets, "current_bracket": current,
                "current_iteration": iteration}


def remove_search_leftovers(project: str) -> None:
    """Removes the temporary files killed writes left in a search's folders."""
    removed = []
    for folder in [project, *sorted(glob.glob(os.path.join(project, "trial_*")))]:
        if os.path.isdir(folder):
            removed += [os.path.join(os.path.basename(folder), name)
                        for name in training.remove_leftovers(folder)]
    if removed:
        print(f"removed {len(removed)} temporary file(s) a stopped search left in {project}: "
              f"{', '.join(removed)}")


class RandomOracle(DurableOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(DurableOracle, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(DurableOracle, kt.oracles.HyperbandOracle):
    pass


def _oracle(settings, objective, config, searched: int):
    # keras-tuner treats seed 0 as "random": offset it so the search is reproducible.
    seed = 1000 + config.seed
    if settings.tuner == "random":
        return RandomOracle(objective, max_trials=settings.max_trials, seed=seed)
    if settings.tuner == "bayesian":
        # keras-tuner samples 3 random points per dimension before its Gaussian process takes
        # over: on a small budget that is all of it, so use at most half the budget.
        initial = min(3 * max(1, searched), max(3, settings.max_trials // 2))
        return BayesianOracle(
            objective, max_trials=settings.max_trials, num_initial_points=initial, seed=seed
        )
    oracle = HyperbandOracle(
        objective, max_epochs=config.epochs, factor=settings.factor, seed=seed
    )
    oracle.max_trials = settings.max_trials or None  # a cap on top of the schedule
    return oracle


def tune_id(config, settings: TuneSettings, objective: str) -> str:
    """`tune-<tuner>-<hash>`: the same base config and settings give the same folder."""
    items = {k: v for k, v in to_dict(config).items() if k != "run_id"}
    items["tuning"] = {
        "tuner": settings.tuner, "executions": settings.executions, "objective": objective,
        "fixed": sorted(settings.fixed),
        **({"factor": settings.factor} if settings.tuner == "hyperband" else {}),
    }
    digest = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:8]
    return f"tune-{settings.tuner}-{digest}"


def tune(recipe, config, **settings) -> str:
    """Runs (or resumes) a search around `config`; returns the tune folder.

    `recipe`: a `recipes.base.Recipe` or its name. `settings` are `TuneSettings` fields
    (`tuner="random", max_trials=8, ...`).
    """
    settings = apply_overrides(TuneSettings(), settings)
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    recipe_name = recipe.name
    trials = make_trials(recipe)
    objective = settings.objective or next(iter(trials.objectives))
    if objective not in trials.objectives:
        raise ConfigError(
            f"objective={objective!r} is not reported by {recipe_name}; choose one of: "
            f"{', '.join(trials.objectives)}"
        )
    fields = field_types(type(config))
    probe = kt.HyperParameters()
    recipe.search_space(probe, config)
    space = [p.name for p in probe.space]
    unknown = [n for n in space if n not in fields]
    if unknown:
        raise ConfigError(
            f"{recipe_name}.search_space names {', '.join(unknown)}, which are not "
            f"{type(config).__name__} fields; name each hyperparameter after the field it sets"
        )
    # Only searched fields can be held fixed; other command-line words just set the base config.
    settings = dataclasses.replace(settings, fixed=tuple(n for n in space if n in settings.fixed))
    searched = [n for n in space if n not in settings.fixed]
    role = _tuner_role()
    out_dir = training.run_dir_for(recipe_name, tune_id(config, settings, objective))
    if settings.fresh and role != "worker" and os.path.isdir(out_dir):
        print(f"fresh=true: deleting {out_dir}")
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if role != "worker":
        remove_search_leftovers(os.path.join(out_dir, "search"))

    fixed = kt.HyperParameters()
    for name in settings.fixed:
        fixed.Fixed(name, getattr(config, name))
    oracle = _oracle(settings, kt.Objective(objective, trials.objectives[objective]), config,
                     len(searched))
    oracle.hyperparameters = fixed
    strategy = _strategy()
    tuner = RecipeTuner(
        oracle, recipe, config, trials, settings,
        directory=out_dir, project_name="search", overwrite=False,
        distribution_strategy=strategy,
    )
    if role != "worker":
        done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
        held = ", ".join(f"{n}={getattr(config, n)}" for n in settings.fixed)
        print(f"{'resuming' if done else 'starting'} {out_dir}: {settings.tuner} search of "
              f"{objective} over {', '.join(searched)}"
              + (f"; fixed {held}" if held else "")
              + (f"; {done} trial(s) already completed" if done else ""))
    print(f"[{tuner.tuner_id}] {device_report(strategy)}")
    if role == "chief":
        print(f"chief: serving the oracle on {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']}; workers run the trials")
    t0 = time.time()
    tuner.search()
    if role == "worker":
        print(f"[{tuner.tuner_id}] finished; ran trial(s) {', '.join(tuner.ran) or 'none'}; "
              "the chief writes the table and best.json")
        return out_dir
    write_results(tuner, final=True, wall_seconds=time.time() - t0)
    return out_dir


# -- results -----------------------------------------------------------------------------------


def _trial_rows(tuner):
    fields = field_types(type(tuner.base_config))
    rows = []
    for trial_id in sorted(tuner.oracle.trials, key=int):
        trial = tuner.oracle.trials[trial_id]
        values = trial.hyperparameters.values
        metrics = {name: trial.metrics.get_last_value(name)
                   for name in trial.metrics.metrics}
        row = {
            "trial_id": trial_id,
            "status": trial.status,
            "hyperparameters": {k: v for k, v in values.items() if k in fields},
            "metrics": {k: v for k, v in metrics.items() if k != "seconds"},
            "seconds": metrics.get("seconds"),
        }
        if "tuner/epochs" in values:
            row["epochs"] = values["tuner/epochs"]
            row["continues"] = values.get("tuner/trial_id")
        rows.append(row)
    return rows


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_markdown(rows, objective, searched, best_id) -> str:
    hyperband = any("epochs" in r for r in rows)
    metric_names = [objective] + sorted({m for r in rows for m in r["metrics"]} - {objective})
    head = ["trial", "status", *searched, *(["epochs"] if hyperband else []), *metric_names,
            "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["trial_id"] + (" *" if r["trial_id"] == best_id else ""), r["status"]]
        cells += [_fmt(r["hyperparameters"].get(n)) for n in searched]
        cells += [_fmt(r.get("epochs"))] if hyperband else []
        cells += [_fmt(r["metrics"].get(m)) for m in metric_names]
        cells.append(_fmt(r["seconds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(tuner, final: bool, wall_seconds: float | None = None) -> dict:
    """trials.md, trials.json and best.json in the tune folder (the chief's or single process's)."""
    out_dir = os.path.dirname(tuner.project_dir)
    objective = tuner.oracle.objective.name
    rows = _trial_rows(tuner)
    searched = [p.name for p in tuner.oracle.get_space().space
                if p.name not in tuner.settings.fixed and not p.name.startswith("tuner/")]
    completed = [r for r in rows if r["status"] == "COMPLETED"]
    best_trial = tuner.oracle.get_best_trials(1)
    best_trial = best_trial[0] if best_trial and best_trial[0].status == "COMPLETED" else None
    best = None
    if best_trial is not None:
        row = next(r for r in rows if r["trial_id"] == best_trial.trial_id)
        best = {
            "hyperparameters": row["hyperparameters"],
            objective: best_trial.score,
            "metrics": row["metrics"],
            "trial_id": best_trial.trial_id,
            "recipe": tuner.recipe.name,
            "tune_dir": out_dir,
        }
        write_json(os.path.join(out_dir, "best.json"), best)
    table = trials_markdown(rows, objective, searched, best and best["trial_id"])
    with open(os.path.join(out_dir, "trials.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    summary = {
        "recipe": tuner.recipe.name,
        "objective": {"name": objective, "direction": tuner.oracle.objective.direction},
        "settings": dataclasses.asdict(tuner.settings),
        "base_config": to_dict(tuner.base_config),
        "trials": rows,
        "completed": len(completed),
        "trial_seconds_total": round(sum(r["seconds"] or 0 for r in rows), 1),
        "best": best,
    }
    write_json(os.path.join(out_dir, "trials.json"), summary)
    if final:
        print()
        print(table)
        took = f" ({wall_seconds:.0f}s in this process)" if wall_seconds is not None else ""
        print(f"\n{len(completed)} completed trial(s){took}; table in {out_dir}/trials.md")
        if best is not None:
            values = " ".join(f"{k}={v}" for k, v in best["hyperparameters"].items()
                              if k in searched)
            print(f"best: trial {best['trial_id']}, {objective}={best[objective]:.4g}: {values}")
            print(f"wrote {out_dir}/best.json; train with it: python -m recipes train "
                  f"{tuner.recipe.name} hp={out_dir}/best.json")
        sys.stdout.flush()
    return summary
