"""Hostile or odd input to the exported nmt artifacts: the caps on bytes per sentence and
sentences per request (and the `truncated` output), empty and blank sentences (an empty
translation on every path), and ids the TFLite model would misread (refused by
`TFLiteTranslator`, made harmless in the graph), with `TFLiteTranslator` called from threads."""

import json
import os
import threading

import numpy as np
import pytest

from tests.conftest import TINY_NMT
from tests.export.conftest import LONG_TEXT, run_clean_process, strings_input

# The caps of a second export of the session's tiny run, small enough to test cheaply.
SMALL_BYTES = 64
SMALL_SENTENCES = 3
HUGE = "seven " * 2_000_000  # 12 MB in one sentence


def _tflite(root, name="nmt.tflite"):
    from export.nmt import TFLiteTranslator

    return TFLiteTranslator(os.path.join(root, "tflite", name))


@pytest.fixture(scope="module")
def capped_export(tiny_nmt_run, tmp_path_factory):
    """The tiny run exported with `--max-sentence-bytes 64 --max-request-sentences 3`, through
    the command line."""
    from export.__main__ import main

    root = tmp_path_factory.mktemp("capped-exports")
    assert main(["nmt", "--run", tiny_nmt_run, "--out", str(root),
                 "--max-sentence-bytes", str(SMALL_BYTES),
                 "--max-request-sentences", str(SMALL_SENTENCES)]) == 0
    return {"root": str(root), "saved_model": os.path.join(str(root), "nmt", "1")}


@pytest.fixture(scope="module")
def capped_model(capped_export):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(capped_export["saved_model"])


def _call(model, signature, texts):
    import tensorflow as tf

    out = model.signatures[signature](text=tf.constant(texts, tf.string))
    return {k: v.numpy() for k, v in out.items()}


# -- 1. caps: sentences per request, bytes per sentence, `truncated` --------------------------


@pytest.mark.slow
def test_caps_are_recorded_in_the_metadata(capped_export, nmt_export):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from export.warmup import read_requests

    for root, size, count in ((capped_export["root"], SMALL_BYTES, SMALL_SENTENCES),
                              (nmt_export["root"], 8192, 256)):
        version = os.path.join(root, "nmt", "1")
        meta = json.load(open(os.path.join(version, "assets.extra", "nmt.json"), encoding="utf-8"))
        assert (meta["max_sentence_bytes"], meta["max_request_sentences"]) == (size, count)
        assert meta["outputs"]["truncated"] == ["bool", [-1]]
        assert meta["max_source_length"] == TINY_NMT["max_source_length"]
        # Every warmup request is one the model takes (TF Serving stops on one it refuses).
        model = tf.saved_model.load(version)
        for request in read_requests(version):
            assert len(request.inputs["text"].string_val) <= count
            signature = model.signatures[request.model_spec.signature_name]
            signature(text=tf.constant(tf.make_ndarray(request.inputs["text"])))
        tflite_meta = json.load(open(os.path.join(root, "tflite", "nmt.json"), encoding="utf-8"))
        assert tflite_meta["max_sentence_bytes"] == size


@pytest.mark.slow
@pytest.mark.parametrize("signature", ["serving_default", "greedy"])
def test_a_request_over_the_sentence_cap_is_refused_with_the_limit_and_the_flag(
        capped_model, signature):
    import tensorflow as tf

    assert len(_call(capped_model, signature, ["seven"] * SMALL_SENTENCES)["translation"]) == 3
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _call(capped_model, signature, ["seven"] * (SMALL_SENTENCES + 1))
    message = error.value.message
    assert f"this request has {SMALL_SENTENCES + 1} sentences" in message
    assert f"at most {SMALL_SENTENCES} per request" in message
    assert "--max-request-sentences" in message
    # The server goes on: the next request is answered.
    assert _call(capped_model, signature, [""])["translation"].tolist() == [b""]


