"""Bad input at the command line and in config: a one-line error that names the fix, nothing
written where it should not be, nothing that hangs or grows without bound."""

import json
import os
import subprocess
import sys

import pytest

from recipes import captioning, nmt, training, tuning
from recipes import config as recipes_config
from recipes.config import ConfigError, from_words
from recipes.nmt import data as nmt_data
from tests.conftest import TINY_NMT
from zoo.data import tsv
from zoo.errors import DataError

TINY_WORDS = [f"{k}={v}" for k, v in {**TINY_NMT, "epochs": 1}.items()]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _one_line_error(capsys, argv) -> str:
    from recipes.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1, err
    return err


# -- numeric ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word, message",
    [
        ("max_source_length=-1", "max_source_length=-1: must be at least 1"),
        ("max_target_length=0", "max_target_length=0: must be at least 1"),
        ("learning_rate=nan", "learning_rate=nan: expected a finite number"),
        ("learning_rate=inf", "learning_rate=inf: expected a finite number"),
        ("learning_rate=0", "learning_rate=0.0: must be above 0.0"),
        ("patience=0", "patience=0: must be at least 1"),
        ("length_penalty=-3", "length_penalty=-3.0: must be at least 0.0"),
        ("coverage_penalty=-1", "coverage_penalty=-1.0: must be at least 0.0"),
        ("clipnorm=0", "clipnorm=0.0: must be above 0.0"),
        ("dropout=1", "dropout=1.0: must be at least 0.0 and below 1.0"),
        ("label_smoothing=-0.1", "label_smoothing=-0.1: must be at least 0.0"),
        ("batch_tokens=-5", "batch_tokens=-5: must be at least 0"),
        ("min_count=0", "min_count=0: must be at least 1"),
        ("validation_size=0", "validation_size=0: must be at least 1"),
        ("seed=-1", "seed=-1: must be at least 0"),
    ],
)
def test_nmt_numeric_fields_are_range_checked(word, message):
    with pytest.raises(ConfigError, match=message):
        from_words(nmt.NmtConfig, [word])


def test_a_value_out_of_range_is_one_line_at_the_command_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(recipes_config, "RUNS_ROOT", str(tmp_path / "runs"))
    err = _one_line_error(capsys, ["train", "nmt", *TINY_WORDS, "max_source_length=-1"])
    assert "max_source_length=-1: must be at least 1" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "word, message",
    [
        ("learning_rate=nan", "expected a finite number"),
        ("patience=0", "patience=0: must be at least 1"),
        ("length_penalty=-3", "length_penalty=-3.0: must be at least 0.0"),
        ("max_caption_length=0", "max_caption_length=0: must be at least 1"),
        ("encoder_filters=16,0", "give one or more positive filter counts"),
    ],
)
def test_captioning_numeric_fields_are_range_checked(word, message):
    with pytest.raises(ConfigError, match=message):
        from_words(captioning.CaptioningConfig, [word])


def test_a_non_finite_float_in_a_json_file_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"learning_rate": NaN}')  # Python's json reads NaN
    with pytest.raises(ConfigError, match="learning_rate=nan: expected a finite number"):
        from_words(nmt.NmtConfig, [f"config={path}"])


# -- run ids and the latest link ----------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../../x", "/tmp/elsewhere", "a/b", "latest", "..", ".hidden"])
def test_run_id_is_a_plain_name(run_id, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(recipes_config, "RUNS_ROOT", str(tmp_path / "runs"))
    err = _one_line_error(capsys, ["train", "nmt", *TINY_WORDS, f"run_id={run_id}"])
    assert "a run id is a plain name" in err
    with pytest.raises(ConfigError, match="plain name"):
        training.run_dir_for("nmt", run_id)
    assert not (tmp_path / "runs").exists()  # nothing written, inside the root or out of it


def test_plain_run_ids_are_accepted():
    assert from_words(nmt.NmtConfig, ["run_id=my-run_2.1"]).run_id == "my-run_2.1"


def test_latest_replaces_only_the_link_this_project_made(tmp_path):
    parent = tmp_path / "nmt"
    (parent / "run-a").mkdir(parents=True)
    (parent / "run-b").mkdir()
    training.point_latest(str(parent / "run-a"))
    training.point_latest(str(parent / "run-b"))  # its own link: refreshed
    assert os.readlink(parent / "latest") == "run-b"

    os.remove(parent / "latest")
    (parent / "latest").write_text("a user's notes")
    with pytest.raises(training.RunError, match="not the link to the latest run"):
        training.point_latest(str(parent / "run-a"))
    assert (parent / "latest").read_text() == "a user's notes"

    os.remove(parent / "latest")
    os.symlink(str(tmp_path), parent / "latest")  # a link of the user's, not to a sibling run
    with pytest.raises(training.RunError, match="move it away"):
        training.point_latest(str(parent / "run-a"))
    assert os.readlink(parent / "latest") == str(tmp_path)


# -- hp files and the tuning oracle -------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{"run_id": "../../x"}, {"data": "/etc/passwd"}, {"train": "/tmp/x.tsv"}, {"units": 64,
                                                                                "epochs": 99}],
)
def test_hp_file_sets_only_searched_hyperparameters(values, tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"hyperparameters": values}))
    with pytest.raises(ConfigError, match="which the search does not tune"):
        from_words(nmt.NmtConfig, [f"hp={path}"])


