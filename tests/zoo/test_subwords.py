import json
import os
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from zoo.errors import DataError
from zoo.subwords import SubwordTokenizer
from zoo.text import SPECIAL_TOKENS

SAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "data", "bible-en-fr")
VOCAB_SIZE = 400

# Characters the sample never shows (« » ’ — ﬁ Ⅻ ß) come back through byte fallback.
TEXTS = [
    "L'Éternel dit à Moïse: Où es-tu? Ça, c’est « très » bien!",
    "In the beginning God created the heaven and the earth; 42 of them, and 1:10!",
    "  Crème   brûlée\tnaïve, garçon\nà 7 h 30 ; l’été — ﬁn Ⅻ Straße?",
    "",
    "A",
]


def sample_lines(split):
    with open(os.path.join(SAMPLE, f"{split}.tsv"), encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split("\t") for line in f]
    return [side for pair in pairs for side in pair]


def expected_round_trip(text):
    text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return " ".join(unicodedata.normalize("NFKC", text).split())


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tokenizer(request):
    return SubwordTokenizer.train(sample_lines("train"), VOCAB_SIZE, model_type=request.param)


@pytest.fixture(scope="module")
def unigram():
    return SubwordTokenizer.train(sample_lines("train"), VOCAB_SIZE)


def test_tokens_follow_the_project_id_convention(tokenizer):
    assert len(tokenizer) == len(tokenizer.tokens) == VOCAB_SIZE
    assert tuple(tokenizer.tokens[:4]) == SPECIAL_TOKENS
    assert "" not in tokenizer.tokens[4:] and len(set(tokenizer.tokens)) == VOCAB_SIZE
    assert tokenizer.tokens[4] == "<0x00>"  # byte fallback pieces follow the specials


def test_round_trip_keeps_case_accents_and_punctuation(tokenizer):
    ids = tokenizer.encode(tf.constant(TEXTS))
    assert ids.dtype == tf.int32 and isinstance(ids, tf.RaggedTensor)
    assert not np.isin(ids.flat_values.numpy(), [0, 1, 2, 3]).any()
    got = [t.decode("utf-8") for t in tokenizer.detokenize(ids).numpy()]
    assert got == [expected_round_trip(t) for t in TEXTS]
    assert got[0] == "L'Éternel dit à Moïse: Où es-tu? Ça, c’est « très » bien!"
    assert got[2] == "Crème brûlée naïve, garçon à 7 h 30 ; l’été — fin XII Straße?"
    assert tokenizer.decode_python(tokenizer.encode_python(TEXTS)) == got


def test_detokenize_takes_ragged_dense_and_padded_ids(unigram):
    ids = unigram.encode(tf.constant(TEXTS), add_start_end=True)
    expected = unigram.detokenize(unigram.encode(tf.constant(TEXTS))).numpy().tolist()
    padded = ids.to_tensor()  # padding 0 after [END]
    wider = tf.pad(padded, [[0, 0], [0, 3]])
    for variant in (ids, padded, wider, padded.numpy(), tf.cast(padded, tf.int64)):
        assert unigram.detokenize(variant).numpy().tolist() == expected
    assert unigram.detokenize(tf.constant([[2, 3, 0, 0]])).numpy().tolist() == [b""]
    assert unigram.decode_python(padded.numpy().tolist()) == [t.decode() for t in expected]
    # [UNK] is shown as SentencePiece's unknown sign, never dropped silently.
    assert unigram.detokenize(tf.constant([[1]])).numpy()[0].decode().strip() == "\u2047"


def test_start_end_framing_and_max_length_as_vocabulary_encode(unigram):
    texts = tf.constant(TEXTS[:3])
    full = unigram.encode(texts).to_list()
    framed = unigram.encode(texts, add_start_end=True, max_length=5).to_list()
    assert framed == [[2] + row[:5] + [3] for row in full]
    assert unigram.encode(texts, max_length=5).to_list() == [row[:5] for row in full]
    assert unigram.encode(tf.constant([""]), add_start_end=True).to_list() == [[2, 3]]
    assert unigram.encode_python(TEXTS[:3], add_start_end=True, max_length=5) == framed


def test_strings_maps_ids_to_pieces(unigram):
    ids = unigram.encode(tf.constant(["Dieu dit"]), add_start_end=True)
    pieces = unigram.strings(ids).to_list()[0]
    assert pieces[0] == b"[START]" and pieces[-1] == b"[END]"
    assert b"".join(pieces[1:-1]).decode().replace("\u2581", " ").strip() == "Dieu dit"
    dense = unigram.strings(tf.constant([[5, 0]])).numpy().tolist()
    assert dense == [[unigram.tokens[5].encode(), b""]]


def test_graph_ids_equal_python_ids_on_the_sample(tokenizer):
    lines = sample_lines("train") + sample_lines("valid") + sample_lines("test")
    graph = tokenizer.encode(tf.constant(lines)).to_list()
    assert graph == tokenizer.encode_python(lines)
    graph_text = [t.decode("utf-8") for t in tokenizer.detokenize(tf.ragged.constant(graph)).numpy()]
    assert graph_text == tokenizer.decode_python(graph) == [expected_round_trip(t) for t in lines]


