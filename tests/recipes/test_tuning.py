"""Tuning with keras-tuner: settings, the search table and best.json, resume, fresh, Hyperband's
continued trials, MirroredStrategy, and a chief with two workers on loopback."""

import json
import math
import os
import re
import socket
import subprocess
import sys
import time

import keras_tuner as kt
import pytest

from recipes import config as recipes_config
from recipes import nmt, tuning
from recipes.config import ConfigError, apply_overrides, field_types, from_words
from zoo.layers import ATTENTION_TYPES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Seconds per trial: tiny data; units, embedding_dim and beam_size set here are held fixed, so
# the search runs over attention, dropout and learning_rate only.
TINY = dict(
    train_size=200,
    validation_size=30,
    test_size=10,
    max_digits=3,
    max_items=3,
    units=16,
    embedding_dim=8,
    batch_size=32,
    epochs=1,
    beam_size=1,
)
TINY_WORDS = [f"{k}={v}" for k, v in TINY.items()]
TRIAL_DONE = re.compile(r"^trial (\d+) \[(\S+)\] done: val_bleu=", re.M)


@pytest.fixture
def single_process(monkeypatch, tmp_path):
    """One process, no chief; runs under this test's own folder."""

    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(recipes_config, "RUNS_ROOT", str(tmp_path))
    return tmp_path


def _tiny_tune(*extra_words, **settings):
    split, words = tuning.split_tuning_words([*TINY_WORDS, *extra_words])
    return tuning.tune("nmt", from_words(nmt.NmtConfig, words), **{**split, **settings})


def _trials(out_dir):
    with open(os.path.join(out_dir, "trials.json"), encoding="utf-8") as f:
        return json.load(f)


# -- settings ----------------------------------------------------------------------------------


def test_split_tuning_words_types_settings_and_fixes_command_line_fields():
    settings, words = tuning.split_tuning_words(
        ["tuner=random", "max_trials=5", "fresh=true", "units=64", "epochs=2", "hp=best.json"]
    )
    assert words == ["units=64", "epochs=2", "hp=best.json"]
    assert settings["tuner"] == "random" and settings["max_trials"] == 5
    assert settings["fresh"] is True and settings["executions"] == 1
    assert settings["fixed"] == ("epochs", "units")
    with pytest.raises(ConfigError, match="max_trials='x': expected int"):
        tuning.split_tuning_words(["max_trials=x"])
    with pytest.raises(ConfigError, match="needs a budget"):
        tuning.split_tuning_words(["tuner=bayesian", "max_trials=0"])