@pytest.mark.slow
def test_long_sentences_are_cut_to_the_byte_cap_before_tokenising(capped_export, tiny_nmt_run,
                                                                  tmp_path):
    from recipes.nmt.inference import SavedModelTranslator, Translator, cut_utf8
    from zoo.text import python_tokens

    texts = [  # as many as the SavedModel takes in one request
        "seven",
        HUGE,             # cut by bytes only (10 tokens fit in 64 bytes)
        "a" + "é" * 100,  # byte 64 continues a 2-byte character: the cut goes before it
    ]
    raw = [t.encode("utf-8") for t in texts]
    out = run_clean_process(capped_export["saved_model"],
                            [{"key": "greedy", "signature": "greedy",
                              "inputs": {"text": strings_input(texts)}}], tmp_path)
    out = out["outputs"]["greedy"]
    assert out["truncated"].tolist() == [False, True, True]
    limit = TINY_NMT["max_source_length"]
    expected = [t[:limit] for t in python_tokens([cut_utf8(r, SMALL_BYTES) for r in raw])]
    tokens = [[t for t in row if t] for row in out["source_tokens"]]
    assert tokens == expected
    assert tokens[1] == ["seven"] * 10 + ["seve"]
    assert all("\ufffd" not in t for row in tokens for t in row)  # no character cut in two
    # The run's own Translator, with the same cap, cuts the same way and says so.
    translator = Translator.from_run(tiny_nmt_run)
    translator.max_sentence_bytes = SMALL_BYTES
    results = translator.translate(texts, beam=1)
    assert [r.source_tokens for r in results] == tokens
    assert [r.truncated for r in results] == out["truncated"].tolist()
    assert [r.text for r in results] == out["translation"].tolist()
    # The SavedModel behind the same API reports it too, and splits a long list of sentences
    # into requests the SavedModel takes (3 a request here, whatever batch_size says).
    saved = SavedModelTranslator(capped_export["saved_model"])
    assert saved.max_request_sentences == SMALL_SENTENCES
    many = saved.translate(texts * 3, beam=1, batch_size=64)
    assert [r.truncated for r in many] == out["truncated"].tolist() * 3
    assert [r.source_tokens for r in many] == tokens * 3


@pytest.mark.slow
def test_the_default_cap_bounds_a_huge_sentence(loaded_saved_model, translator):
    from recipes.nmt.inference import MAX_SENTENCE_BYTES

    texts = [HUGE, "seven", LONG_TEXT, "seven " * TINY_NMT["max_source_length"]]
    out = _call(loaded_saved_model, "greedy", texts)
    assert out["truncated"].tolist() == [True, False, True, False]
    assert [t for t in out["source_tokens"][0] if t] == [b"seven"] * TINY_NMT["max_source_length"]
    tokens, _, truncated = translator.source(texts)
    assert truncated == [True, False, True, False]
    assert translator.max_sentence_bytes == MAX_SENTENCE_BYTES
    assert tokens[0] == ["seven"] * TINY_NMT["max_source_length"]


@pytest.mark.slow
def test_tflite_host_cuts_to_the_metadata_byte_cap(capped_export):
    model = _tflite(capped_export["root"])
    assert model.max_sentence_bytes == SMALL_BYTES
    huge = model.translate(HUGE)
    assert huge["truncated"] is True and huge["source_tokens"] == ["seven"] * 10 + ["seve"]
    assert model.translate("seven")["truncated"] is False


