"""kill -9 during `python -m export RECIPE`: a server watching `exports/<recipe>/` never sees a
partial version, the version it serves stays intact byte for byte and answers as before, and the
next export takes the next version number. One test for both recipes."""

import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.export.conftest import REPO

pytestmark = pytest.mark.slow


def _export_cmd(recipe, run, root, *extra):
    return [sys.executable, "-m", "export", recipe, "--run", str(run), "--out", str(root), *extra]


def _temp_folders(recipe, root):
    return sorted(n for n in os.listdir(root) if n.startswith(f".tmp-{recipe}-"))


def _kill_when(recipe, run, root, ready, what, timeout=300):
    """Starts an export into `root`, kill -9s it once `ready()` holds; returns the temp folders
    it left. Fails if the export finished before the moment came (the test would prove
    nothing)."""
    before = set(_temp_folders(recipe, root))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = root.parent / "export-stderr.txt"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(_export_cmd(recipe, run, root), cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline and not ready(before):
            time.sleep(0.02)
        assert proc.poll() is None, f"the export ended before {what}: {log.read_text()[-2000:]}"
        assert ready(before), f"{what} did not happen within {timeout} s"
    finally:
        proc.kill()  # SIGKILL: no finally blocks, no atexit, no cleanup
        proc.wait()
    return sorted(set(_temp_folders(recipe, root)) - before)


def _served_versions(model_dir):
    """What TF Serving would load from `model_dir`: it only considers integer folder names.
    Every one must be a complete SavedModel."""
    names = sorted(os.listdir(model_dir))
    versions = [n for n in names if re.fullmatch(r"\d+", n)]
    assert names == versions, f"non-version entries under {model_dir}: {names}"
    for v in versions:
        folder = os.path.join(model_dir, v)
        for part in ("saved_model.pb", "variables/variables.index",
                     "assets.extra/tf_serving_warmup_requests"):
            assert os.path.exists(os.path.join(folder, part)), f"version {v} lacks {part}"
    return [int(v) for v in versions]


def _files(folder):
    """Every file under `folder` with its bytes: to show a version was not touched."""
    out = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def _answers(recipe, version, request):
    """The greedy signature's answers (texts, scores) to a few fixed inputs."""
    import tensorflow as tf

    greedy = tf.saved_model.load(str(version)).signatures["greedy"]
    if recipe == "nmt":
        import tensorflow_text  # noqa: F401 - the ops the nmt graph uses

        out = greedy(text=tf.constant(["three hundred forty-two", ""]))
        return [t.decode() for t in out["translation"].numpy()], out["score"].numpy()
    images = request.getfixturevalue("caption_inputs")["images"][:3]
    out = greedy(image=tf.constant(images))
    return [c.decode() for c in out["caption"].numpy()], out["score"].numpy()


@pytest.mark.parametrize("recipe", ["nmt", "captioning"])
def test_kill_during_export_leaves_the_served_version_intact(recipe, request, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from export import layout

    run = request.getfixturevalue(f"tiny_{recipe}_run")
    exported = request.getfixturevalue(f"{recipe}_export")
    # Start from an exports root that already serves version 1 (the session's export).
    root = tmp_path / "exports"
    shutil.copytree(exported["root"], root)
    model_dir = root / recipe
    for extra in _served_versions(model_dir)[1:]:  # other tests may have exported more
        shutil.rmtree(model_dir / str(extra))
    assert _served_versions(model_dir) == [1]
    config_before = (root / "models.config").read_text()
    version_before = _files(model_dir / "1")
    answers_before = _answers(recipe, model_dir / "1", request)

    def temp_appeared(before):
        return bool(set(_temp_folders(recipe, root)) - before)

    def temp_half_written(before):
        # The SavedModel is being written: some of its files exist, the warmup file not yet.
        for name in set(_temp_folders(recipe, root)) - before:
            if os.path.exists(root / name / "saved_model.pb") or os.path.isdir(
                root / name / "variables"
            ):
                return True
        return False

    left = []
    for ready, what in ((temp_appeared, "the temp folder appeared"),
                        (temp_half_written, "the SavedModel was half written")):
        left += _kill_when(recipe, run, root, ready, what)
        # The model's base path shows exactly what it showed before: version 1, byte for byte.
        assert _served_versions(model_dir) == [1], what
        assert _files(model_dir / "1") == version_before, what
        assert (root / "models.config").read_text() == config_before, what
    # kill -9 leaves the temp folders behind, but outside exports/<recipe>/ (TF Serving's base
    # path) and under a name that is no integer, so no server or models.config lists them.
    assert len(left) == 2 and all(os.path.isdir(root / n) for n in left)
    assert layout.served_models(str(root)) == [recipe]

    # Version 1 still answers as before the kills.
    texts, scores = _answers(recipe, model_dir / "1", request)
    assert texts == answers_before[0]
    np.testing.assert_allclose(scores, answers_before[1], rtol=1e-6)

    # The next export succeeds and takes version 2; the leftovers do not disturb it. (Without
    # the TFLite model, which the kills never reached, to keep the test short.)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(_export_cmd(recipe, run, root, "--no-tflite"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"SavedModel  {model_dir / '2'}" in done.stdout
    assert _served_versions(model_dir) == [1, 2]
    config = text_format.Parse((root / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    assert [(c.name, c.base_path) for c in config.model_config_list.config] == [
        (recipe, f"/models/{recipe}")]

    # Version 2 (the same run) answers as version 1.
    texts, scores = _answers(recipe, model_dir / "2", request)
    assert texts == answers_before[0]
    np.testing.assert_allclose(scores, answers_before[1], rtol=1e-5, atol=1e-6)
