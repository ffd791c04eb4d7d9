"""Shared by the export tests: the export of the session's tiny runs (tests/conftest.py), and the
exported SavedModel's outputs computed in a clean process (TensorFlow and TF Text only, as TF Serving)."""

import base64
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
# It makes the calls listed in its input file (inputs as raw bytes + dtype + shape, base64).
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
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

proto = saved_model_pb2.SavedModel()
proto.ParseFromString(open(os.path.join(saved_model, "saved_model.pb"), "rb").read())
graph = proto.meta_graphs[0].graph_def
ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
not_core = sorted(op for op in ops if op_def_registry.get(op) is None)
import tensorflow_text  # registers the TF Text ops, as TF Serving links them

def tensor(spec):
    if spec["dtype"] == "string":
        return tf.constant([base64.b64decode(x) for x in spec["values"]], tf.string)
    data = np.frombuffer(base64.b64decode(spec["data"]), spec["dtype"])
    return tf.constant(data.reshape(spec["shape"]))

model = tf.saved_model.load(saved_model)
spec = lambda s: [s.dtype.name, s.shape.as_list()]
specs = {name: {"inputs": {k: spec(v) for k, v in fn.structured_input_signature[1].items()},
                "outputs": {k: spec(v) for k, v in fn.structured_outputs.items()}}
         for name, fn in model.signatures.items()}
result = {"reachable": reachable, "signatures": sorted(model.signatures), "outputs": {},
          "specs": specs,
          "not_core_ops": not_core,
          "unknown_ops": sorted(op for op in not_core if op_def_registry.get(op) is None)}
for call in json.load(open(inputs)):
    fn = model.signatures[call["signature"]]
    out = fn(**{name: tensor(spec) for name, spec in call["inputs"].items()})
    result["outputs"][call["key"]] = {
        k: {"dtype": v.dtype.name, "shape": v.shape.as_list(),
            "value": [x.decode("utf-8") for x in v.numpy().ravel()]
            if v.dtype == tf.string else v.numpy().ravel().tolist()}
        for k, v in out.items()
    }
result["project_modules"] = sorted(
    m for m in sys.modules if m.split(".")[0] in ("zoo", "recipes", "export"))
json.dump(result, open(outputs, "w"))
"""


def tflite_path(nmt_export, name="nmt.tflite"):
    """The path of a TFLite file the session's nmt export wrote (asserted to be among them)."""
    path = os.path.join(nmt_export["root"], "tflite", name)
    assert path in nmt_export["tflite"]
    return path


def strings_input(values):
    """A string input for CLEAN_PROCESS."""
    values = [v if isinstance(v, bytes) else v.encode("utf-8") for v in values]
    return {"dtype": "string", "values": [base64.b64encode(v).decode("ascii") for v in values]}


def array_input(array):
    """A numeric input for CLEAN_PROCESS."""
    import numpy as np

    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii")}


# TensorFlow turns its oneDNN graph rewrites on by default on some CPUs and not on others, and
# they change behaviour (a batch-normalised convolution failed on an empty batch with them on).
# The clean-process checks run with them forced on and forced off, whatever CPU runs the tests.
ONEDNN_SETTINGS = ("1", "0")


def _same_outputs(a, b, what):
    """Asserts two clean-process results hold the same outputs (floats to 1e-4)."""
    import numpy as np

    assert a.keys() == b.keys(), what
    for key in a:
        assert a[key].keys() == b[key].keys(), (what, key)
        for name, x in a[key].items():
            y = b[key][name]
            assert x.shape == y.shape, (what, key, name, x.shape, y.shape)
            if x.dtype == object:
                assert (x == y).all(), (what, key, name)
            else:
                np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4, err_msg=f"{what} {key} {name}")


def run_clean_process(saved_model, calls, work):
    """Makes `calls` (`[{"key", "signature", "inputs"}]`) on `saved_model` in a clean process,
    once for each of `ONEDNN_SETTINGS` (`TF_ENABLE_ONEDNN_OPTS`), and asserts that every call
    succeeds and gives the same outputs under each.

    Returns `{"outputs": {key: {output: numpy array}}, "signatures": [...], "specs": {signature:
    {"inputs"|"outputs": {name: [dtype, shape]}}}, "reachable": [...], "project_modules": [...],
    "not_core_ops": [...], "unknown_ops": [...], "onednn": [settings run]}`.
    """
    results = [_clean_process(saved_model, calls, work, onednn) for onednn in ONEDNN_SETTINGS]
    for onednn, other in zip(ONEDNN_SETTINGS[1:], results[1:], strict=True):
        _same_outputs(results[0]["outputs"], other["outputs"],
                      f"TF_ENABLE_ONEDNN_OPTS={ONEDNN_SETTINGS[0]} vs {onednn}")
    return {**results[0], "onednn": list(ONEDNN_SETTINGS)}