@pytest.mark.parametrize("argv,message", [
    (["nmt", "--max-sentence-bytes", "8"], "--max-sentence-bytes 8: must be a whole number of at least 16"),
    (["nmt", "--max-request-sentences", "0"], "--max-request-sentences 0: must be a whole number of at least 1"),
    (["captioning", "--max-request-sentences", "3"], "only the nmt export takes text"),
])
def test_bad_caps_are_one_line_errors(argv, message, capsys, tmp_path):
    from export.__main__ import main

    assert main([*argv, "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "ex")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not os.path.exists(tmp_path / "ex")


def test_client_splits_texts_into_requests_within_the_cap():
    from export import client

    bodies = client.nmt_requests(["a", "b", "c", "d", "e"], 2, "greedy")
    assert [[i["text"] for i in b["instances"]] for b in bodies] == [["a", "b"], ["c", "d"], ["e"]]
    assert {b["signature_name"] for b in bodies} == {"greedy"} and client.nmt_requests([], 2) == []
    with pytest.raises(ValueError, match="max_sentences=0: must be at least 1"):
        client.nmt_requests(["a"], 0)


def test_cut_utf8_never_splits_a_character_and_matches_the_graph():
    import tensorflow as tf

    from export.nmt import cut_bytes
    from recipes.nmt.inference import cut_utf8

    rng = np.random.default_rng(0)
    alphabet = ["a", " ", "é", "\u20ac", "\U0001d11e", "\x00"]
    cases = ["".join(rng.choice(alphabet, rng.integers(0, 30))).encode() for _ in range(200)]
    cases += [bytes(rng.integers(0, 256, rng.integers(0, 30), dtype=np.uint8)) for _ in range(50)]
    for limit in (16, 17, 18, 19):
        cut, over = cut_bytes(tf.constant(cases), limit)
        assert cut.numpy().tolist() == [cut_utf8(c, limit) for c in cases]
        assert over.numpy().tolist() == [len(c) > limit for c in cases]
    for case in cases[:200]:  # valid UTF-8 stays valid, and only the end is dropped
        for limit in (16, 17, 18, 19):
            cut = cut_utf8(case, limit)
            assert len(cut) <= limit and case.startswith(cut) and len(cut) >= min(len(case), limit - 3)
            cut.decode("utf-8")


# -- 2. empty and blank sentences -------------------------------------------------------------

BLANKS = ["", "   ", "\t\n", "\x00 \x01"]


@pytest.mark.slow
def test_blank_sentences_get_an_empty_translation_from_the_saved_model(nmt_export, tmp_path):
    sentences = ["seven", "three hundred forty-two"]
    mixed = ["seven", "", "three hundred forty-two", "   ", "\t\n", "\x00 \x01"]
    calls = [{"key": f"{signature}/{name}", "signature": signature,
              "inputs": {"text": strings_input(texts)}}
             for signature in ("serving_default", "greedy")
             for name, texts in (("mixed", mixed), ("sentences", sentences), ("blank", BLANKS))]
    out = run_clean_process(nmt_export["saved_model"], calls, tmp_path)["outputs"]
    for signature in ("serving_default", "greedy"):
        for name, texts in (("mixed", mixed), ("blank", BLANKS)):
            got = out[f"{signature}/{name}"]
            for i, text in enumerate(texts):
                if text.strip("\x00\x01 \t\n"):
                    continue
                assert got["translation"][i] == "", (signature, name, i)
                assert set(got["target_tokens"][i]) <= {""} and set(got["source_tokens"][i]) <= {""}
                assert not got["attention"][i].any() and got["score"][i] == 0
                assert not got["truncated"][i]
        # The other sentences of the batch are answered as without the blank ones.
        got, alone = out[f"{signature}/mixed"], out[f"{signature}/sentences"]
        for key in ("translation", "score"):
            np.testing.assert_array_equal(got[key][[0, 2]], alone[key], err_msg=key)
        width = alone["target_tokens"].shape[1]
        np.testing.assert_array_equal(got["target_tokens"][[0, 2], :width], alone["target_tokens"])
        np.testing.assert_allclose(got["attention"][[0, 2], :width, : alone["attention"].shape[2]],
                                   alone["attention"], atol=1e-6)


@pytest.mark.slow
def test_blank_sentences_get_an_empty_translation_from_the_python_paths(translator, nmt_export):
    import recipes

    alone = translator.translate(["seven", "three hundred forty-two"], beam=1)
    for model in (translator, recipes.load(nmt_export["saved_model"])):
        results = model.translate(["seven", ""] + BLANKS[1:] + ["three hundred forty-two"], beam=1)
        for result in results[1:-1]:
            assert (result.text, result.tokens, result.score) == ("", [], 0.0)
            assert result.attention.shape == (0, 0) and result.source_tokens == []
        assert [r.text for r in (results[0], results[-1])] == [r.text for r in alone]
        assert [r.score for r in (results[0], results[-1])] == pytest.approx(
            [r.score for r in alone], abs=1e-5)
    # n-best on the run: a blank sentence has nothing to list.
    blank = translator.translate(["", "seven"], beam=3, n_best=2)
    assert blank[0].text == "" and blank[0].alternatives == [] and len(blank[1].alternatives) == 1


@pytest.mark.slow
def test_blank_sentences_get_an_empty_translation_from_tflite(nmt_export):
    model = _tflite(nmt_export["root"])
    for text in BLANKS:
        result = model.translate(text)
        assert (result["translation"], result["target_tokens"], result["score"]) == ("", [], 0.0)
        assert result["attention"].shape == (0, 0)
    # In the graph itself: all-padding ids give nothing, whatever app feeds them.
    out = model.decode_ids(np.zeros((1, TINY_NMT["max_source_length"]), np.int32))
    assert out["length"].tolist() == [0] and out["score"].tolist() == [0.0]
    assert not out["tokens"].any() and not out["attention"].any()


# -- 3. ids the TFLite model would misread; threads --------------------------------------------


def _ids(*values):
    ids = np.zeros((1, TINY_NMT["max_source_length"]), np.int32)
    ids[0, : len(values)] = values
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("ids,message", [
    (_ids(0, 0, 5, 6), "source_ids[0, 0] is 0 before the id at position 3 (left padding)"),
    (_ids(5, 0, 6), "source_ids[0, 1] is 0 before the id at position 2 (a hole)"),
    (_ids(5, 99), "source_ids[0, 1] = 99 is not a source id: ids go from 0 to 29"),
    (_ids(5, -1), "source_ids[0, 1] = -1 is not a source id"),
    (np.zeros((1, 3), np.int32), "source_ids has shape [1, 3]; the model takes [1, 12]"),
    (_ids(5).astype(np.float32), "source_ids has dtype float32"),
])
def test_tflite_translator_refuses_ids_the_model_would_misread(nmt_export, ids, message):
    model = _tflite(nmt_export["root"])
    assert len(model.source_tokens) == TINY_NMT["max_vocab_size"]
    with pytest.raises(ValueError) as error:
        model.decode_ids(ids)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_tflite_graph_keeps_every_id_and_reads_out_of_range_ids_as_unknown(nmt_export):
    model = _tflite(nmt_export["root"])
    runner = model.runner  # the graph itself, without the host-side checks
    # A hole: the id after it is still encoded (attended to), not dropped.
    holed = runner(source_ids=_ids(5, 0, 6, 7))
    rows = int(holed["length"][0]) + 1
    assert holed["attention"][0, :rows, 2:4].sum() > 0
    assert not holed["attention"][0, :, 1].any()  # the hole is masked padding
    # Out of range ids read as [UNK] (id 1).
    for bad in (99, 10**6, -5):
        out = runner(source_ids=_ids(5, bad, 6))
        unk = runner(source_ids=_ids(5, 1, 6))
        for key in unk:
            np.testing.assert_array_equal(out[key], unk[key], err_msg=f"{bad} {key}")


@pytest.mark.slow
def test_tflite_translator_from_threads_matches_sequential(nmt_export):
    model = _tflite(nmt_export["root"])
    words = ["one", "two", "seven", "twenty", "hundred", "thousand", "and", "zzzz", "nine"]
    rng = np.random.default_rng(3)
    sentences = [" ".join(rng.choice(words, rng.integers(0, 16))) for _ in range(48)]
    expected = [model.translate(s) for s in sentences]
    got = [None] * len(sentences)
    errors = []
    start = threading.Barrier(8)

    def worker(k):
        try:
            start.wait()
            for _ in range(3):
                for i in range(k, len(sentences), 8):
                    got[i] = model.translate(sentences[i])
                    assert got[i]["translation"] == expected[i]["translation"]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    for want, have in zip(expected, got, strict=True):
        assert have["target_tokens"] == want["target_tokens"]
        assert have["score"] == want["score"]
        np.testing.assert_array_equal(have["attention"], want["attention"])