def test_hp_file_of_searched_hyperparameters_applies(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"hyperparameters": {"units": 64, "beam_size": 1}}))
    config = from_words(nmt.NmtConfig, [f"hp={path}", "epochs=2", "run_id=x"])
    assert (config.units, config.beam_size, config.epochs, config.run_id) == (64, 1, 2, "x")
    path.write_text(json.dumps({"hyperparameters": {"attention": "luong_dot", "dropout": 0.2}}))
    config = from_words(captioning.CaptioningConfig, [f"hp={path}"])
    assert (config.attention, config.dropout) == ("luong_dot", 0.2)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "[::]", ""])
def test_the_chief_does_not_serve_the_oracle_on_every_interface(address, monkeypatch):
    monkeypatch.delenv("ZOO_ORACLE_ALL_INTERFACES", raising=False)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", address)
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    with pytest.raises(ConfigError, match="every network interface"):
        tuning._tuner_role()
    monkeypatch.setenv("ZOO_ORACLE_ALL_INTERFACES", "1")  # the user's explicit choice
    assert tuning._tuner_role() == "chief"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker1")  # workers connect; they serve nothing
    monkeypatch.delenv("ZOO_ORACLE_ALL_INTERFACES")
    assert tuning._tuner_role() == "worker"


def test_the_chief_serves_on_loopback_or_a_given_address(monkeypatch):
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    for address in ("127.0.0.1", "10.0.0.5"):
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", address)
        assert tuning._tuner_role() == "chief"


# -- data files ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)  # reading a FIFO with no writer would block for ever
def test_data_that_is_not_a_regular_file_is_refused(tmp_path, capsys):
    fifo = tmp_path / "pairs.tsv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        tsv.read_tsv(str(fifo))
    assert "not a regular file" in _one_line_error(capsys, ["train", "nmt", f"data={fifo}"])
    with pytest.raises(ConfigError, match="not a regular file"):
        from_words(nmt.NmtConfig, ["data=/dev/zero"])


def test_the_tsv_report_keeps_counts_and_the_first_lines(tmp_path):
    path = tmp_path / "pairs.tsv"
    bad = 20_000
    path.write_text("one\tun\n" + "no tab here\n" * bad + "two\tdeux\n")
    pairs, report = tsv.read_tsv(str(path))
    assert pairs == [("one", "un"), ("two", "deux")]
    assert report.skipped == {"lines without a tab": bad} and report.skipped_count == bad
    assert report.examples == {"lines without a tab": [2, 3, 4]}  # not 20,000 line numbers
    assert f"{bad} lines without a tab (e.g. line 2, 3, 4)" in report.summary()


# -- errors that are not the project's own --------------------------------------------------------


def test_permission_denied_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(recipes_config, "RUNS_ROOT", "/sys/attention-zoo-runs")  # not writable, even as root
    err = _one_line_error(capsys, ["train", "nmt", *TINY_WORDS, "run_id=denied"])
    assert "/sys/attention-zoo-runs" in err and "ZOO_RUNS" in err and "ZOO_DEBUG=1" in err


def test_a_malformed_tf_config_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": ')
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        training.tf_config()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": "a:1"}}')
    with pytest.raises(ConfigError, match="TF_CONFIG has no list of workers"):
        training.choose_strategy()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"index": "0"}}')
    with pytest.raises(ConfigError, match="no task index"):
        nmt_data._worker_shard()


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_zoo_debug_shows_the_traceback(tiny_nmt_run):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "recipes", "translate", "nmt", "--run", str(tiny_nmt_run),
           "one", "two"]
    with open("/dev/full", "w") as full:  # every write: ENOSPC, as on a full disk
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "no space left on the device" in proc.stderr and "Traceback" not in proc.stderr
        debug = subprocess.run(cmd, cwd=REPO, env={**env, "ZOO_DEBUG": "1"}, stdout=full,
                               stderr=subprocess.PIPE, text=True, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "OSError" in debug.stderr