def test_bad_utf8_and_control_characters_agree_between_graph_and_python(unigram):
    texts = [b"caf\xc3\xa9 \xff\xfe fin", b"a\x00b\x1fc\x7fd", b"\xc3"]
    graph = unigram.encode(tf.constant(texts)).to_list()
    assert graph == unigram.encode_python(texts)
    assert unigram.decode_python(graph) == ["café \ufffd\ufffd fin", "a b c d", "\ufffd"]


def test_training_is_deterministic_and_sampling_is_seeded():
    lines = sample_lines("train")
    a = SubwordTokenizer.train(lines, VOCAB_SIZE, input_sentence_size=300, seed=3)
    b = SubwordTokenizer.train(iter(lines), VOCAB_SIZE, input_sentence_size=300, seed=3)
    c = SubwordTokenizer.train(lines, VOCAB_SIZE, input_sentence_size=300, seed=4)
    assert a.model_proto == b.model_proto
    assert a.model_proto != c.model_proto


def test_save_and_load_round_trip(unigram, tmp_path):
    path = str(tmp_path / "source.model")
    unigram.save(path)
    assert os.listdir(tmp_path) == ["source.model"]
    loaded = SubwordTokenizer.load(path)
    assert loaded.model_proto == unigram.model_proto and loaded.tokens == unigram.tokens
    texts = tf.constant(TEXTS)
    assert loaded.encode(texts).to_list() == unigram.encode(texts).to_list()
    # The file is a standard SentencePiece model.
    assert spm.SentencePieceProcessor(model_file=path).encode(TEXTS[0]) == unigram.encode_python(TEXTS[:1])[0]


CLEAN_PROCESS = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the SentencePiece ops, as TF Serving links them
loaded = tf.saved_model.load(sys.argv[1])
texts = tf.constant(json.loads(sys.argv[2]))
ids = loaded.encode(texts)
serving = loaded.signatures["serving_default"](ids=ids)
print(json.dumps({
    "ids": ids.numpy().tolist(),
    "text": [t.decode("utf-8") for t in loaded.detokenize(ids)["text"].numpy()],
    "serving": [t.decode("utf-8") for t in serving["text"].numpy()],
    "project_modules": [m for m in sys.modules if m.split(".")[0] in ("zoo", "recipes", "export")],
}))
"""


class _Archive(tf.Module):
    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(self, texts):
        return self.tokenizer.encode(texts, add_start_end=True).to_tensor()

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def detokenize(self, ids):
        return {"text": self.tokenizer.detokenize(ids)}


def test_saved_model_reloads_in_a_clean_process(unigram, tmp_path):
    model_dir = str(tmp_path / "saved")
    archive = _Archive(unigram)
    tf.saved_model.save(archive, model_dir, signatures={"serving_default": archive.detokenize})
    assert not os.listdir(os.path.join(model_dir, "assets"))  # the model is in the graph
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CLEAN_PROCESS, model_dir, json.dumps(TEXTS)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["project_modules"] == []
    ids = unigram.encode(tf.constant(TEXTS), add_start_end=True).to_tensor().numpy().tolist()
    assert out["ids"] == ids
    assert out["text"] == out["serving"] == [expected_round_trip(t) for t in TEXTS]


def test_vocab_size_too_large_names_a_smaller_one():
    with pytest.raises(DataError, match=r"vocab_size=100000 is too large .*at most \d+ .*smaller"):
        SubwordTokenizer.train(sample_lines("valid"), 100_000)


def test_vocab_size_too_small_names_the_need():
    with pytest.raises(DataError, match=r"vocab_size=50 is smaller than the \d+ characters.*larger"):
        SubwordTokenizer.train(sample_lines("valid"), 50)


@pytest.mark.parametrize(
    "lines, kwargs, message",
    [
        (["", "  "], {}, "no non-empty sentence"),
        (["a b"], {"model_type": "word"}, 'model_type must be "unigram" or "bpe"'),
    ],
)
def test_training_errors(lines, kwargs, message):
    with pytest.raises(DataError, match=message):
        SubwordTokenizer.train(lines, VOCAB_SIZE, **kwargs)


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read subword model"):
        SubwordTokenizer.load(str(tmp_path / "missing.model"))
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model")
    with pytest.raises(DataError, match="is not a subword model of this project: not a SentencePiece"):
        SubwordTokenizer.load(str(garbage))
    # A valid SentencePiece model with SentencePiece's default ids (0 is <unk>) is refused.
    prefix = str(tmp_path / "default")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sample_lines("valid")),
                                   model_prefix=prefix, vocab_size=200, minloglevel=2)
    with pytest.raises(DataError, match=r"ids 0-3 must be .*\[PAD\].*train the model with"):
        SubwordTokenizer.load(prefix + ".model")
