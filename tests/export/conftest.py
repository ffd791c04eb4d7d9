"""Shared by the export tests: one tiny trained nmt run, one export of it, and the exported
SavedModel's outputs computed in a clean process (TensorFlow and TF Text only, as TF Serving)."""

import base64
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Seconds of training; quality is irrelevant. A small vocabulary makes [UNK] common on both
# sides, so the in-graph [UNK] replacement (replace_unk=true) is exercised; a short
# max_source_length makes truncation cheap to test.
TINY_NMT = dict(
    train_size=300,
    validation_size=30,
    test_size=30,
    max_digits=4,
    max_items=3,
    units=32,
    embedding_dim=16,
    batch_size=32,
    epochs=1,
    beam_size=3,
    coverage_penalty=0.2,
    max_source_length=12,
    max_target_length=16,
    max_vocab_size=30,
    replace_unk="true",
    run_id="export-tiny",
)

LONG_TEXT = " ".join(["one hundred and twenty-three"] * 8)  # 32 tokens > max_source_length
# Ordinary sentences of several lengths, then the bad requests the SavedModel must survive.
TEXTS = [
    "three hundred forty-two",
    "seven",
    "one thousand and five, nine hundred",
    "",
    "   ",
    "zzzz qqq blorf",
    LONG_TEXT,
    b"\xff\xfe seven \xc3",
    "Seven,EIGHT!  nine?",
]

# Runs in a subprocess with cwd outside the repo, the repo removed from sys.path and the
# editable-install finder removed from sys.meta_path: only tensorflow and tensorflow_text.
CLEAN_PROCESS = r"""
import base64, importlib.util, json, os, sys
repo, saved_model, inputs, outputs = sys.argv[1:5]
repo, env = os.path.realpath(repo), os.path.realpath(sys.prefix)  # the venv may sit in the repo
inside = lambda p, root: p == root or p.startswith(root + os.sep)
sys.path[:] = [p for p in sys.path if p and (not inside(os.path.realpath(p), repo)
                                             or inside(os.path.realpath(p), env))]
editable = lambda f: (f if isinstance(f, type) else type(f)).__module__.startswith("__editable__")
sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks
                     if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path_importer_cache.clear()
reachable = [m for m in ("zoo", "recipes", "export") if importlib.util.find_spec(m)]
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

proto = saved_model_pb2.SavedModel()
proto.ParseFromString(open(os.path.join(saved_model, "saved_model.pb"), "rb").read())
graph = proto.meta_graphs[0].graph_def
ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
not_core = sorted(op for op in ops if op_def_registry.get(op) is None)
import tensorflow_text  # registers the TF Text ops, as TF Serving links them

model = tf.saved_model.load(saved_model)
texts = [base64.b64decode(t) for t in json.load(open(inputs))]
result = {"reachable": reachable, "signatures": sorted(model.signatures), "outputs": {},
          "not_core_ops": not_core,
          "unknown_ops": sorted(op for op in not_core if op_def_registry.get(op) is None)}
for name, fn in model.signatures.items():
    batches = [("texts", texts), ("empty_batch", [])]
    if name == "greedy":  # one sentence per call, as the TFLite model decodes
        batches += [(f"one/{i}", [t]) for i, t in enumerate(texts)]
    for batch_name, batch in batches:
        out = fn(text=tf.constant(batch, tf.string))
        result["outputs"][f"{name}/{batch_name}"] = {
            k: {"dtype": v.dtype.name, "shape": v.shape.as_list(),
                "value": [x.decode("utf-8") for x in v.numpy().ravel()]
                if v.dtype == tf.string else v.numpy().ravel().tolist()}
            for k, v in out.items()
        }
result["project_modules"] = sorted(
    m for m in sys.modules if m.split(".")[0] in ("zoo", "recipes", "export"))
json.dump(result, open(outputs, "w"))
"""


@pytest.fixture(scope="session")
def nmt_run(tmp_path_factory):
    from recipes import nmt, training

    root = tmp_path_factory.mktemp("export-runs")
    old = training.RUNS_ROOT
    training.RUNS_ROOT = str(root)
    try:
        return nmt.train(nmt.NmtConfig(**TINY_NMT), quiet=True)
    finally:
        training.RUNS_ROOT = old


@pytest.fixture(scope="session")
def translator(nmt_run):
    from recipes.translator import Translator

    return Translator.from_run(nmt_run)


@pytest.fixture(scope="session")
def nmt_export(nmt_run, tmp_path_factory):
    """`export.export` of the tiny run (with the quantised TFLite): the paths it wrote."""
    import export

    root = tmp_path_factory.mktemp("exports")
    paths = export.export("nmt", nmt_run, str(root), quantize=True)
    return {**paths, "root": str(root)}


@pytest.fixture(scope="session")
def clean_outputs(nmt_export, tmp_path_factory):
    """Every signature called on `TEXTS` (and on an empty batch) in a clean process.

    Returns `{"signature/batch": {output: numpy array}}` plus what the process could import.
    """
    import numpy as np

    work = tmp_path_factory.mktemp("clean-process")
    inputs, outputs = work / "inputs.json", work / "outputs.json"
    encoded = [t if isinstance(t, bytes) else t.encode("utf-8") for t in TEXTS]
    inputs.write_text(json.dumps([base64.b64encode(t).decode("ascii") for t in encoded]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CLEAN_PROCESS, REPO, nmt_export["saved_model"],
         str(inputs), str(outputs)],
        cwd=str(work), env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(outputs.read_text())
    arrays = {}
    for key, out in result["outputs"].items():
        arrays[key] = {
            name: np.array(o["value"], dtype=object if o["dtype"] == "string" else o["dtype"])
            .reshape(o["shape"])
            for name, o in out.items()
        }
    return {**result, "outputs": arrays}


@pytest.fixture(scope="session")
def loaded_saved_model(nmt_export):
    """The exported SavedModel loaded in this process (for the warmup and client checks)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(nmt_export["saved_model"])
