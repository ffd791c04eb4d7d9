"""`python -m export`: one-line errors with a non-zero exit, and a second export next to the first."""

import os
import subprocess
import sys

import pytest

from export.__main__ import main
from tests.helpers import REPO


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_unknown_recipe(capsys):
    assert main(["bogus"]) == 2
    assert "no exporter for recipe 'bogus'; known: captioning, nmt" in _one_line_error(capsys)


def test_missing_run(capsys, tmp_path):
    assert main(["nmt", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "ex")]) == 1
    assert "make train RECIPE=nmt" in _one_line_error(capsys)
    assert not os.path.exists(tmp_path / "ex")


def test_run_of_another_recipe_without_its_vocabulary(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert main(["captioning", "--run", str(tmp_path / "run")]) == 1
    assert "has no vocab.txt: is it a captioning run folder?" in _one_line_error(capsys)


def test_default_run_follows_zoo_runs(tmp_path):
    """The runs root is read once, when the process starts (recipes.config.RUNS_ROOT)."""
    proc = subprocess.run(
        [sys.executable, "-m", "export", "nmt", "--out", str(tmp_path / "ex")], cwd=REPO,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO, "ZOO_RUNS": str(tmp_path / "runs")},
    )
    assert proc.returncode == 1
    assert str(tmp_path / "runs" / "nmt" / "latest") in proc.stderr.strip().splitlines()[-1]


def test_run_without_model(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    for name in ("config.json", "source_vocab.txt", "target_vocab.txt"):
        (tmp_path / "run" / name).write_text("{}")
    assert main(["nmt", "--run", str(tmp_path / "run")]) == 1
    assert "has no model.keras" in _one_line_error(capsys)


@pytest.mark.slow
def test_run_of_another_recipe(capsys, tiny_nmt_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_nmt_run, run)
    (run / "config.json").write_text('{"image_size": 64}')
    assert main(["nmt", "--run", str(run), "--out", str(tmp_path / "ex")]) == 1
    assert "is not an nmt run" in _one_line_error(capsys)


@pytest.mark.slow
def test_second_export_is_a_new_version(capsys, tiny_nmt_run, nmt_export):
    root = nmt_export["root"]
    first = nmt_export["saved_model"]
    before = {f: os.path.getmtime(os.path.join(first, f)) for f in ("saved_model.pb",)}
    assert main(["nmt", "--run", tiny_nmt_run, "--out", root, "--no-tflite"]) == 0
    printed = capsys.readouterr().out
    second = os.path.join(root, "nmt", str(int(os.path.basename(first)) + 1))
    assert f"SavedModel  {second}" in printed
    assert os.path.exists(os.path.join(second, "saved_model.pb"))
    assert {f: os.path.getmtime(os.path.join(first, f)) for f in before} == before
    config = open(os.path.join(root, "models.config")).read()
    assert config.count('name: "nmt"') == 1
