"""kill -9 during `python -m recipes tune` (what `make tune` runs): the same command resumes the
search, completed trials keep their results and are not re-run."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

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


def test_cut_record_of_an_older_hyperband_trial_is_kept_as_failed(fake, single_process, capsys):
    """Hyperband's brackets name every trial, so a cut record that is not the newest stays, as a
    FAILED trial without values; the search goes on and ends."""
    fake.interrupt_at = 4  # trial 3 is running when the search stops
    with pytest.raises(KeyboardInterrupt):
        _tiny_tune("epochs=3", tuner="hyperband", max_trials=0)
    fake.interrupt_at = None
    (out_dir,) = (single_process / "nmt").glob("tune-hyperband-*")
    out_dir = str(out_dir)
    _cut(os.path.join(_search(out_dir), "trial_1", "trial.json"))
    capsys.readouterr()
    _tiny_tune("epochs=3", tuner="hyperband", max_trials=0)
    out = capsys.readouterr().out
    assert re.search(r"^warning: \S+trial_1/trial.json was cut short .*trial 1's values and "
                     r"results are lost; it is counted as failed", out, re.M)
    rows = _rows(out_dir)
    assert rows["1"]["status"] == "FAILED" and rows["1"]["hyperparameters"] == {}
    assert all(r["status"] == "COMPLETED" for k, r in rows.items() if k != "1")
    assert TRIAL_DONE.findall(out)[0] == ("3", "tuner0")  # the interrupted trial runs again
    json.load(open(os.path.join(_search(out_dir), "trial_1", "trial.json")))  # whole again
