"""The nmt export (`export.nmt`). The SavedModel: a clean-process load, signatures, agreement
with the Keras model, bad requests, warmup records and `saved_model_cli`. The TFLite model: its
files, its signature on the standalone LiteRT interpreter, and decoding exactly as the
SavedModel's `greedy` signature on the same ids; `TFLiteTranslator` and its pure-Python
tokenizer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import TINY_NMT
from tests.export.conftest import TEXTS, tflite_path

OUTPUTS = {
    "translation": ("string", 1),
    "attention": ("float32", 3),
    "source_tokens": ("string", 2),
    "target_tokens": ("string", 2),
    "score": ("float32", 1),
    "truncated": ("bool", 1),
}


def test_export_module_hooks():
    from export import EXPORTERS, nmt

    assert "nmt" in EXPORTERS and nmt.NAME == "nmt"
    assert set(nmt.OPTIONS) == {"max_sentence_bytes", "max_request_sentences"}
    assert all(callable(getattr(nmt, hook)) for hook in
               ("run_files", "load", "save_saved_model", "write_tflite"))
    # check_run's files: the word lists, or the SentencePiece models of a subword run.
    assert nmt.run_files({}) == ("source_vocab.txt", "target_vocab.txt")
    assert nmt.run_files({"tokenizer": "words"}) == ("source_vocab.txt", "target_vocab.txt")
    assert nmt.run_files({"tokenizer": "sentencepiece"}) == ("source.spm.model",
                                                             "target.spm.model")


# -- the clean process -----------------------------------------------------------------------


@pytest.mark.slow
def test_loads_without_project_code_and_every_signature_answers(clean_outputs):
    assert clean_outputs["reachable"] == []
    assert clean_outputs["project_modules"] == []
    assert clean_outputs["signatures"] == ["greedy", "serving_default"]
    # Every op outside core TensorFlow is a TF Text op (which TF Serving links): no other
    # custom op.
    assert clean_outputs["not_core_ops"] and clean_outputs["unknown_ops"] == []
    for signature in ("serving_default", "greedy"):
        for batch, size in (("texts", len(TEXTS)), ("empty_batch", 0)):
            out = clean_outputs["outputs"][f"{signature}/{batch}"]
            assert set(out) == set(OUTPUTS)
            for name, (dtype, rank) in OUTPUTS.items():
                value = out[name]
                assert value.ndim == rank and value.shape[0] == size, (signature, batch, name)
                if dtype == "float32":
                    assert value.dtype == np.float32 and np.isfinite(value).all()
            t_out, t_in = out["attention"].shape[1:]
            assert out["target_tokens"].shape[1] == t_out
            assert out["source_tokens"].shape[1] == t_in


def _compare_with_keras(out, results):
    for i, result in enumerate(results):
        n_src = len(result.source_tokens)
        assert list(out["source_tokens"][i, :n_src]) == result.source_tokens
        assert set(out["source_tokens"][i, n_src:]) <= {""}
        n = len(result.tokens)
        assert list(out["target_tokens"][i, :n]) == result.tokens, i
        rows = result.attention.shape[0]
        assert list(out["target_tokens"][i, n:rows]) == ["[END]"] * (rows - n)
        assert set(out["target_tokens"][i, rows:]) <= {""}
        assert out["translation"][i] == result.text
        np.testing.assert_allclose(out["score"][i], result.score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            out["attention"][i, :rows, :n_src], result.attention, rtol=0, atol=1e-5
        )
        assert not out["attention"][i, rows:].any() and not out["attention"][i, :, n_src:].any()


@pytest.mark.slow
@pytest.mark.parametrize("signature,beam", [("serving_default", TINY_NMT["beam_size"]),
                                            ("greedy", 1)])
def test_matches_the_keras_model(clean_outputs, translator, signature, beam):
    # One batch, as the SavedModel got them: the step limit depends on the longest sentence.
    results = translator.translate(TEXTS, beam=beam, batch_size=len(TEXTS))
    assert translator.config.replace_unk == "true"
    _compare_with_keras(clean_outputs["outputs"][f"{signature}/texts"], results)


@pytest.mark.slow
def test_bad_requests_give_documented_outputs(clean_outputs, translator):
    from zoo.text import python_tokens

    out = clean_outputs["outputs"]["serving_default/texts"]
    max_len = TINY_NMT["max_source_length"]
    tokens = [[t for t in row if t] for row in out["source_tokens"]]
    # Empty and whitespace-only: no source tokens, an empty translation (nothing made up).
    for blank in ("", "   "):
        i = TEXTS.index(blank)
        assert tokens[i] == [] and out["translation"][i] == "" and out["score"][i] == 0
        assert set(out["target_tokens"][i]) == {""} and not out["attention"][i].any()
    # Too long: the first max_source_length tokens are kept, and the answer says so.
    long_i = next(i for i, t in enumerate(TEXTS) if isinstance(t, str) and len(t) > 100)
    assert tokens[long_i] == python_tokens([TEXTS[long_i]])[0][:max_len]
    assert out["truncated"].tolist() == [i == long_i for i in range(len(TEXTS))]
    # Invalid UTF-8: each bad byte became U+FFFD; the output is valid UTF-8 (it was decoded).
    bad_i = next(i for i, t in enumerate(TEXTS) if isinstance(t, bytes))
    assert "\ufffd" in "".join(tokens[bad_i]) and "seven" in tokens[bad_i]
    # Unknown words decode like any other (as [UNK] ids).
    unknown_i = TEXTS.index("zzzz qqq blorf")
    assert tokens[unknown_i] == ["zzzz", "qqq", "blorf"]
    import tensorflow as tf

    ids = translator.source_vocab.ids(tf.constant(tokens[unknown_i])).numpy()
    assert (ids == 1).all()
    # Attention: real output rows sum to 1 over real source tokens, except without any.
    for i, row_tokens in enumerate(out["target_tokens"]):
        rows = sum(1 for t in row_tokens if t)
        sums = out["attention"][i, :rows].sum(-1)
        expected = 1.0 if tokens[i] else 0.0
        np.testing.assert_allclose(sums, expected, atol=1e-5)


def test_replace_unknown_points_at_the_attended_source_token():
    import tensorflow as tf

    from export.nmt import replace_unknown

    words = tf.constant([["[UNK]", "b", "[UNK]"], ["[UNK]", "[UNK]", ""]])
    ids = tf.constant([[1, 5, 1], [1, 1, 0]])
    lengths = tf.constant([3, 1])
    source = tf.constant([["x", "y", "z"], ["", "", ""]])
    source_lengths = tf.constant([3, 0])
    attention = tf.constant(
        [[[0.1, 0.8, 0.1], [1, 0, 0], [0.2, 0.3, 0.5]], [[0, 0, 0]] * 3], tf.float32
    )
    out = replace_unknown(words, ids, lengths, source, source_lengths, attention).numpy()
    # Row 0: both [UNK]s replaced; row 1: no source tokens, so [UNK] stays.
    assert out.tolist() == [[b"y", b"b", b"z"], [b"[UNK]", b"[UNK]", b""]]


# -- warmup and saved_model_cli --------------------------------------------------------------


@pytest.mark.slow
def test_warmup_requests_are_real_requests(nmt_export, loaded_saved_model):
    import tensorflow as tf

    from export.warmup import read_requests

    requests = read_requests(nmt_export["saved_model"])
    assert len(requests) >= 2
    assert {r.model_spec.signature_name for r in requests} == {"serving_default", "greedy"}
    for request in requests:
        assert request.model_spec.name == "nmt"
        signature = loaded_saved_model.signatures[request.model_spec.signature_name]
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        assert set(inputs) == set(signature.structured_input_signature[1]) == {"text"}
        out = signature(**{k: tf.constant(v) for k, v in inputs.items()})
        assert out["translation"].shape[0] == len(inputs["text"])


@pytest.mark.slow
def test_saved_model_cli_shows_the_contract(nmt_export):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run(
        [cli, "show", "--all", "--dir", nmt_export["saved_model"]],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dump = proc.stdout
    for signature in ("serving_default", "greedy"):
        start = dump.index(f"signature_def['{signature}']")
        block = dump[start : dump.find("signature_def[", start + 1)]
        assert "inputs['text'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in block
        for name, shape, dtype in (
            ("translation", "(-1)", "DT_STRING"),
            ("attention", "(-1, -1, -1)", "DT_FLOAT"),
            ("source_tokens", "(-1, -1)", "DT_STRING"),
            ("target_tokens", "(-1, -1)", "DT_STRING"),
            ("score", "(-1)", "DT_FLOAT"),
            ("truncated", "(-1)", "DT_BOOL"),
        ):
            assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" \
                in block, (signature, name)


# -- TFLite -----------------------------------------------------------------------------------

# Attention agrees to this absolute tolerance (float32, same ops, different kernels).
ATTENTION_ATOL = 1e-5


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
def test_signature_on_the_standalone_interpreter(nmt_export):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite_path(nmt_export))
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
    from export.nmt import TFLiteTranslator

    model = TFLiteTranslator(tflite_path(nmt_export))
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
    from export.nmt import TFLiteTranslator

    float_path = tflite_path(nmt_export)
    quantized_path = tflite_path(nmt_export, "nmt.dynamic_range.tflite")
    # int8 weights; on this tiny model the graph itself is a large share of the file.
    assert os.path.getsize(quantized_path) < os.path.getsize(float_path)
    model = TFLiteTranslator(quantized_path)
    for _, _, out, _ in _tflite_vs_greedy(model, clean_outputs):
        assert np.isfinite(out["attention"]).all() and np.isfinite(out["score"]).all()


@pytest.mark.parametrize("sentence", TEXTS + ["a\tb\nc", "Ｆｕｌｌ　ｗｉｄｔｈ ½"])
def test_python_tokenize_matches_the_graph_tokenizer(sentence):
    from export.nmt import detokenize, tokenize
    from zoo import text

    assert tokenize(sentence) == text.python_tokens([sentence])[0]
    tokens = tokenize(sentence)
    import tensorflow as tf

    graph = text.detokenize(tf.ragged.constant([tokens], dtype=tf.string)).numpy()[0]
    assert detokenize(tokens) == graph.decode("utf-8")


@pytest.mark.slow
def test_host_translate(nmt_export, clean_outputs):
    from export.nmt import TFLiteTranslator

    model = TFLiteTranslator(tflite_path(nmt_export))
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
