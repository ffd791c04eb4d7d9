"""nmt on real text: split-file configs, a SentencePiece run end to end, the streamed tf.data
pipeline (bounded memory, a shard per worker), token-budget batches, label smoothing and the
not-learning warning."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recipes import nmt, training
from recipes.config import ConfigError, from_words
from recipes.nmt import data as nmt_data
from recipes.nmt.inference import Translator
from tests.conftest import SAMPLE, TINY_SUBWORD_NMT
from zoo import text
from zoo.data import parallel
from zoo.losses import MaskedTokenLosses, masked_token_losses
from zoo.subwords import SubwordTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SPLITS = {k: os.path.join(SAMPLE, f"{k}.tsv") for k in ("train", "valid", "test")}
SENTENCE = "L'Éternel dit à Moïse: « Où es-tu? » Ça va."


# -- config ----------------------------------------------------------------------------------


def _config_error(words):
    with pytest.raises(ConfigError) as e:
        from_words(nmt.NmtConfig, words)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_split_files_need_all_three():
    message = _config_error([f"train={SPLITS['train']}"])
    assert "need all three of train=, valid=, test=" in message
    assert "missing: valid=, test=" in message and "data=FILE" in message
    assert "missing: test=" in _config_error([f"train={SPLITS['train']}", f"valid={SPLITS['valid']}"])


def test_split_files_and_data_are_exclusive(tmp_path):
    words = [f"{k}={v}" for k, v in SPLITS.items()]
    message = _config_error([f"data={SPLITS['train']}", *words])
    assert "both given" in message and "one or the other" in message
    config = from_words(nmt.NmtConfig, words)
    assert (config.train, config.valid, config.test) == tuple(SPLITS.values())


def test_a_bad_split_file_is_a_config_error(tmp_path):
    missing = tmp_path / "valid.tsv"
    words = [f"train={SPLITS['train']}", f"valid={missing}", f"test={SPLITS['test']}"]
    assert _config_error(words) == f"valid file {missing} does not exist"


@pytest.mark.parametrize(
    "word, message",
    [
        ("tokenizer=bpe", "tokenizer='bpe': choose one of word, sentencepiece"),
        ("subword_model=wordpiece", "subword_model='wordpiece': choose one of unigram, bpe"),
        ("label_smoothing=1.0", "label_smoothing=1.0: must be at least 0.0 and below 1.0"),
        ("label_smoothing=-0.1", "label_smoothing=-0.1: must be at least 0.0 and below 1.0"),
        ("batch_tokens=-5", "batch_tokens=-5: must be at least 0"),
        ("vocab_size=8", "vocab_size=8: must be at least 16"),
    ],
)
def test_config_value_errors(word, message):
    assert _config_error([word]) == message


def test_config_file_applies_and_words_override_it(tmp_path):
    path = tmp_path / "real-text.json"
    path.write_text(json.dumps({
        "// why": "comments are keys starting with //",
        "tokenizer": "sentencepiece", "vocab_size": 500, "label_smoothing": 0.1,
        "units": 64, "batch_tokens": 2000, **SPLITS,
    }))
    config = from_words(nmt.NmtConfig, [f"config={path}", "units=32"])
    assert (config.tokenizer, config.vocab_size, config.label_smoothing) == ("sentencepiece", 500, 0.1)
    assert (config.units, config.batch_tokens, config.train) == (32, 2000, SPLITS["train"])


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "config file {path} does not exist"),
        ("{not json", "cannot read config file {path}"),
        ("[1, 2]", "config file {path}: expected a JSON object"),
        ('{"unitz": 64}', "unknown config key 'unitz'"),
        ('{"units": "many"}', "units='many': expected int"),
        ('{"tokenizer": "bpe"}', "tokenizer='bpe'"),
    ],
)
def test_bad_config_file_is_a_config_error(tmp_path, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert message.format(path=path) in _config_error([f"config={path}"])


# -- a subword run, end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def subword_translator(subword_run):
    return Translator.from_run(subword_run)


@pytest.mark.slow
def test_subword_run_folder(subword_run):
    for name in ("config.json", "data.json", "model.keras", "source.spm.model", "target.spm.model"):
        assert os.path.exists(os.path.join(subword_run, name)), name
    data = json.load(open(os.path.join(subword_run, "data.json")))
    assert data["vocabulary_sizes"] == [TINY_SUBWORD_NMT["vocab_size"]] * 2
    assert data["batches_per_epoch"] > 0 and "split files" in data["report"]
    # A joint vocabulary: one model, saved for each side.
    source, target = (open(os.path.join(subword_run, f"{s}.spm.model"), "rb").read()
                      for s in ("source", "target"))
    assert source == target


@pytest.mark.slow
def test_translator_translates_cased_accented_text(subword_translator):
    assert subword_translator.subword
    result = subword_translator.translate([SENTENCE], beam=1)[0]
    assert isinstance(result.text, str)
    pieces = set(subword_translator.target_vocab.tokens)
    assert all(t in pieces for t in result.tokens)
    assert any("\u2581" in t for t in result.source_tokens)  # SentencePiece word starts
    assert set(result.source_tokens) <= set(subword_translator.source_vocab.tokens)
    assert result.text == subword_translator.target_vocab.decode_python(
        [[subword_translator.target_vocab.tokens.index(t) for t in result.tokens]])[0]


@pytest.mark.slow
def test_sentence_alone_equals_sentence_in_padded_batch(varied_subword_run):
    translator = Translator.from_run(varied_subword_run)
    longer = sorted((s for s, _ in parallel.read_pairs(parallel.parse_split("test", SPLITS["test"]))),
                    key=len)[-2:]
    batch = [longer[0], SENTENCE, longer[1]]
    together = translator.translate(batch, beam=1)
    alone = translator.translate([SENTENCE], beam=1)[0]
    joint = together[1]
    # The step limit follows the batch's longest source: compare within the sentence's own limit.
    limit = translator.max_decode_length(len(alone.source_tokens))
    assert alone.source_tokens == joint.source_tokens
    assert len(set(alone.tokens)) > 1  # varied output, not one piece repeated
    assert alone.tokens == joint.tokens[:limit]
    if len(joint.tokens) <= limit:
        assert alone.text == joint.text
        np.testing.assert_allclose(alone.attention, joint.attention, atol=1e-5)
        np.testing.assert_allclose(alone.score, joint.score, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_evaluate_a_test_file_writes_hypotheses(subword_run, tmp_path):
    lines = open(SPLITS["test"], encoding="utf-8").read().splitlines()[:12]
    path = tmp_path / "heldout.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = nmt.evaluate(subword_run, beam=1, test_file=str(path), quiet=True, plots_count=0)
    quality = report["text"]
    assert set(quality["overall"]) >= {"bleu", "chrf", "count"}
    assert quality["overall"]["count"] == 12
    assert 0.0 <= quality["overall"]["bleu"] <= 100.0 and 0.0 <= quality["overall"]["chrf"] <= 100.0
    assert sum(b["count"] for b in quality["by_length"].values()) == 12
    assert "case:mixed" in quality["signatures"]["bleu"] and "tok:13a" in quality["signatures"]["bleu"]
    assert "case:mixed" in quality["signatures"]["chrf"]
    assert (report["split"], report["hypotheses"]) == ("heldout", "hypotheses-heldout-greedy.txt")
    hypotheses = open(os.path.join(subword_run, report["hypotheses"]), encoding="utf-8").read()
    assert hypotheses.endswith("\n") and len(hypotheses.split("\n")) == 12 + 1
    metrics = json.load(open(os.path.join(subword_run, "metrics.json")))
    assert metrics["heldout_greedy"]["sentences"] == 12


# -- the streamed pipeline -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_tokenizer():
    """A joint SentencePiece model of the committed sample (about a second to train)."""
    pairs = parallel.read_pairs(parallel.parse_split("train", SPLITS["train"]))
    return SubwordTokenizer.train((side for pair in pairs for side in pair), 400)


def _data(tokenizer, split):
    return nmt.NmtData([], [], [], tokenizer, tokenizer, "", parallel.parse_split("train", split))


def _check_batch(batch):
    inputs, target = batch
    assert set(inputs) == {"source", "target_in"}
    for tensor in (inputs["source"], inputs["target_in"], target):
        assert tensor.dtype == tf.int32 and tensor.shape.rank == 2
    source, target_in, target = inputs["source"].numpy(), inputs["target_in"].numpy(), target.numpy()
    assert len(source) == len(target_in) == len(target) > 0
    assert (target_in[:, 0] == text.START_ID).all()
    assert target_in.shape == target.shape
    np.testing.assert_array_equal(target_in[:, 1:], target[:, :-1])  # shifted by one
    lengths = (target != 0).sum(1)
    assert (target[np.arange(len(target)), lengths - 1] == text.END_ID).all()
    assert ((source != 0).sum(1) > 0).all()
    return source


def test_stream_dataset_batches_every_pair_once(sample_tokenizer):
    config = nmt.NmtConfig(batch_size=16, max_source_length=200, max_target_length=200)
    split = SPLITS["train"]
    ds = nmt.stream_dataset(parallel.pairs_dataset(parallel.parse_split("train", split)),
                            _data(sample_tokenizer, split), config, shuffle=False, repeat=False)
    rows = [tuple(r[r != 0]) for batch in ds for r in _check_batch(batch)]
    expected = sample_tokenizer.encode_python(
        [s for s, _ in parallel.read_pairs(parallel.parse_split("train", split))],
        max_length=config.max_source_length)
    assert sorted(rows) == sorted(tuple(r) for r in expected)


# Run in a fresh process, so that its peak RSS is this pipeline's, not an earlier test's.
STREAM_MEMORY = r"""
import json, resource, sys
import numpy as np
from recipes import nmt
from zoo.data import parallel
from zoo.subwords import SubwordTokenizer

