"""The shared TFLite conversion (`export.tflite`): builtin ops only (no Flex, no custom ops),
the greedy loop kept in the graph, the fixed output shapes and the files written whole."""

import json
import os

import numpy as np
import pytest

from tests.export.conftest import tflite_path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nmt.tflite", "nmt.dynamic_range.tflite"])
def test_builtin_ops_only(nmt_export, name):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(tflite_path(nmt_export, name))
    custom = 32  # BuiltinOperator.CUSTOM, which Flex ops use too
    codes = model.operatorCodes
    assert codes and all(max(c.builtinCode, c.deprecatedBuiltinCode) != custom for c in codes)
    assert all(not c.customCode for c in codes)
    # The greedy loop is in the graph: a WHILE op (builtin 119) with its cond/body subgraphs.
    assert any(max(c.builtinCode, c.deprecatedBuiltinCode) == 119 for c in codes)
    assert len(model.subgraphs) > 1


def test_fixed_outputs_pad_every_output_to_the_signature_shapes():
    import tensorflow as tf

    from export.tflite import fixed_outputs, outputs_metadata

    # Two steps of a search over 4 attended positions, in a signature of 5 steps x (2, 3).
    attention = np.arange(8, dtype=np.float32).reshape(1, 2, 4) + 1
    out = {"tokens": tf.constant([[7, 3]]), "lengths": tf.constant([1]),
           "attention": tf.constant(attention), "score": tf.constant([-0.5])}
    fixed = {k: v.numpy() for k, v in fixed_outputs(out, 5, [2, 3]).items()}
    assert fixed["tokens"].tolist() == [[7, 3, 0, 0, 0]]
    assert fixed["length"].tolist() == [1] and fixed["score"].tolist() == [-0.5]
    assert fixed["attention"].shape == (1, 5, 2, 3)
    flat = fixed["attention"].reshape(5, 6)
    assert (flat[:2, :4] == attention[0]).all() and not flat[:2, 4:].any() and not flat[2:].any()
    meta = outputs_metadata(5, [2, 3])
    assert {k: v[1] for k, v in meta.items()} == {k: list(v.shape) for k, v in fixed.items()}


def test_write_converts_and_writes_every_file_whole(tmp_path):
    import keras
    import tensorflow as tf

    from export import graph, tflite

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

    def serving_default(x):
        return {"y": model(x)}

    archive = graph.archive(
        model, {"serving_default": (serving_default, [tf.TensorSpec([1, 3], tf.float32, name="x")])}
    )
    paths = tflite.write(archive, str(tmp_path), "toy", True, {"toy.vocab.txt": b"a\n"},
                         {"model": "toy.tflite"})
    folder = tmp_path / tflite.TFLITE_DIR
    assert paths == [str(folder / n) for n in ("toy.tflite", "toy.dynamic_range.tflite",
                                               "toy.vocab.txt", "toy.json")]
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in paths)  # no temp
    assert (folder / "toy.vocab.txt").read_bytes() == b"a\n"
    assert json.loads((folder / "toy.json").read_text()) == {"model": "toy.tflite"}
    from ai_edge_litert.interpreter import Interpreter

    x = np.ones((1, 3), np.float32)
    runner = Interpreter(model_path=paths[0]).get_signature_runner("serving_default")
    np.testing.assert_allclose(runner(x=x)["y"], model(x).numpy(), rtol=1e-5, atol=1e-6)
