"""A `tokenizer=sentencepiece` nmt run exported: the SavedModel takes raw strings and answers
cased, detokenised text in a clean TensorFlow + TF Text process, and the TFLite model with the
shipped `.spm.model` files decodes as the SavedModel's `greedy` signature."""

import json
import os

import numpy as np
import pytest

from tests.conftest import SAMPLE
from tests.export.conftest import run_clean_process, strings_input

TEXTS = [
    "L'Éternel dit à Moïse: « Où es-tu? »",
    "AU COMMENCEMENT, Dieu créa les cieux et la terre.",
    "",
    "In the beginning God created the heaven and the earth.",
    "   ",
    "Ça, c’est très bien!",
]


def _samples(count=5):
    """The first `count` source sentences of the committed test split."""
    with open(os.path.join(SAMPLE, "test.tsv"), encoding="utf-8") as f:
        return [line.split("\t")[0] for _, line in zip(range(count), f, strict=False)]


@pytest.fixture(scope="module")
def subword_export(varied_subword_run, tmp_path_factory):
    """`export.export` of the tiny subword run (with varied weights: see its fixture)."""
    import export

    root = tmp_path_factory.mktemp("subword-exports")
    return {**export.export("nmt", varied_subword_run, str(root)), "root": str(root)}


@pytest.fixture(scope="module")
def subword_clean(subword_export, tmp_path_factory):
    """Both signatures on `TEXTS` and on an empty batch, and `greedy` on each sample sentence
    alone (as the TFLite model decodes), in a clean process under oneDNN on and off."""
    calls = []
    for signature in ("serving_default", "greedy"):
        calls.append({"key": f"{signature}/texts", "signature": signature,
                      "inputs": {"text": strings_input(TEXTS)}})
        calls.append({"key": f"{signature}/empty_batch", "signature": signature,
                      "inputs": {"text": strings_input([])}})
    for i, sentence in enumerate(_samples()):
        calls.append({"key": f"greedy/one/{i}", "signature": "greedy",
                      "inputs": {"text": strings_input([sentence])}})
    return run_clean_process(subword_export["saved_model"], calls,
                             tmp_path_factory.mktemp("subword-clean-process"))


@pytest.mark.slow
def test_raw_strings_in_text_out_in_a_clean_process(subword_clean):
    assert subword_clean["reachable"] == [] and subword_clean["project_modules"] == []
    assert subword_clean["onednn"] == ["1", "0"]
    for signature in ("serving_default", "greedy"):
        out = subword_clean["outputs"][f"{signature}/texts"]
        assert out["translation"].shape == (len(TEXTS),)
        assert all(isinstance(t, str) for t in out["translation"])
        for text, pieces in zip(TEXTS, out["source_tokens"], strict=True):
            pieces = [p for p in pieces if p]
            if text.strip():
                assert any("\u2581" in p for p in pieces), (signature, text, pieces)
            else:  # nothing to translate: an empty translation, not a made-up sentence
                assert pieces == [], (signature, text, pieces)
        for i, text in enumerate(TEXTS):
            if not text.strip():
                assert out["translation"][i] == "" and out["score"][i] == 0, (signature, i)
                assert set(out["target_tokens"][i]) <= {""} and not out["attention"][i].any()
        empty = subword_clean["outputs"][f"{signature}/empty_batch"]
        assert empty["translation"].shape == (0,) and empty["score"].shape == (0,)


@pytest.mark.slow
def test_greedy_signature_matches_the_translator(subword_clean, varied_subword_run):
    from recipes.nmt.inference import Translator

    translator = Translator.from_run(varied_subword_run)
    expected = translator.translate(TEXTS, beam=1)
    out = subword_clean["outputs"]["greedy/texts"]
    assert list(out["translation"]) == [r.text for r in expected]
    assert len({r.text for r in expected}) > 2  # varied outputs, not one repeated
    for row, result in zip(out["target_tokens"], expected, strict=True):
        assert list(row[: len(result.tokens)]) == result.tokens
    for row, result in zip(out["source_tokens"], expected, strict=True):
        assert [t for t in row if t] == result.source_tokens


@pytest.mark.slow
def test_graph_needs_only_tf_core_and_tf_text(subword_clean):
    assert subword_clean["unknown_ops"] == []
    # Whatever TF core lacks is TF Text's SentencePiece kernels.
    assert subword_clean["not_core_ops"]
    assert all(op.startswith("Sentencepiece") for op in subword_clean["not_core_ops"]), (
        subword_clean["not_core_ops"])


@pytest.mark.slow
def test_tflite_files_and_metadata(subword_export, varied_subword_run):
    folder = os.path.join(subword_export["root"], "tflite")
    meta = json.load(open(os.path.join(folder, "nmt.json"), encoding="utf-8"))
    assert meta["tokenizer"] == "sentencepiece"
    assert (meta["source_tokenizer"], meta["target_tokenizer"]) == (
        "nmt.source.spm.model", "nmt.target.spm.model")
    for side in ("source", "target"):
        path = os.path.join(folder, meta[f"{side}_tokenizer"])
        assert path in subword_export["tflite"]
        shipped = open(path, "rb").read()
        assert shipped == open(os.path.join(varied_subword_run, f"{side}.spm.model"), "rb").read()


@pytest.mark.slow
def test_tflite_with_shipped_tokenizers_matches_the_greedy_signature(subword_export, subword_clean):
    from export.nmt import TFLiteTranslator

    model = TFLiteTranslator(os.path.join(subword_export["root"], "tflite", "nmt.tflite"))
    assert model.subwords
    piece_id = {p: i for i, p in enumerate(model.target_tokens)}
    outputs = set()
    for i, sentence in enumerate(_samples()):
        greedy = {k: v[0] for k, v in subword_clean["outputs"][f"greedy/one/{i}"].items()}
        result = model.translate(sentence)
        assert result["translation"] == greedy["translation"], i
        # The app's sentencepiece encoding is the graph's, piece for piece.
        assert result["source_tokens"] == [t for t in greedy["source_tokens"] if t], i
        # One sentence a call: every position is an output token (an untrained model may emit
        # the padding id, whose string is "", mid-sentence).
        saved_ids = [piece_id[t] for t in greedy["target_tokens"]]
        tflite_ids = [piece_id[t] for t in result["target_tokens"]]
        assert tflite_ids == saved_ids, i
        outputs.add(tuple(tflite_ids))
        np.testing.assert_allclose(result["score"], greedy["score"], rtol=1e-5, atol=1e-4)
    assert len(outputs) > 1
