"""The nmt TFLite model: builtin ops only, runs on the standalone LiteRT interpreter, and decodes
exactly as the SavedModel's `greedy` signature on the same ids."""

import json
import os

import numpy as np
import pytest

from tests.export.conftest import TEXTS, TINY_NMT

# Attention agrees to this absolute tolerance (float32, same ops, different kernels).
ATTENTION_ATOL = 1e-5


def _model_path(nmt_export, name="nmt.tflite"):
    path = os.path.join(nmt_export["root"], "tflite", name)
    assert path in nmt_export["tflite"]
    return path


@pytest.mark.slow
def test_files_and_metadata(nmt_export):
    folder = os.path.join(nmt_export["root"], "tflite")
    assert sorted(os.listdir(folder)) == [
        "nmt.dynamic_range.tflite", "nmt.json", "nmt.source_vocab.txt", "nmt.target_vocab.txt",
        "nmt.tflite",
    ]
    meta = json.load(open(os.path.join(folder, "nmt.json")))
    assert meta["inputs"] == {"source_ids": ["int32", [1, TINY_NMT["max_source_length"]]]}
    assert meta["outputs"]["attention"] == [
        "float32", [1, TINY_NMT["max_target_length"] + 1, TINY_NMT["max_source_length"]]
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nmt.tflite", "nmt.dynamic_range.tflite"])
def test_builtin_ops_only(nmt_export, name):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(_model_path(nmt_export, name))
    custom = 32  # BuiltinOperator.CUSTOM, which Flex ops use too
    codes = model.operatorCodes
    assert codes and all(max(c.builtinCode, c.deprecatedBuiltinCode) != custom for c in codes)
    assert all(not c.customCode for c in codes)
    # The greedy loop is in the graph: a WHILE op (builtin 119) with its cond/body subgraphs.
    assert any(max(c.builtinCode, c.deprecatedBuiltinCode) == 119 for c in codes)
    assert len(model.subgraphs) > 1


@pytest.mark.slow
def test_signature_on_the_standalone_interpreter(nmt_export):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=_model_path(nmt_export))
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature["inputs"] == ["source_ids"]
    assert sorted(signature["outputs"]) == ["attention", "length", "score", "tokens"]


def _tflite_vs_greedy(tflite_model, clean_outputs):
    """Per sentence: TFLite outputs for the SavedModel's own source tokens, and the SavedModel's
    `greedy` outputs for that sentence alone (the step limit depends on the batch's longest
    sentence); yields (index, source tokens, tflite dict, greedy dict)."""
    for i in range(len(TEXTS)):
        greedy = clean_outputs["outputs"][f"greedy/one/{i}"]
        source = [t for t in greedy["source_tokens"][0] if t]
        out = tflite_model.decode_ids(tflite_model.encode(source))
        yield i, source, out, {k: v[0] for k, v in greedy.items()}


@pytest.mark.slow
def test_matches_the_saved_model_greedy_signature(nmt_export, clean_outputs):
    from export.tflite import TFLiteTranslator

    model = TFLiteTranslator(_model_path(nmt_export))
    end = model.target_tokens.index("[END]")
    for i, source, out, expected in _tflite_vs_greedy(model, clean_outputs):
        n = int(out["length"][0])
        ids = out["tokens"][0]
        rows = n + 1 if n < len(ids) and ids[n] == end else n
        words = [model.target_tokens[t] for t in ids[:rows]]
        saved = [t for t in expected["target_tokens"] if t]
        assert len(saved) == rows, (i, words, saved)
        assert not ids[rows:].any()
        attention = out["attention"][0]
        for t, (word, saved_word) in enumerate(zip(words, saved, strict=True)):
            if word == "[UNK]" and source:  # the SavedModel replaced it (replace_unk=true)
                word = source[int(np.argmax(attention[t, : len(source)]))]
            assert word == saved_word, (i, t)
        width = len(expected["source_tokens"])
        np.testing.assert_allclose(
            attention[:rows, :width], expected["attention"][:rows], rtol=0, atol=ATTENTION_ATOL
        )
        assert not attention[rows:].any() and not attention[:, max(len(source), 1):].any()
        np.testing.assert_allclose(out["score"][0], expected["score"], rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_quantized_model_runs_and_is_smaller(nmt_export, clean_outputs):
    from export.tflite import TFLiteTranslator

    float_path = _model_path(nmt_export)
    quantized_path = _model_path(nmt_export, "nmt.dynamic_range.tflite")
    # int8 weights; on this tiny model the graph itself is a large share of the file.
    assert os.path.getsize(quantized_path) < os.path.getsize(float_path)
    model = TFLiteTranslator(quantized_path)
    for _, _, out, _ in _tflite_vs_greedy(model, clean_outputs):
        assert np.isfinite(out["attention"]).all() and np.isfinite(out["score"]).all()


@pytest.mark.parametrize("sentence", TEXTS + ["a\tb\nc", "Ｆｕｌｌ　ｗｉｄｔｈ ½"])
def test_python_tokenize_matches_the_graph_tokenizer(sentence):
    from export.tflite import detokenize, tokenize
    from zoo import text

    assert tokenize(sentence) == text.python_tokens([sentence])[0]
    tokens = tokenize(sentence)
    import tensorflow as tf

    graph = text.detokenize(tf.ragged.constant([tokens], dtype=tf.string)).numpy()[0]
    assert detokenize(tokens) == graph.decode("utf-8")


@pytest.mark.slow
def test_host_translate(nmt_export, clean_outputs):
    from export.tflite import TFLiteTranslator

    model = TFLiteTranslator(_model_path(nmt_export))
    greedy = clean_outputs["outputs"]["greedy/one/0"]
    result = model.translate(TEXTS[0])
    assert result["source_tokens"] == [t for t in greedy["source_tokens"][0] if t]
    assert result["attention"].shape == (len(result["target_tokens"]), len(result["source_tokens"]))
    saved = [t for t in greedy["target_tokens"][0] if t]
    assert len(result["target_tokens"]) == len(saved)
    assert result["truncated"] is False
    long = model.translate(TEXTS[6])  # cut to max_source_length, as the SavedModel does
    assert len(long["source_tokens"]) == TINY_NMT["max_source_length"]
    assert long["truncated"] is True