def _clean_process(saved_model, calls, work, onednn):
    import numpy as np

    inputs, outputs = work / "inputs.json", work / f"outputs-onednn{onednn}.json"
    inputs.write_text(json.dumps(calls))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CLEAN_PROCESS, REPO, saved_model, str(inputs), str(outputs)],
        cwd=str(work), env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"TF_ENABLE_ONEDNN_OPTS={onednn}: " + proc.stderr[-3000:]
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
def translator(tiny_nmt_run):
    from recipes.nmt.inference import Translator

    return Translator.from_run(tiny_nmt_run)


@pytest.fixture(scope="session")
def nmt_export(tiny_nmt_run, tmp_path_factory):
    """`export.export` of the tiny run (with the quantised TFLite): the paths it wrote."""
    import export

    root = tmp_path_factory.mktemp("exports")
    paths = export.export("nmt", tiny_nmt_run, str(root), quantize=True)
    return {**paths, "root": str(root)}


@pytest.fixture(scope="session")
def clean_outputs(nmt_export, tmp_path_factory):
    """Every nmt signature called on `TEXTS` (and on an empty batch; `greedy` also on each text
    alone) in a clean process: see `run_clean_process`."""
    calls = []
    for signature in ("serving_default", "greedy"):
        calls.append({"key": f"{signature}/texts", "signature": signature,
                      "inputs": {"text": strings_input(TEXTS)}})
        calls.append({"key": f"{signature}/empty_batch", "signature": signature,
                      "inputs": {"text": strings_input([])}})
    for i, text in enumerate(TEXTS):  # one sentence per call, as the TFLite model decodes
        calls.append({"key": f"greedy/one/{i}", "signature": "greedy",
                      "inputs": {"text": strings_input([text])}})
    return run_clean_process(nmt_export["saved_model"], calls,
                             tmp_path_factory.mktemp("clean-process"))


@pytest.fixture(scope="session")
def loaded_saved_model(nmt_export):
    """The exported SavedModel loaded in this process (for the warmup and client checks)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(nmt_export["saved_model"])


@pytest.fixture(scope="session")
def captioner(tiny_captioning_run):
    from recipes.captioning import Captioner

    return Captioner.from_run(tiny_captioning_run)


@pytest.fixture(scope="session")
def captioning_export(tiny_captioning_run, tmp_path_factory):
    import export

    root = tmp_path_factory.mktemp("caption-exports")
    paths = export.export("captioning", tiny_captioning_run, str(root))
    return {**paths, "root": str(root)}


@pytest.fixture(scope="session")
def caption_inputs(captioner):
    """Test images (uint8 `[N, S, S, 3]`), the same at another size, and encoded files."""
    import numpy as np
    import tensorflow as tf

    from recipes.captioning import load_splits

    images = load_splits(captioner.config)[2].images[:6]
    other = np.stack([tf.image.resize(i, (50, 40)).numpy().astype(np.uint8) for i in images[:3]])
    files = [tf.io.encode_png(images[0]).numpy(), tf.io.encode_jpeg(images[1]).numpy()]
    return {"images": images, "other_size": other, "files": files}


@pytest.fixture(scope="session")
def caption_outputs(captioning_export, caption_inputs, tmp_path_factory):
    """The captioning signatures called in a clean process: see `run_clean_process`."""
    import numpy as np

    from export import client

    images = caption_inputs["images"]
    size = images.shape[1]
    # The files go through the REST client's body and back, as TF Serving decodes it.
    body = client.captioning_request(caption_inputs["files"])
    files = [base64.b64decode(row["image_bytes"]["b64"]) for row in body["instances"]]
    calls = [
        ("serving_default/images", "serving_default", {"image": array_input(images)}),
        ("serving_default/other_size", "serving_default",
         {"image": array_input(caption_inputs["other_size"])}),
        ("serving_default/no_pixels", "serving_default",
         {"image": array_input(np.zeros((2, 0, 5, 3), np.uint8))}),
        ("serving_default/black", "serving_default",
         {"image": array_input(np.zeros((1, size, size, 3), np.uint8))}),
        ("serving_default/empty_batch", "serving_default",
         {"image": array_input(np.zeros((0, size, size, 3), np.uint8))}),
        ("serving_bytes/files", body["signature_name"], {"image_bytes": strings_input(files)}),
        ("greedy/images", "greedy", {"image": array_input(images)}),
        ("greedy/empty_batch", "greedy",
         {"image": array_input(np.zeros((0, size, size, 3), np.uint8))}),
        ("serving_bytes/empty_batch", "serving_bytes", {"image_bytes": strings_input([])}),
    ] + [(f"greedy/one/{i}", "greedy", {"image": array_input(images[i : i + 1])})
         for i in range(len(images))]
    calls = [{"key": k, "signature": s, "inputs": inputs} for k, s, inputs in calls]
    return run_clean_process(captioning_export["saved_model"], calls,
                             tmp_path_factory.mktemp("caption-clean-process"))
