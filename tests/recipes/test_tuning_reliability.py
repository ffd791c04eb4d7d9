"""kill -9 during `python -m recipes tune` (what `make tune` runs): the same command resumes the
search, completed trials keep their results and are not re-run."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from recipes import config as recipes_config
from tests.recipes.test_tuning import REPO, TINY_WORDS, TRIAL_DONE

# "trial 1 [tuner0] attention=luong_dot dropout=0.1 ...; epochs 0->1": the trial's values.
TRIAL_START = re.compile(r"^trial (\d+) \[\S+\] (\S+=.*; epochs .*)$", re.M)


def _tune_cmd():
    return [sys.executable, "-m", "recipes", "tune", "nmt", "tuner=random", "max_trials=2",
            *TINY_WORDS]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    return {**env, "ZOO_RUNS": str(tmp_path / "runs"), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _trials(tune_dir):
    with open(tune_dir / "trials.json", encoding="utf-8") as f:
        return {t["trial_id"]: t for t in json.load(f)["trials"]}


@pytest.mark.slow
def test_kill_during_tune_then_resume(tmp_path):
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_tune_cmd(), cwd=REPO, env=_env(tmp_path), stdout=out,
                                stderr=subprocess.STDOUT)
    # Kill once trial 0 is done and trial 1 has started: mid-trial, after a completed one.
    deadline = time.time() + 400
    try:
        while proc.poll() is None and time.time() < deadline:
            text = log.read_text()
            if TRIAL_DONE.search(text) and "1" in dict(TRIAL_START.findall(text)):
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"tune ended before trial 1 started:\n{log.read_text()[-3000:]}"
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    killed = log.read_text()
    assert TRIAL_DONE.findall(killed) == [("0", "tuner0")], killed[-3000:]
    started = dict(TRIAL_START.findall(killed))
    (tune_dir,) = (tmp_path / "runs" / "nmt").glob("tune-random-*")
    before = _trials(tune_dir)  # still readable after the kill
    assert before["0"]["status"] == "COMPLETED"
    assert all(t["status"] != "COMPLETED" for k, t in before.items() if k != "0")

    # The same command resumes: trial 0 is not re-run, the interrupted trial 1 is, with the
    # same values, and the search completes its budget of two.
    done = subprocess.run(_tune_cmd(), cwd=REPO, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "resuming" in done.stdout and "1 trial(s) already completed" in done.stdout
    assert TRIAL_DONE.findall(done.stdout) == [("1", "tuner0")]
    assert dict(TRIAL_START.findall(done.stdout))["1"] == started["1"]
    after = _trials(tune_dir)
    assert sorted(after) == ["0", "1"]
    assert all(t["status"] == "COMPLETED" for t in after.values())
    assert after["0"] == before["0"]  # same hyperparameters, same score, same seconds
    best = json.loads((tune_dir / "best.json").read_text())
    assert best["val_bleu"] == max(t["metrics"]["val_bleu"] for t in after.values())


# -- records cut by a kill (what keras-tuner's in-place writes left), with the stand-in runner --

from tests.recipes.test_tuning import FakeTrials, _tiny_tune  # noqa: E402
from tests.recipes.test_tuning import _trials as _summary  # noqa: E402


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Searches in this process under `tmp_path`, trials scored by the stand-in runner."""
    from recipes import tuning

    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(recipes_config, "RUNS_ROOT", str(tmp_path))
    runner = FakeTrials()
    monkeypatch.setattr(tuning, "make_trials", lambda recipe: runner)
    return runner


