"""The nmt recipe: data, tokenisation, training, decoding consistency, resume, CLI errors."""

import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from recipes import nmt
from recipes.config import ConfigError, apply_overrides, from_words
from recipes.nmt.inference import Translator
from tests.conftest import TINY_NMT
from zoo import decoding, text
from zoo.data import num2words_corpus, tsv
from zoo.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


# -- data ------------------------------------------------------------------------------------


def test_corpus_is_deterministic_disjoint_and_long():
    a = num2words_corpus.make_corpus(1500, 100, 200, seed=3)
    b = num2words_corpus.make_corpus(1500, 100, 200, seed=3)
    assert a == b
    sources = [{s for s, _ in split} for split in (a.train, a.validation, a.test)]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2])
    assert not (sources[1] & sources[2])
    lengths = [len(s.split()) for s, _ in a.train]
    assert min(lengths) == 1 and max(lengths) > 60
    assert num2words_corpus.make_corpus(50, 10, 10, seed=4) != num2words_corpus.make_corpus(
        50, 10, 10, seed=5
    )


def test_corpus_other_language_pairs():
    c = num2words_corpus.make_corpus(50, 5, 5, source_lang="de", target_lang="es")
    assert all(s and t for s, t in c.train)
    c = num2words_corpus.make_corpus(30, 5, 5, source_lang="en", target_lang="ja")
    assert all(t for _, t in c.train)  # a language with no connective words still works
    with pytest.raises(DataError, match="no language 'xx'.*choose one of"):
        num2words_corpus.make_corpus(10, source_lang="xx")


def test_tokenize_detokenize_round_trip():
    pairs = num2words_corpus.make_corpus(200, 10, 10, seed=1).train
    for sentence in [t for _, t in pairs[:50]] + [s for s, _ in pairs[:50]]:
        tokens = text.python_tokens([sentence])[0]
        assert tokens == sentence.split()
    tokens = text.tokenize(tf.constant(["Hello, World! C'est quatre-vingt-deux."]))
    assert tokens.to_list()[0] == [b"hello", b",", b"world", b"!", b"c'est", b"quatre-vingt-deux", b"."]
    out = text.detokenize(tokens).numpy()[0].decode()
    assert out == "hello, world! c'est quatre-vingt-deux."


def test_tokenizer_survives_invalid_utf8_and_control_characters():
    out = text.tokenize(tf.constant([b"ab\xffcd \x00 ok", b""])).to_list()
    assert out[0][-1] == b"ok" and out[1] == []


def test_vocabulary_build_save_load_and_unknown(tmp_path):
    vocab = text.Vocabulary.build([["b", "a", "b"], ["c"]])
    assert vocab.tokens[:4] == list(text.SPECIAL_TOKENS) and vocab.tokens[4] == "b"
    path = tmp_path / "v.txt"
    vocab.save(str(path))
    again = text.Vocabulary.load(str(path))
    assert again.tokens == vocab.tokens
    ids = again.encode(tf.constant(["b zzz a"]), add_start_end=True).to_list()[0]
    assert ids == [text.START_ID, 4, text.UNK_ID, vocab.tokens.index("a"), text.END_ID]
    (tmp_path / "bad.txt").write_text("x\ny\n")
    with pytest.raises(DataError, match="not a vocabulary file"):
        text.Vocabulary.load(str(tmp_path / "bad.txt"))