big, sample = sys.argv[1:3]
pairs = parallel.read_pairs(parallel.parse_split("train", sample))
tokenizer = SubwordTokenizer.train((side for pair in pairs for side in pair), 400)
split = parallel.parse_split("train", big)
data = nmt.NmtData([], [], [], tokenizer, tokenizer, "", split)
config = nmt.NmtConfig(batch_size=64, epochs=10)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
before = peak()
ds = nmt.stream_dataset(parallel.pairs_dataset(split), data, config)
batches = rows = 0
structure = set()
starts_ok = True
for inputs, target in ds.take(200):
    batches += 1
    rows += int(target.shape[0])
    structure.add((tuple(sorted(inputs)), inputs["source"].dtype.name,
                   inputs["target_in"].dtype.name, target.dtype.name))
    starts_ok &= bool((inputs["target_in"].numpy()[:, 0] == 2).all())
print(json.dumps({"growth": peak() - before, "batches": batches, "rows": rows,
                  "structure": sorted(structure), "starts_ok": starts_ok}))
"""


def _write_big_corpus(path, lines):
    nouns = [("man", "homme"), ("dog", "chien"), ("king", "roi"), ("city", "ville"),
             ("river", "fleuve"), ("house", "maison"), ("land", "pays")]
    verbs = [("saw", "a vu"), ("built", "a bâti"), ("blessed", "a béni")]
    chunk = 50_000
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, lines, chunk):
            rows = []
            for i in range(start, min(start + chunk, lines)):
                (a, fa), (v, fv), (b, fb) = nouns[i % 7], verbs[i % 3], nouns[(i // 7) % 7]
                rows.append(f"The {a} {v} the {b} {i}.\tLe {fa} {fv} le {fb} {i}.\n")
            f.write("".join(rows))


def test_streaming_a_large_split_keeps_memory_bounded(tmp_path):
    big = tmp_path / "big.tsv"
    _write_big_corpus(big, 1_000_000)
    size = os.path.getsize(big)
    assert size > 40e6
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", STREAM_MEMORY, str(big), SPLITS["train"]],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["batches"] == 200 and result["rows"] >= 200
    assert result["structure"] == [[["source", "target_in"], "int32", "int32", "int32"]]
    assert result["starts_ok"]
    # Held as Python objects the pairs alone would take several times the file's size.
    assert result["growth"] < 150e6, f"peak RSS grew {result['growth'] / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"


@pytest.mark.parametrize(
    "tf_config, expected",
    [
        (None, (1, 0)),
        ({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}}, (1, 0)),
        ({"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 0}}, (2, 0)),
        ({"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 1}}, (2, 1)),
        ({"cluster": {"chief": ["h:0"], "worker": ["h:1"]}, "task": {"type": "chief", "index": 0}},
         (2, 0)),
        ({"cluster": {"chief": ["h:0"], "worker": ["h:1"]}, "task": {"type": "worker", "index": 0}},
         (2, 1)),
    ],
)
def test_worker_shard_from_tf_config(monkeypatch, tf_config, expected):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert nmt_data._worker_shard() == expected


def test_each_worker_streams_its_own_shard(monkeypatch, sample_tokenizer):
    config = nmt.NmtConfig(batch_size=8, max_source_length=200, max_target_length=200)
    split = SPLITS["train"]
    sources = [s for s, _ in parallel.read_pairs(parallel.parse_split("train", split))]
    ids = sample_tokenizer.encode_python(sources, max_length=config.max_source_length)
    line_of = {tuple(row): i for i, row in enumerate(ids)}
    lines = {}
    for index in (0, 1):
        monkeypatch.setenv("TF_CONFIG", json.dumps(
            {"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": index}}))
        assert nmt_data._worker_shard() == (2, index)
        ds = nmt.stream_dataset(parallel.pairs_dataset(parallel.parse_split("train", split)),
                                _data(sample_tokenizer, split), config)
        source = _check_batch(next(iter(ds)))
        lines[index] = {line_of[tuple(r[r != 0])] for r in source}
    assert lines[0] and lines[1] and not lines[0] & lines[1]
    # Shard i of the (blank-free) sample is its lines i, i + 2, i + 4...
    assert all(i % 2 == 0 for i in lines[0]) and all(i % 2 == 1 for i in lines[1])


# -- batch_tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_tokens", [40, 300, 1500])
def test_token_batches_stay_within_the_budget(batch_tokens):
    rng = np.random.default_rng(0)
    # Source and target lengths drawn independently, as in real text.
    src = [np.ones(n, np.int32) for n in rng.integers(1, 60, 500)]
    tgt = [np.ones(n, np.int32) for n in rng.integers(3, 60, 500)]
    rows = 0
    for inputs, _ in nmt.batches(src, tgt, 64, seed=0, epoch=0, batch_tokens=batch_tokens):
        n, source_width = inputs["source"].shape
        target_width = inputs["target_in"].shape[1] + 1
        padded = n * (source_width + target_width)
        assert padded <= batch_tokens or n == 1, (n, source_width, target_width, padded)
        rows += n
    assert rows == len(src)


# -- label smoothing -------------------------------------------------------------------------


def test_label_smoothing_zero_is_the_plain_masked_loss():
    rng = np.random.default_rng(1)
    y_true = np.array([[4, 2, 0], [1, 0, 0]], np.int32)
    y_pred = rng.normal(size=(2, 3, 6)).astype(np.float32)
    np.testing.assert_allclose(MaskedTokenLosses(0.0).call(y_true, y_pred),
                               masked_token_losses(y_true, y_pred), rtol=1e-6)
    np.testing.assert_allclose(MaskedTokenLosses()(y_true, y_pred),
                               np.mean(masked_token_losses(y_true, y_pred)), rtol=1e-6)


def test_label_smoothing_by_hand():
    # One sentence: tokens 1 and 2, then padding, over a vocabulary of 3.
    y_true = np.array([[1, 2, 0]], np.int32)
    logits = np.array([[[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [5.0, 5.0, 5.0]]], np.float32)
    eps = 0.1
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_token = [(1 - eps) * -log_p[0, t, y_true[0, t]] + eps * -log_p[0, t].mean() for t in (0, 1)]
    loss = MaskedTokenLosses(eps)(y_true, logits)
    np.testing.assert_allclose(float(loss), np.mean(per_token), rtol=1e-5)
    # Smoothing is not the plain loss.
    assert abs(float(loss) - float(MaskedTokenLosses(0.0)(y_true, logits))) > 1e-3


def test_label_smoothing_config_round_trip():
    import keras

    loss = MaskedTokenLosses(0.2)
    assert loss.get_config()["label_smoothing"] == 0.2
    again = MaskedTokenLosses.from_config(loss.get_config())
    assert again.label_smoothing == 0.2 and again.name == loss.name
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, MaskedTokenLosses) and restored.label_smoothing == 0.2


# -- the not-learning warning ----------------------------------------------------------------


def test_learning_check_warns_at_the_most_frequent_token_rate(capsys):
    check = training.LearningCheck(0.30)
    check.on_epoch_end(0, {"val_masked_accuracy": 0.305})
    out = capsys.readouterr().out
    assert "not learning" in out and "after epoch 1" in out and "30.50%" in out and "30.00%" in out
    assert "learning_rate" in out and len(check.warnings) == 1
    check.on_epoch_end(1, {"val_masked_accuracy": 0.29})
    assert len(check.warnings) == 2


def test_learning_check_is_silent_when_learning(capsys):
    check = training.LearningCheck(0.30)
    check.on_epoch_end(0, {"val_masked_accuracy": 0.45})
    check.on_epoch_end(1, {"loss": 1.0})  # no validation this epoch
    check.on_epoch_end(2, None)
    assert check.warnings == [] and capsys.readouterr().out == ""


def test_most_frequent_token_rate():
    # Target rows with START first: the rate counts tokens after it, padding excluded.
    rows = [[2, 7, 7, 3], [2, 7, 3, 0, 0]]
    assert nmt.most_frequent_token_rate(rows) == pytest.approx(3 / 5)
    assert nmt.most_frequent_token_rate([]) == 0.0


@pytest.mark.slow
def test_evaluate_without_run_reads_the_runs_root_training_uses(subword_run, tmp_path):
    # `evaluate` with no --run takes ZOO_RUNS/<recipe>/latest, as training writes it.
    runs = tmp_path / "elsewhere"
    (runs / "nmt").mkdir(parents=True)
    (runs / "nmt" / "latest").symlink_to(os.path.abspath(subword_run))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    hypotheses = os.path.join(subword_run, "hypotheses-test-greedy.txt")
    if os.path.exists(hypotheses):
        os.remove(hypotheses)
    env = {**os.environ, "ZOO_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "recipes", "evaluate", "nmt", "--beam", "1"],
        cwd=str(tmp_path), env={**env, "PYTHONPATH": repo}, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.exists(hypotheses)