def test_unknown_tuner_lists_the_valid_ones(capsys):
    from recipes.__main__ import main

    assert main(["tune", "nmt", "tuner=grid", "epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "tuner='grid' is not a known search; choose one of: hyperband, bayesian, random" in err
    assert "Traceback" not in err
    with pytest.raises(ConfigError, match="objective='bleu'.*choose one of: val_bleu, val_loss"):
        tuning.tune("nmt", nmt.NmtConfig(), tuner="random", objective="bleu")


def test_nmt_search_space_names_config_fields_and_covers_every_attention():
    hp = kt.HyperParameters()
    config = nmt.search_space(hp, nmt.NmtConfig())
    names = {p.name for p in hp.space}
    assert names <= set(field_types(nmt.NmtConfig))
    assert {"attention", "units", "embedding_dim", "dropout", "learning_rate", "beam_size"} <= names
    assert set(hp.space[[p.name for p in hp.space].index("attention")].values) == set(
        ATTENTION_TYPES
    )
    config.validate()


def test_tune_id_is_deterministic_and_ignores_the_budget():
    base = apply_overrides(nmt.NmtConfig(), TINY)
    a = tuning.TuneSettings(tuner="random", max_trials=2)
    assert tuning.tune_id(base, a, "val_bleu") == tuning.tune_id(
        apply_overrides(base, {"run_id": "x"}), tuning.TuneSettings(tuner="random", max_trials=9),
        "val_bleu",
    )
    assert tuning.tune_id(base, a, "val_bleu").startswith("tune-random-")
    others = [
        tuning.tune_id(base, tuning.TuneSettings(tuner="bayesian", max_trials=2), "val_bleu"),
        tuning.tune_id(base, a, "val_loss"),
        tuning.tune_id(apply_overrides(base, {"train_size": 300}), a, "val_bleu"),
        tuning.tune_id(base, tuning.TuneSettings(tuner="random", fixed=("units",)), "val_bleu"),
    ]
    assert len({tuning.tune_id(base, a, "val_bleu"), *others}) == 5


# -- the search mechanics, with a stand-in for training (milliseconds per trial) ---------------


class FakeTrials:
    """Scores a config without training: luong_general with the largest learning rate wins."""

    objectives = {"val_bleu": "max", "val_loss": "min"}

    def __init__(self, interrupt_at=None):
        self.calls = []
        self.interrupt_at = interrupt_at

    def run(self, config, epochs, initial_epoch=0, weights_in=None, weights_out=None,
            strategy=None, seed=0, log=print):
        self.calls.append((config.attention, config.dropout, config.learning_rate, weights_in))
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        if weights_out:
            open(weights_out, "w").close()
        bleu = (50.0 if config.attention == "luong_general" else 10.0) + 1000 * config.learning_rate
        return {"val_bleu": bleu - 10 * config.dropout, "val_loss": 100.0 / bleu}


@pytest.fixture
def fake(monkeypatch, single_process):
    runner = FakeTrials()
    monkeypatch.setattr(tuning, "make_trials", lambda recipe: runner)
    return runner


def _hps(out_dir):
    return [t["hyperparameters"] for t in _trials(out_dir)["trials"]]


def test_interrupted_search_resumes_without_rerunning_completed_trials(fake, capsys):
    fake.interrupt_at = 3
    with pytest.raises(KeyboardInterrupt):
        _tiny_tune(tuner="random", max_trials=4)
    interrupted = fake.calls[2]
    fake.interrupt_at, fake.calls = None, []
    out_dir = _tiny_tune(tuner="random", max_trials=4)
    out = capsys.readouterr().out
    assert "resuming" in out and "2 trial(s) already completed" in out
    # Trials 0 and 1 are not run again; the interrupted trial 2 is, with the same values.
    assert TRIAL_DONE.findall(out.split("resuming")[1]) == [("2", "tuner0"), ("3", "tuner0")]
    assert fake.calls[0] == interrupted and len(fake.calls) == 2
    assert [t["status"] for t in _trials(out_dir)["trials"]] == ["COMPLETED"] * 4


def test_fresh_starts_over(fake, capsys):
    out_dir = _tiny_tune(tuner="random", max_trials=2)
    first = _hps(out_dir)
    assert _tiny_tune(tuner="random", max_trials=2) == out_dir and len(fake.calls) == 2
    assert _tiny_tune(tuner="random", max_trials=2, fresh=True) == out_dir
    assert len(fake.calls) == 4 and _hps(out_dir) == first  # same seed, same trials, run again
    assert "fresh=true: deleting" in capsys.readouterr().out


def test_bayesian_search_and_a_minimised_objective(fake):
    out_dir = _tiny_tune(tuner="bayesian", max_trials=6)
    summary = _trials(out_dir)
    assert summary["completed"] == 6
    # The oracle may propose a point twice; it is scored once.
    assert len(fake.calls) == len({json.dumps(h, sort_keys=True) for h in _hps(out_dir)})
    best = json.load(open(os.path.join(out_dir, "best.json"), encoding="utf-8"))
    assert best["val_bleu"] == max(t["metrics"]["val_bleu"] for t in summary["trials"])

    out_dir = _tiny_tune(tuner="random", max_trials=3, objective="val_loss")
    summary = _trials(out_dir)
    assert summary["objective"] == {"name": "val_loss", "direction": "min"}
    best = json.load(open(os.path.join(out_dir, "best.json"), encoding="utf-8"))
    assert best["val_loss"] == min(t["metrics"]["val_loss"] for t in summary["trials"])


def test_hyperband_schedule_hands_over_weights(fake):
    out_dir = _tiny_tune("epochs=3", tuner="hyperband", max_trials=0)
    rows = _trials(out_dir)["trials"]
    assert [r["epochs"] for r in rows] == [1, 1, 1, 3, 3, 3]
    continued = rows[3]["continues"]
    assert continued == max(rows[:3], key=lambda r: r["metrics"]["val_bleu"])["trial_id"]
    assert fake.calls[3][3].endswith(f"trial_{continued}/weights.weights.h5")
    assert [c[3] for c in fake.calls[4:]] == [None, None]


# -- searching ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_search_writes_table_and_best_json_and_resumes(single_process, capsys):
    out_dir = _tiny_tune(tuner="random", max_trials=1)
    first = _trials(out_dir)
    assert [t["status"] for t in first["trials"]] == ["COMPLETED"]
    assert TRIAL_DONE.findall(capsys.readouterr().out) == [("0", "tuner0")]

    # The same command with a larger budget resumes: trial 0 is not run again.
    assert _tiny_tune(tuner="random", max_trials=2) == out_dir
    out = capsys.readouterr().out
    assert "1 trial(s) already completed" in out
    assert TRIAL_DONE.findall(out) == [("1", "tuner0")]
    summary = _trials(out_dir)
    assert [t["trial_id"] for t in summary["trials"]] == ["0", "1"]
    assert summary["trials"][0] == first["trials"][0]
    for trial in summary["trials"]:
        assert set(trial["hyperparameters"]) >= {"attention", "dropout", "learning_rate"}
        assert trial["hyperparameters"]["units"] == 16  # held: it was on the command line
        assert 0.0 <= trial["metrics"]["val_bleu"] <= 100.0 and trial["seconds"] > 0
    table = open(os.path.join(out_dir, "trials.md"), encoding="utf-8").read()
    assert table.startswith("| trial | status | attention | dropout | learning_rate | val_bleu |")
    assert len(table.strip().splitlines()) == 4 and " * |" in table and table in out

    best = json.load(open(os.path.join(out_dir, "best.json"), encoding="utf-8"))
    scores = {t["trial_id"]: t["metrics"]["val_bleu"] for t in summary["trials"]}
    assert best["val_bleu"] == max(scores.values()) == scores[best["trial_id"]]
    config = from_words(nmt.NmtConfig, [f"hp={out_dir}/best.json", "epochs=3"])
    for key, value in best["hyperparameters"].items():
        assert getattr(config, key) == value
    assert config.epochs == 3

    # Everything done: re-running only prints the table again.
    _tiny_tune(tuner="random", max_trials=2)
    assert TRIAL_DONE.findall(capsys.readouterr().out) == []


@pytest.mark.slow
def test_hyperband_continues_the_best_trial_from_its_weights(single_process, capsys):
    out_dir = _tiny_tune("epochs=2", tuner="hyperband", factor=2, max_trials=3)
    out = capsys.readouterr().out
    rows = _trials(out_dir)["trials"]
    assert [r["epochs"] for r in rows] == [1, 1, 2]
    continued = rows[2]["continues"]
    assert continued in ("0", "1")
    assert f"epochs 1->2 from trial {continued}" in out
    best_first = max(rows[:2], key=lambda r: r["metrics"]["val_bleu"])
    assert continued == best_first["trial_id"]
    assert "| epochs |" in open(os.path.join(out_dir, "trials.md"), encoding="utf-8").read()


# -- devices and machines ----------------------------------------------------------------------


def _env(root, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    return {**env, "ZOO_RUNS": str(root), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
            **extra}


MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from recipes import nmt, training, tuning
from recipes.config import from_words
# Stands in for two GPUs: the same strategy choose_strategy() makes when it sees several.
training.choose_strategy = lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
settings, words = tuning.split_tuning_words(%r)
tuning.tune("nmt", from_words(nmt.NmtConfig, words), **settings)
"""


@pytest.mark.slow
def test_mirrored_strategy_is_handed_to_the_tuner(tmp_path):
    script = MIRRORED % (TINY_WORDS + ["tuner=random", "max_trials=1"])
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MirroredStrategy with 2 replica(s)" in proc.stdout
    assert re.search(r"variables on \S+CPU:0, \S+CPU:1", proc.stdout)
    (tune_dir,) = (tmp_path / "nmt").glob("tune-*")
    (trial,) = _trials(tune_dir)["trials"]
    assert trial["status"] == "COMPLETED" and math.isfinite(trial["metrics"]["val_bleu"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_share_the_trials_on_loopback(tmp_path):
    cmd = [sys.executable, "-m", "recipes", "tune", "nmt", "tuner=random", "max_trials=4",
           *TINY_WORDS]
    port = str(_free_port())
    procs, logs = {}, {}
    try:
        for name in ("chief", "worker1", "worker2"):
            logs[name] = tmp_path / f"{name}.log"
            env = _env(tmp_path / "runs", KERASTUNER_TUNER_ID=name,
                       KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port)
            with open(logs[name], "w") as log:
                procs[name] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                               stderr=subprocess.STDOUT)
        deadline = time.time() + 540
        for proc in procs.values():
            proc.wait(timeout=max(1, deadline - time.time()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = {name: path.read_text() for name, path in logs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{out[name][-4000:]}"
    ran = {name: [t for t, tuner in TRIAL_DONE.findall(out[name]) if tuner == name]
           for name in ("worker1", "worker2")}
    assert ran["worker1"] and ran["worker2"], ran  # both workers got work
    assert sorted(ran["worker1"] + ran["worker2"]) == ["0", "1", "2", "3"], ran  # none twice
    assert not TRIAL_DONE.findall(out["chief"])  # the chief only serves the oracle

    # The best result is reported once, by the chief.
    wrote = re.compile(r"^wrote \S+/best.json", re.M)
    assert [len(wrote.findall(text)) for text in out.values()] == [1, 0, 0]
    (tune_dir,) = (tmp_path / "runs" / "nmt").glob("tune-*")
    summary = _trials(tune_dir)
    assert [t["status"] for t in summary["trials"]] == ["COMPLETED"] * 4
    best = json.load(open(tune_dir / "best.json", encoding="utf-8"))
    assert best["val_bleu"] == max(t["metrics"]["val_bleu"] for t in summary["trials"])