def _cut(path):
    """What a kill in the middle of keras-tuner's in-place write leaves: the first half."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _search(out_dir):
    return os.path.join(out_dir, "search")


def _rows(out_dir):
    return {t["trial_id"]: t for t in _summary(out_dir)["trials"]}


def test_cut_trial_record_of_the_running_trial_is_dropped_and_run_again(fake, capsys):
    out_dir = _tiny_tune(tuner="random", max_trials=2)
    before = _rows(out_dir)
    _cut(os.path.join(_search(out_dir), "trial_1", "trial.json"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = os.path.join(_search(out_dir), f"oracle.json.tmp-{dead.pid}")
    open(leftover, "w").write('{"ongoing')
    calls = len(fake.calls)
    capsys.readouterr()
    assert _tiny_tune(tuner="random", max_trials=2) == out_dir
    out = capsys.readouterr().out
    assert re.search(r"^warning: \S+trial_1/trial.json was cut short .*trial 1's values and "
                     r"results are lost; a new trial 1 runs in its place", out, re.M)
    assert TRIAL_DONE.findall(out) == [("1", "tuner0")] and len(fake.calls) == calls + 1
    after = _rows(out_dir)
    assert after["0"] == before["0"] and after["1"]["status"] == "COMPLETED"
    assert not os.path.exists(leftover)
    json.load(open(os.path.join(_search(out_dir), "trial_1", "trial.json")))  # whole again


def test_cut_trial_record_the_search_had_not_recorded_is_created_again(fake, capsys):
    out_dir = _tiny_tune(tuner="random", max_trials=2)
    # Trial 2's first record, cut before oracle.json listed it (keras-tuner writes it first).
    os.makedirs(os.path.join(_search(out_dir), "trial_2"))
    with open(os.path.join(_search(out_dir), "trial_2", "trial.json"), "w") as f:
        f.write('{"trial_id": "2", "hyperparameters": {"spa')
    capsys.readouterr()
    _tiny_tune(tuner="random", max_trials=3)
    out = capsys.readouterr().out
    assert "trial_2/trial.json was cut short before the search recorded trial 2" in out
    assert TRIAL_DONE.findall(out) == [("2", "tuner0")]
    assert [t["status"] for t in _rows(out_dir).values()] == ["COMPLETED"] * 3


def test_cut_oracle_record_is_rebuilt_from_the_trials(fake, capsys):
    out_dir = _tiny_tune(tuner="random", max_trials=2)
    before = _rows(out_dir)
    _cut(os.path.join(_search(out_dir), "oracle.json"))
    capsys.readouterr()
    _tiny_tune(tuner="random", max_trials=3)
    out = capsys.readouterr().out
    assert re.search(r"^warning: \S+oracle.json was cut short .*rebuilt the search's record from "
                     r"its 2 trial\(s\); 0 unfinished", out, re.M)
    assert "2 trial(s) already completed" in out and TRIAL_DONE.findall(out) == [("2", "tuner0")]
    after = _rows(out_dir)
    assert after["0"] == before["0"] and after["1"] == before["1"]
    assert after["2"]["hyperparameters"] not in (before["0"]["hyperparameters"],
                                                  before["1"]["hyperparameters"])


def test_cut_hyperband_oracle_record_is_rebuilt_and_the_schedule_completes(fake, tmp_path,
                                                                          capsys):
    """Hyperband's brackets are rebuilt from its trials: the search ends with the schedule an
    uninterrupted one runs (three 1-epoch trials, the best continued to 3 epochs, two more)."""
    fake.interrupt_at = 4  # trial 3 (the continued one) is running when the search stops
    with pytest.raises(KeyboardInterrupt):
        _tiny_tune("epochs=3", tuner="hyperband", max_trials=0)
    fake.interrupt_at = None
    (out_dir,) = (tmp_path / "nmt").glob("tune-hyperband-*")
    out_dir = str(out_dir)
    _cut(os.path.join(_search(out_dir), "oracle.json"))
    capsys.readouterr()
    _tiny_tune("epochs=3", tuner="hyperband", max_trials=0)
    out = capsys.readouterr().out
    assert "oracle.json was cut short" in out and "1 unfinished trial(s) run again" in out
    rows = _summary(out_dir)["trials"]
    assert [r["epochs"] for r in rows] == [1, 1, 1, 3, 3, 3]
    assert all(r["status"] == "COMPLETED" for r in rows)
    continued = rows[3]["continues"]
    assert continued == max(rows[:3], key=lambda r: r["metrics"]["val_bleu"])["trial_id"]


@pytest.mark.slow
def test_kill_while_writing_trial_records_then_resume(tmp_path):
    """SIGKILL (ZOO_TEST_KILL_AT, test-only) while a trial record is being written: trial 0's
    COMPLETED record, then trial 1's first one. Each time only a temporary file is cut; the same
    command resumes (removing it), re-runs the trial whose end was not recorded and completes
    the budget of two."""
    import signal

    runs = []
    for point in ("trial_completed_unrenamed:0", "trial_running_unrenamed:1", None):
        env = _env(tmp_path) | ({"ZOO_TEST_KILL_AT": point} if point else {})
        proc = subprocess.run(_tune_cmd(), cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
        runs.append(proc.stdout)
        (tune_dir,) = (tmp_path / "runs" / "nmt").glob("tune-random-*")
        search = tune_dir / "search"
        temporary = sorted(p.relative_to(search).as_posix() for p in search.rglob("*.tmp-*"))
        if point is None:
            assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
            assert temporary == []
            break
        assert proc.returncode == -signal.SIGKILL, (proc.stdout + proc.stderr)[-3000:]
        assert f"killing myself at {point}" in proc.stdout
        trial = point.rsplit(":", 1)[1]
        assert [t.split(".tmp-")[0] for t in temporary] == [f"trial_{trial}/trial.json"]
    # Run 1 trained trial 0 and was killed recording its end; run 2 trained it again (its
    # record said RUNNING) and was killed recording trial 1's start; run 3 ran trial 1.
    assert TRIAL_DONE.findall(runs[0]) == [("0", "tuner0")]
    assert TRIAL_DONE.findall(runs[1]) == [("0", "tuner0")]
    assert "removed 1 temporary file(s)" in runs[1] and "removed 1 temporary file(s)" in runs[2]
    assert "1 trial(s) already completed" in runs[2]
    assert TRIAL_DONE.findall(runs[2]) == [("1", "tuner0")]
    assert dict(TRIAL_START.findall(runs[0]))["0"] == dict(TRIAL_START.findall(runs[1]))["0"]
    after = _trials(tune_dir)
    assert sorted(after) == ["0", "1"]
    assert all(t["status"] == "COMPLETED" for t in after.values())
    for path in search.rglob("*.json"):
        json.loads(path.read_text())  # every record whole


def test_cut_record_of_an_older_hyperband_trial_is_kept_as_failed(fake, tmp_path, capsys):
    """Hyperband's brackets name every trial, so a cut record that is not the newest stays, as a
    FAILED trial without values; the search goes on and ends."""
    fake.interrupt_at = 4  # trial 3 is running when the search stops
    with pytest.raises(KeyboardInterrupt):
        _tiny_tune("epochs=3", tuner="hyperband", max_trials=0)
    fake.interrupt_at = None
    (out_dir,) = (tmp_path / "nmt").glob("tune-hyperband-*")
    out_dir = str(out_dir)
    # Without a cap on trials, keras-tuner pads trial numbers to four digits: "0001".
    _cut(os.path.join(_search(out_dir), "trial_0001", "trial.json"))
    capsys.readouterr()
    _tiny_tune("epochs=3", tuner="hyperband", max_trials=0)
    out = capsys.readouterr().out
    assert re.search(r"^warning: \S+trial_0001/trial.json was cut short .*trial 0001's values and "
                     r"results are lost; it is counted as failed", out, re.M)
    rows = _rows(out_dir)
    assert rows["0001"]["status"] == "FAILED" and rows["0001"]["hyperparameters"] == {}
    assert all(r["status"] == "COMPLETED" for k, r in rows.items() if k != "0001")
    assert TRIAL_DONE.findall(out)[0] == ("0003", "tuner0")  # the interrupted one runs again
    json.load(open(os.path.join(_search(out_dir), "trial_0001", "trial.json")))  # whole again


def test_oracle_record_naming_a_trial_that_is_not_there_is_one_clear_error(fake):
    from recipes.training import RunError

    out_dir = _tiny_tune(tuner="random", max_trials=2)
    path = os.path.join(_search(out_dir), "oracle.json")
    state = json.load(open(path))
    state["ongoing_trials"] = {"tuner0": "7"}
    with open(path, "w") as f:
        json.dump(state, f)
    with pytest.raises(RunError, match=r"oracle.json does not match the trials in .*fresh=true"):
        _tiny_tune(tuner="random", max_trials=2)