def test_tsv_loader_counts_malformed_lines(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(
        b"hello\tbonjour\n"
        b"no tab here\n"
        b"\tempty source\n"
        b"bad \xff utf8\tx\n"
        b"nul \x00 byte\ty\n"
        + b"long" * 5000 + b"\tz\n"
        b"\n"
        b"cat\tchat\tCC-BY attribution\n"
    )
    pairs, report = tsv.read_tsv(str(path))
    assert pairs == [("hello", "bonjour"), ("cat", "chat")]
    assert report.kept == 2 and report.skipped_count == 5
    summary = report.summary()
    for reason in ("without a tab", "empty side", "invalid UTF-8", "NUL", "too long"):
        assert reason in summary


@pytest.mark.parametrize(
    "content, message",
    [(b"", "has no source<TAB>target pairs"), (b"just text\nmore text\n", "without a tab")],
)
def test_tsv_loader_rejects_empty_or_all_malformed_files(tmp_path, content, message):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        tsv.read_tsv(str(path))


def test_tsv_loader_missing_file_and_split(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        tsv.read_tsv(str(tmp_path / "nope.tsv"))
    pairs = [(f"s{i}", f"t{i}") for i in range(1000)]
    a = tsv.split_pairs(pairs, seed=1)
    assert a == tsv.split_pairs(pairs, seed=1)
    assert sum(map(len, a)) == 1000 and 50 < len(a[2]) < 150
    assert not ({s for s, _ in a[0]} & {s for s, _ in a[2]})


def test_batches_are_bucketed_and_reproducible():
    rng = np.random.default_rng(0)
    src = [rng.integers(4, 20, rng.integers(1, 30)) for _ in range(300)]
    tgt = [np.concatenate([[2], s, [3]]) for s in src]
    a = list(nmt.batches(src, tgt, 16, seed=0, epoch=1))
    b = list(nmt.batches(src, tgt, 16, seed=0, epoch=1))
    c = list(nmt.batches(src, tgt, 16, seed=0, epoch=2))
    assert all((x[1] == y[1]).all() for x, y in zip(a, b, strict=True))
    assert any(x[1].shape != y[1].shape or (x[1] != y[1]).any() for x, y in zip(a, c, strict=True))
    assert sum(x[1].shape[0] for x in a) == 300
    padding = sum((x[1] == 0).sum() for x in a) / sum(x[1].size for x in a)
    assert padding < 0.15  # length bucketing keeps padding low


# -- model and decoding ----------------------------------------------------------------------


def _tiny_model(attention="bahdanau", input_feeding=True):
    config = apply_overrides(
        nmt.NmtConfig(), {**TINY_NMT, "attention": attention, "input_feeding": input_feeding}
    )
    model = nmt.build_model(config, 30, 25)
    nmt.compile_model(model, config, steps_per_epoch=1000)
    return model


@pytest.mark.parametrize(
    "attention, input_feeding",
    [("bahdanau", True), ("luong_general", True), ("luong_dot", False), ("none", True)],
)
def test_training_steps_lower_the_loss(attention, input_feeding):
    model = _tiny_model(attention, input_feeding)
    rng = np.random.default_rng(0)
    x = {"source": rng.integers(4, 30, (8, 7)), "target_in": rng.integers(4, 25, (8, 6))}
    x["source"][:3, 4:] = 0  # padded sentences in the batch
    y = rng.integers(4, 25, (8, 6))
    first = model.train_on_batch(x, y)
    for _ in range(20):
        last = model.train_on_batch(x, y)
    assert np.isfinite(first[0]) and last[0] < first[0] * 0.9


@pytest.mark.parametrize("variational", [True, False])
def test_dropout_mask_per_sentence_or_per_position(variational):
    from zoo.seq2seq import Seq2Seq

    config = apply_overrides(
        nmt.NmtConfig(), {**TINY_NMT, "dropout": 0.5, "variational_dropout": variational}
    )
    model = nmt.build_model(config, 30, 25)
    ones = np.ones((4, 9, 16), "float32")
    for drop in (model.encoder.drop, model.decoder.drop):
        out = np.asarray(drop(ones, training=True))
        assert (out == 0).any() and (out == 2).any()  # rate 0.5: dropped, or scaled by 2
        # Variational: each sentence's mask is the same at every position.
        assert bool((out == out[:, :1]).all()) == variational
    source = np.array([[5, 6, 7, 0]], "int32")
    step_fn, state, constants = model.decoding_inputs(source)
    logits, _, _ = model.decoder.step(np.array([text.START_ID], "int32"), state, constants,
                                      training=True)
    assert logits.shape == (1, 25) and np.isfinite(logits).all()
    restored = Seq2Seq.from_config(model.get_config())
    assert restored.variational_dropout == variational
    assert restored.encoder.variational_dropout == restored.decoder.variational_dropout == variational


def test_sequence_call_matches_step_by_step_decoding():
    # The teacher-forced loop and the decoding step are the same computation, except that the
    # decoding step never proposes padding (id 0) or [START] (id 2).
    model = _tiny_model("bahdanau")
    rng = np.random.default_rng(1)
    source = rng.integers(4, 30, (3, 6)).astype("int32")
    source[1, 3:] = 0
    target_in = rng.integers(4, 25, (3, 5)).astype("int32")
    logits, weights = model.forward(source, target_in, training=False)
    step_fn, state, constants = model.decoding_inputs(source)
    for t in range(5):
        step_logits, state, step_weights = step_fn(target_in[:, t], state, constants)
        step_logits, expected = np.asarray(step_logits), np.array(logits[:, t])
        assert (step_logits[:, [text.PAD_ID, text.START_ID]] <= -1e8).all()
        expected[:, [text.PAD_ID, text.START_ID]] = step_logits[:, [text.PAD_ID, text.START_ID]]
        np.testing.assert_allclose(step_logits, expected, atol=1e-5)
        np.testing.assert_allclose(step_weights, weights[:, t], atol=1e-6)
    assert np.all(np.asarray(weights)[1, :, 3:] == 0)  # padding gets no attention


def test_beam_one_equals_greedy(tiny_nmt_run):
    translator = Translator.from_run(tiny_nmt_run)
    sources = [s for s, _ in nmt.load_pairs(translator.config)[2][:12]]
    ids = translator.source_vocab.encode(tf.constant(sources)).to_tensor().numpy()
    step_fn, state, constants = translator.model.decoding_inputs(ids)
    start = tf.fill([len(sources)], text.START_ID)
    greedy = decoding.greedy_search(step_fn, state, constants, start, text.END_ID, 30)
    beam = decoding.beam_search(step_fn, state, constants, start, text.END_ID, 30, beam_size=1)
    np.testing.assert_array_equal(greedy["tokens"], beam["tokens"][:, 0])
    np.testing.assert_allclose(greedy["attention"], beam["attention"][:, 0], atol=1e-7)
    wide = translator.translate(sources, beam=3, n_best=3)
    assert all(len(r.alternatives) == 2 for r in wide)
    assert all(r.score >= a.score for r in wide for a in r.alternatives)


@pytest.mark.parametrize("beam", [1, 3])
def test_sentence_alone_equals_sentence_in_padded_batch(tiny_nmt_run, beam):
    translator = Translator.from_run(tiny_nmt_run)
    sources = sorted({s for s, _ in nmt.load_pairs(translator.config)[2]}, key=len)
    batch = [sources[0], sources[-1], sources[len(sources) // 2], ""]
    together = translator.translate(batch, beam=beam)
    for sentence, joint in zip(batch, together, strict=True):
        alone = translator.translate([sentence], beam=beam)[0]
        assert alone.tokens == joint.tokens
        np.testing.assert_allclose(alone.attention, joint.attention, atol=1e-5)
        np.testing.assert_allclose(alone.score, joint.score, rtol=1e-5, atol=1e-5)


def test_attention_replaces_unknown_words(tiny_nmt_run):
    translator = Translator.from_run(tiny_nmt_run)
    out = translator.decode_ids(np.array([[5, 6, 7]], np.int32), beam=1)
    # Force an [UNK] output and check it is replaced by the attended source token.
    out["tokens"][0, 0, 0] = text.UNK_ID
    out["lengths"][0, 0] = max(1, int(out["lengths"][0, 0]))
    out["attention"][0, 0, 0] = [0.1, 0.7, 0.2]
    hyp = translator._hypothesis(out, 0, 0, ["aa", "bb", "cc"], replace_unk=True)
    assert hyp.tokens[0] == "bb"
    kept = translator._hypothesis(out, 0, 0, ["aa", "bb", "cc"], replace_unk=False)
    assert kept.tokens[0] == text.UNK


def test_evaluate_writes_metrics_by_length_and_plots(tiny_nmt_run):
    report = nmt.evaluate(tiny_nmt_run, beam=2, quiet=True)
    metrics = json.load(open(os.path.join(tiny_nmt_run, "metrics.json")))
    assert metrics["test_beam2"]["overall"]["count"] == TINY_NMT["test_size"]
    assert sum(b["count"] for b in report["by_length"].values()) == TINY_NMT["test_size"]
    assert 0.0 <= report["overall"]["bleu"] <= 100.0
    assert os.path.getsize(os.path.join(tiny_nmt_run, "attention-0.png")) > 1000
    for name in ("config.json", "model.keras", "source_vocab.txt", "target_vocab.txt"):
        assert os.path.exists(os.path.join(tiny_nmt_run, name))
    assert os.path.isdir(os.path.join(tiny_nmt_run, "logs"))


# -- config and command line -----------------------------------------------------------------


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown config key 'epoch'.*Did you mean 'epochs'"):
        from_words(nmt.NmtConfig, ["epoch=3"])
    with pytest.raises(ConfigError, match="epochs='three': expected int"):
        from_words(nmt.NmtConfig, ["epochs=three"])
    with pytest.raises(ConfigError, match="not a known attention.*luong_general"):
        from_words(nmt.NmtConfig, ["attention=luong"])
    with pytest.raises(ConfigError, match="no such file"):
        from_words(nmt.NmtConfig, ["data=/nonexistent/pairs.tsv"])
    with pytest.raises(ConfigError, match="expected key=value"):
        from_words(nmt.NmtConfig, ["epochs"])
    assert from_words(nmt.NmtConfig, ["input_feeding=false"]).input_feeding is False


def test_hp_file_overrides(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"hyperparameters": {"units": 64, "attention": "luong_dot"}}))
    config = from_words(nmt.NmtConfig, [f"hp={path}", "epochs=2"])
    assert (config.units, config.attention, config.epochs) == (64, "luong_dot", 2)
    path.write_text(json.dumps({"unitz": 64}))
    with pytest.raises(ConfigError, match="sets unitz, which the search does not tune"):
        from_words(nmt.NmtConfig, [f"hp={path}"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "nmtt"], "unknown recipe 'nmtt'; known recipes: nmt, captioning"),
        (["train", "nmt", "unitss=3"], "Did you mean 'units'"),
        (["train", "nmt", "epochs=1.5"], "expected int"),
        (["train", "nmt", "data=missing.tsv"], "data=missing.tsv: no such file"),
        (["evaluate", "nmt", "--run", "/nonexistent/run"], "no run at /nonexistent/run"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(argv, message, capsys):
    from recipes.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_subprocess_exit_code():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "recipes", "train", "nope"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown recipe 'nope'" in proc.stderr and "Traceback" not in proc.stderr


# -- resume and distribution -----------------------------------------------------------------


def _train_cmd(run_id, extra=()):
    words = [f"{k}={v}" for k, v in {**TINY_NMT, "epochs": 4, "train_size": 1500}.items()]
    return [sys.executable, "-m", "recipes", "train", "nmt", *words, f"run_id={run_id}", *extra]


def _env(root, **extra):
    return {**os.environ, "ZOO_RUNS": str(root), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


# Where each kill of the chain below cuts an epoch end (training's test-only hook
# ZOO_TEST_KILL_AT=POINT:EPOCH), and what the run folder holds afterwards.
KILLS = (
    # The checkpoint archive is written but not yet renamed: only its temporary file exists.
    ("checkpoint_unrenamed", 1),
    # The checkpoint (epoch 2, its state inside) is committed; train_state.json still says 1.
    ("after_checkpoint", 2),
    # best.weights.h5 is written too; train_state.json still says 2.
    ("after_best", 3),
    # Everything of the last epoch is written; model.keras and `finished` are not.
    ("after_state", 4),
)
# Our temporary names (`<name>.tmp-<pid>...`) and Keras's own temporary weights file.
TEMP_NAME = re.compile(r"\.tmp-\d+(\.|$)|^tmp[a-z0-9_]{8}$")


def _temporary_files(run_dir):
    return sorted(p.name for p in run_dir.iterdir() if TEMP_NAME.search(p.name))


def _checkpoint_iterations(path):
    import keras

    return int(keras.models.load_model(str(path), safe_mode=True).optimizer.iterations)


@pytest.mark.slow
def test_kill_at_each_write_of_an_epoch_end_then_resume(tmp_path):
    """SIGKILL at four points of epoch ends, one kill per run, each run the same command: every
    resume starts after the last committed checkpoint, so no epoch is trained twice (the
    optimizer's step count is exactly epochs x batches), the history and best epoch are right
    and no temporary file is left."""
    import signal

    run_dir = tmp_path / "nmt" / "killed"
    state_path = run_dir / "train_state.json"
    previous_epoch = 0
    for point, epoch in KILLS:
        run = subprocess.run(_train_cmd("killed"), cwd=REPO,
                             env=_env(tmp_path, ZOO_TEST_KILL_AT=f"{point}:{epoch}"),
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == -signal.SIGKILL, (point, run.stdout[-2000:], run.stderr[-2000:])
        assert f"killing myself at {point}:{epoch}" in run.stdout
        if previous_epoch:
            assert f"resuming {run_dir} after epoch {previous_epoch}" in run.stdout
        state = json.loads(state_path.read_text()) if state_path.exists() else None
        if point == "checkpoint_unrenamed":
            assert state is None and not (run_dir / "checkpoint.keras").exists()
            assert [n.split(".tmp-")[0] for n in _temporary_files(run_dir)] == ["checkpoint.keras"]
            previous_epoch = 0
        elif point in ("after_checkpoint", "after_best"):
            assert state["epoch"] == epoch - 1  # the state file lags the checkpoint by one
            previous_epoch = epoch
        else:
            assert state["epoch"] == epoch and not state.get("finished")
            previous_epoch = epoch
        if point != "checkpoint_unrenamed":
            assert _temporary_files(run_dir) == []
    done = subprocess.run(_train_cmd("killed"), cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {run_dir} after epoch 4" in done.stdout
    final = json.loads(state_path.read_text())
    assert final["finished"] and final["epoch"] == 4
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4]
    losses = [h["val_loss"] for h in final["history"]]
    assert final["best_epoch"] == 1 + losses.index(min(losses))
    assert final["best_val_loss"] == min(losses)
    steps = json.loads((run_dir / "data.json").read_text())["batches_per_epoch"]
    assert _checkpoint_iterations(run_dir / "checkpoint.keras") == 4 * steps
    assert _temporary_files(run_dir) == [] and (run_dir / "model.keras").exists()

    # Same seed, uninterrupted: the validation loss ends up close (dropout draws differ).
    clean = subprocess.run(_train_cmd("clean"), cwd=REPO, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]
    reference = json.loads((tmp_path / "nmt" / "clean" / "train_state.json").read_text())
    assert abs(reference["best_val_loss"] - final["best_val_loss"]) < 0.1 * reference["best_val_loss"]


@pytest.mark.slow
def test_multi_worker_training_on_loopback(tmp_path):
    """Two worker processes under MultiWorkerMirroredStrategy from TF_CONFIG train one model."""
    import socket

    ports = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        cmd = _train_cmd("multi")
        cmd = [c if not c.startswith("epochs=") else "epochs=2" for c in cmd]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=_env(tmp_path, TF_CONFIG=tf_config),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # A worker that fails leaves the other waiting on a collective: stop both then.
    deadline = time.time() + 400
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(1)
    for p in procs:
        if p.poll() is None:
            p.kill()
    outs = [p.communicate() for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    run_dir = tmp_path / "nmt" / "multi"
    state = json.loads((run_dir / "train_state.json").read_text())
    assert state["finished"] and state["epoch"] == 2
    assert (run_dir / "model.keras").exists()
    # The loss is averaged over the workers, not summed: it starts near ln(vocabulary size)
    # and falls below it (a loss left unscaled for the replicas would be doubled, above it).
    vocab = len((run_dir / "target_vocab.txt").read_text().splitlines())
    assert state["history"][0]["loss"] < math.log(vocab)
    assert state["history"][-1]["val_loss"] < state["history"][0]["loss"]
    # Both workers logged the same (globally reduced) validation losses.
    val_losses = [re.findall(r"val_loss: ([0-9.]+)", out) for out, _ in outs]
    assert val_losses[0] and val_losses[0] == val_losses[1]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".worker-")]
