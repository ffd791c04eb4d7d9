"""The nmt model on real text beside what a user would pick instead (a plain Keras tutorial-style
translator, bench/reference_real.py), every figure a ratio measured in one run, A and B
interleaved (ABBA), medians after warm-up.

    python -m bench.real_text --data DIR --run RUN [--quick] [--out bench]

DIR holds train.tsv, valid.tsv and test.tsv (`source<TAB>target`); the English -> French Bible
corpus is rebuilt with `make data CORPUS=bible-en-fr` (into data/bible-en-fr). RUN is a trained
nmt run of the real-text configuration: `python -m recipes train nmt
config=configs/nmt-real-text.json data=data/bible-en-fr`. The run is exported (SavedModel,
TFLite float and dynamic-range int8) under bench/tmp/real-text-exports, never into the run.

Items: A the reference (trained for a fixed number of steps: speed does not depend on quality,
its BLEU is reported for context); B serving at batch 64 and batch-1 latency; C peak memory of
serving each artifact (a fresh process each) and artifact sizes, int8 BLEU beside float; D
decode time against source length and beam size with linear fits; E training throughput on the
same sentence pairs. Writes results-real-text.json and .md in --out.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings

from bench import export_stamp

HERE = os.path.dirname(os.path.abspath(__file__))
TMP = os.path.join(HERE, "tmp")

TARGETS = {
    "greedy_batch64": (">=", 4.0),
    "beam4_batch64": (">=", 1.5),
    "latency_saved_model": ("<=", 0.5),
    "latency_tflite": ("<=", 0.5),
}

# A child process that loads one artifact, translates the sentences given to it and prints its
# peak resident memory. VmHWM (/proc/self/status), not ru_maxrss: Linux carries ru_maxrss over
# fork and exec, so a child of this (large) bench process would report the parent's peak.
MEMORY_CHILD = r"""
import json, os, resource, sys
kind, path, sentences_file = sys.argv[1:4]
sentences = json.load(open(sentences_file, encoding="utf-8"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if kind == "tflite":
    from export.nmt import TFLiteTranslator
    lite = TFLiteTranslator(path)
    for s in sentences:
        lite.translate(s)
else:
    import tensorflow as tf
    if kind == "saved_model":
        import tensorflow_text  # noqa: F401 - the SentencePiece ops the SavedModel uses
    if kind != "baseline":
        loaded = tf.saved_model.load(path)
        texts = tf.constant(sentences)
        if kind == "saved_model":
            loaded.signatures["greedy"](text=texts)["translation"].numpy()
            loaded.signatures["serving_default"](text=texts)["translation"].numpy()
        else:
            loaded.signatures["translate"](texts=texts)["text"].numpy()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"peak_rss_mb": int(hwm[0].split()[1]) / 1024 if hwm else None,
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load_split(data_dir, name):
    path = os.path.join(data_dir, f"{name}.tsv")
    if not os.path.exists(path):
        raise SystemExit(f"error: {path} not found; --data needs a folder with train.tsv, "
                         "valid.tsv and test.tsv (make data CORPUS=bible-en-fr builds data/bible-en-fr)")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2 and parts[0].strip() and parts[1].strip():
                pairs.append((parts[0], parts[1]))
    return pairs


def load(now=None):
    return [round(x, 2) for x in os.getloadavg()]


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def export_run(run_dir, out):
    """Exports `run_dir` (SavedModel, TFLite float and int8) into `out` unless done already."""
    stamp = os.path.join(out, "exported-from.txt")
    stamp_text = export_stamp(run_dir)
    if os.path.exists(stamp) and open(stamp, encoding="utf-8").read() == stamp_text:
        return
    cmd = [sys.executable, "-m", "export", "nmt", "--run", run_dir, "--out", out, "--quantize"]
    print("  $ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(stamp, "w", encoding="utf-8") as f:
        f.write(stamp_text)


def _row(name, a_label, a, b_label, b, ratio, unit, target_key=None, **extra):
    row = {"item": name, "a": a_label, "a_value": a, "b": b_label, "b_value": b, "ratio": ratio,
           "unit": unit, "load_average": load(), **extra}
    if target_key:
        op, value = TARGETS[target_key]
        row["target"] = f"{op} {value:g}x"
        row["met"] = bool(ratio >= value if op == ">=" else ratio <= value)
    return row


def bleu(hypotheses, references):
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


# ---------------------------------------------------------------- A: the reference
def train_reference(train, test, config, steps, seconds, max_length, path, tiny):
    import keras

    from bench import reference_real

    keras.utils.set_random_seed(0)
    source_vec, target_vec = reference_real.vectorizers(train)
    emb, units = (16, 16) if tiny else (config["embedding_dim"], config["units"])
    model = reference_real.build(source_vec, target_vec, emb, units)
    done, secs = reference_real.train(model, source_vec, target_vec, train, batch_size=64,
                                      max_steps=steps, max_seconds=seconds)
    reference_real.save(model, source_vec, target_vec, path, max_length=max_length)
    return model, source_vec, target_vec, {
        "vocab_source": source_vec.vocabulary_size(), "vocab_target": target_vec.vocabulary_size(),
        "embedding_dim": emb, "units": units, "params": model.count_params(),
        "train_steps": done, "train_seconds": round(secs, 1), "batch_size": 64,
    }


# ---------------------------------------------------------------- B: serving
def serving(exports, reference_path, target_vec, pairs, batch, repeats, latency_repeats):
    """Rows of B. The reference, trained minutes, rarely emits [END] and decodes to its
    max_length: the rows with targets compare against it length-matched (`translate_upto`
    stopped at the length of each batch's longest reference translation, in its own words, +1
    for [END]: what a converged reference would decode); rows against it as trained follow."""
    import numpy as np
    import tensorflow as tf

    from bench.inference import latest_version
    from bench.timing import interleaved
    from export.nmt import TFLiteTranslator

    sentences = [s for s, _ in pairs]
    gold = [int(n) - 1 for n in np.sum(target_vec(tf.constant([t for _, t in pairs])).numpy() != 0, axis=1)]
    ours = tf.saved_model.load(latest_version(exports))
    greedy, beam = ours.signatures["greedy"], ours.signatures["serving_default"]
    loaded = tf.saved_model.load(reference_path)
    ref, upto = loaded.signatures["translate"], loaded.signatures["translate_upto"]
    lite = TFLiteTranslator(os.path.join(exports, "tflite", "nmt.tflite"))
    starts = list(range(0, len(sentences) - batch + 1, batch)) or [0]
    batches = [(tf.constant((sentences[i : i + batch] * batch)[:batch]),
                tf.constant(max((gold[i : i + batch] * batch)[:batch]), tf.int32)) for i in starts]
    calls = {
        "ours_greedy": lambda t: greedy(text=t[0])["translation"].numpy(),
        "ours_beam4": lambda t: beam(text=t[0])["translation"].numpy(),
        "reference_greedy": lambda t: ref(texts=t[0])["text"].numpy(),
        "reference_matched": lambda t: upto(texts=t[0], max_length=t[1])["text"].numpy(),
    }

    def cycling(fn, items):
        state = {"i": 0}

        def call():
            fn(items[state["i"] % len(items)])
            state["i"] += 1
        return call

    # Output lengths: how many decoder steps each runs per batch.
    lengths = {}
    for name, fn in calls.items():
        outs = [fn(t) for t in batches]
        words = [len(x.decode().split()) for out in outs for x in out]
        lengths[name] = {"mean_output_words": float(np.mean(words)), "mean_longest_output_words":
                         float(np.mean([max(len(x.decode().split()) for x in out) for out in outs]))}
    lengths["gold_longest_per_batch_reference_tokens"] = [int(t[1]) for t in batches]
    load_before = load()
    times = interleaved({k: cycling(fn, batches) for k, fn in calls.items()}, repeats=repeats, warmup=1)
    ones = [(tf.constant([s]), tf.constant(g, tf.int32)) for s, g in zip(sentences, gold, strict=True)]
    single = {
        "ours_greedy": cycling(lambda t: greedy(text=t[0])["translation"].numpy(), ones),
        "reference_greedy": cycling(lambda t: ref(texts=t[0])["text"].numpy(), ones),
        "reference_matched": cycling(lambda t: upto(texts=t[0], max_length=t[1])["text"].numpy(), ones),
        "tflite_greedy": cycling(lite.translate, sentences),
    }
    latency = interleaved(single, repeats=latency_repeats, warmup=3)
    per_s = {k: batch / v for k, v in times.items()}
    ms = {k: v * 1e3 for k, v in latency.items()}
    matched, raw = "reference greedy, length-matched", "reference greedy as trained (to max_length)"
    rows = [
        _row(f"B serving greedy, batch {batch}", "ours SavedModel greedy", per_s["ours_greedy"],
             matched, per_s["reference_matched"], per_s["ours_greedy"] / per_s["reference_matched"],
             "sentences/s", "greedy_batch64", load_before=load_before, output_lengths=lengths),
        _row(f"B serving beam 4, batch {batch}", "ours SavedModel beam 4", per_s["ours_beam4"],
             matched, per_s["reference_matched"], per_s["ours_beam4"] / per_s["reference_matched"],
             "sentences/s", "beam4_batch64", load_before=load_before),
        _row("B latency batch 1, greedy", "ours SavedModel", ms["ours_greedy"], matched,
             ms["reference_matched"], ms["ours_greedy"] / ms["reference_matched"], "ms",
             "latency_saved_model"),
        _row("B latency batch 1, greedy", "ours TFLite (LiteRT)", ms["tflite_greedy"], matched,
             ms["reference_matched"], ms["tflite_greedy"] / ms["reference_matched"], "ms",
             "latency_tflite"),
        _row(f"B serving greedy, batch {batch} (context)", "ours SavedModel greedy", per_s["ours_greedy"],
             raw, per_s["reference_greedy"], per_s["ours_greedy"] / per_s["reference_greedy"],
             "sentences/s"),
        _row("B latency batch 1, greedy (context)", "ours SavedModel", ms["ours_greedy"], raw,
             ms["reference_greedy"], ms["ours_greedy"] / ms["reference_greedy"], "ms"),
    ]
    return rows


# ---------------------------------------------------------------- C: memory and sizes
def memory(exports, reference_path, sentences, test, int8_sentences, quick=False):
    from export.nmt import TFLiteTranslator

    tflite = os.path.join(exports, "tflite", "nmt.tflite")
    int8 = os.path.join(exports, "tflite", "nmt.dynamic_range.tflite")
    from bench.inference import latest_version

    artifacts = {
        "baseline (python + tensorflow, nothing loaded)": ("baseline", ""),
        "ours SavedModel (greedy + beam 4, batch 64)": ("saved_model", latest_version(exports)),
        "reference SavedModel (greedy, batch 64)": ("reference", reference_path),
        "ours TFLite float (batch 1 x 64)": ("tflite", tflite),
        "ours TFLite int8 dynamic range (batch 1 x 64)": ("tflite", int8),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(sentences, f)
    rss = {}
    try:
        for label, (kind, path) in artifacts.items():
            if kind != "baseline" and not os.path.exists(path):
                continue
            if quick and label.startswith(("reference", "ours TFLite int8")):
                continue  # a fresh TensorFlow process each: seconds the smoke pass does without
            out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, kind, path, f.name],
                                 capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": os.getcwd()})
            if out.returncode:
                raise RuntimeError(f"serving {path} in a fresh process failed: "
                                   f"{out.stderr.strip().splitlines()[-1]}")
            rss[label] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    finally:
        os.unlink(f.name)
    sizes = {
        "ours SavedModel": _size(latest_version(exports)),
        "reference SavedModel": _size(reference_path),
        "ours TFLite float": _size(tflite),
    }
    if os.path.exists(int8):
        sizes["ours TFLite int8 dynamic range"] = _size(int8)
    quality = {}
    if os.path.exists(int8):
        pairs = test[:int8_sentences]
        refs = [t for _, t in pairs]
        for label, path in (("float", tflite), ("int8", int8)):
            lite = TFLiteTranslator(path)
            quality[label] = bleu([lite.translate(s)["translation"] for s, _ in pairs], refs)
    return {"peak_rss_mb": rss, "bytes": sizes, "tflite_bleu": quality,
            "tflite_bleu_sentences": int8_sentences, "load_average": load()}


# ---------------------------------------------------------------- D: cost growth
def _linear(x, y):
    import numpy as np

    slope, intercept = np.polyfit(x, y, 1)
    fitted = np.polyval([slope, intercept], x)
    ss_res = float(((np.asarray(y) - fitted) ** 2).sum())
    ss_tot = float(((np.asarray(y) - np.mean(y)) ** 2).sum()) or 1e-12
    return float(slope), float(intercept), 1 - ss_res / ss_tot


def growth(run_dir, test, lengths, beams, steps, repeats, batch=1):
    import numpy as np
    import tensorflow as tf

    from bench.scaling import decoder
    from bench.timing import interleaved
    from recipes.nmt.inference import Translator

    translator = Translator.from_run(run_dir)
    # Real subword ids: test sentences encoded and concatenated, cut to each length.
    stream = []
    for s, _ in test:
        stream += [int(i) for i in np.asarray(translator.source_vocab.encode(tf.constant([s]), False).to_list()[0])]
        if len(stream) >= max(lengths) * batch:
            break
    while len(stream) < max(lengths) * batch:
        stream += stream
    def source(n):
        return tf.constant(np.array(stream[: n * batch], np.int32).reshape(batch, n))
    greedy = decoder(translator.model, 1, steps)
    load_before = load()
    sources = {n: source(n) for n in lengths}
    by_length = interleaved({n: (lambda s=sources[n]: greedy(s).numpy()) for n in lengths},
                            repeats=repeats, warmup=1)
    beam_length = min(50, max(lengths))
    s = source(beam_length)
    runs = {b: decoder(translator.model, b, steps) for b in beams}
    by_beam = interleaved({b: (lambda r=runs[b]: r(s).numpy()) for b in beams}, repeats=repeats, warmup=1)
    ms_len = [by_length[n] * 1e3 for n in lengths]
    ms_beam = [by_beam[b] * 1e3 for b in beams]
    sl, il, rl = _linear(lengths, ms_len)
    sb, ib, rb = _linear(beams, ms_beam)
    return {
        "decode_steps": steps, "batch": batch, "source_lengths": list(lengths),
        "ms_by_source_length": ms_len, "ms_per_source_token": sl, "length_intercept_ms": il,
        "length_r2": rl, "beam_source_length": beam_length, "beams": list(beams),
        "ms_by_beam": ms_beam, "ms_per_beam": sb, "beam_intercept_ms": ib, "beam_r2": rb,
        "load_before": load_before, "load_average": load(),
    }


# ---------------------------------------------------------------- E: training throughput
def _pad(rows):
    import numpy as np

    out = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def training_throughput(data_dir, run_dir, config, ref_model, source_vec, target_vec, train, batch_count,
                        batch_size, repeats, tiny):
    import numpy as np

    from bench import reference_real
    from bench.timing import interleaved
    from recipes import nmt

    # The run's own vocabularies, the pairs read from --data (not the folder the run was trained from).
    cfg = nmt.NmtConfig(**{**config, "data": data_dir, "train": "", "valid": "", "test": ""})
    data = nmt.build_data(cfg, vocab_dir=run_dir)
    model = nmt.build_model(cfg, len(data.source_vocab), len(data.target_vocab))
    nmt.compile_model(model, cfg, 100)
    # The same sentence pairs for both: length-sorted groups spread over the length range.
    rng = random.Random(0)
    pool = sorted(rng.sample(train, min(len(train), batch_count * batch_size * 8)), key=lambda p: len(p[1]))
    groups = [pool[i : i + batch_size] for i in range(0, len(pool) - batch_size + 1, batch_size)]
    picks = np.linspace(0, len(groups) - 1, batch_count).round().astype(int)
    groups = [groups[i] for i in picks]
    ours_batches, ref_batches = [], []
    for group in groups:
        src, tgt = nmt.encode_pairs(group, data, cfg)
        target = _pad(tgt)
        ours_batches.append(({"source": _pad(src), "target_in": target[:, :-1]}, target[:, 1:]))
        ref_batches.append(reference_real.encode(source_vec, target_vec, group))
    ours_tokens = sum(int((y != 0).sum()) for _, y in ours_batches)
    ref_tokens = sum(int((np.asarray(y) != 0).sum()) for _, y in ref_batches)

    def epoch(m, bs):
        def run():
            for x, y in bs:
                m.train_on_batch(x, y)
        return run

    load_before = load()
    times = interleaved({"ours": epoch(model, ours_batches), "reference": epoch(ref_model, ref_batches)},
                        repeats=repeats, warmup=1)
    sentences = batch_count * batch_size
    return _row(
        f"E training, {batch_count} batches x {batch_size} sentence pairs (ratio: pairs/s)", "ours",
        ours_tokens / times["ours"], "reference", ref_tokens / times["reference"],
        times["reference"] / times["ours"], "target tok/s",
        ours_target_subwords=ours_tokens, reference_target_words=ref_tokens,
        ours_sentences_per_s=sentences / times["ours"],
        reference_sentences_per_s=sentences / times["reference"], load_before=load_before,
        ours_params=model.count_params(), reference_params=ref_model.count_params())


# ---------------------------------------------------------------- profile
def profile(run_dir, reference_model, source_vec, sentences, steps=20):
    """Where decode time goes, batch 64: encoder, one decoder step, the output projection alone
    (a [batch, units] x [units, vocabulary] matmul), for ours and the reference."""
    import tensorflow as tf

    from bench.scaling import decoder
    from bench.timing import interleaved
    from recipes.nmt.inference import Translator

    translator = Translator.from_run(run_dir)
    model = translator.model
    ids = translator.source_vocab.encode(tf.constant(sentences), False).to_tensor()
    ids = tf.cast(ids, tf.int32)

    @tf.function
    def ours_encode(s):
        _, state, constants = model.decoding_inputs(s)
        return tf.nest.flatten(constants)[0]

    ours_steps = decoder(model, 1, steps)
    words = source_vec(tf.constant(sentences))

    @tf.function
    def ref_encode(s):
        return reference_model.encoder(s)

    context = ref_encode(words)
    mask = words != 0
    dec = reference_model.decoder
    token = tf.ones([len(sentences), 1], tf.int64)
    state0 = tf.zeros([len(sentences), dec.units])

    @tf.function
    def ref_steps(context, mask):
        t, state = token, state0
        for _ in tf.range(steps):
            logits, state = dec(context, mask, t, state)
            t = tf.argmax(logits[:, -1:, :], -1)
        return t

    units = model.units
    h = tf.random.normal([len(sentences), units])
    w_ours = tf.random.normal([units, model.target_vocab_size])
    h_ref = tf.random.normal([len(sentences), dec.units])
    w_ref = tf.random.normal([dec.units, dec.output_layer.units])
    mm = tf.function(lambda a, w: tf.matmul(a, w))
    t = interleaved({
        "ours_encoder": lambda: ours_encode(ids).numpy(),
        "ours_steps": lambda: ours_steps(ids).numpy(),
        "ours_output_matmul": lambda: mm(h, w_ours).numpy(),
        "reference_encoder": lambda: ref_encode(words).numpy(),
        "reference_steps": lambda: ref_steps(context, mask).numpy(),
        "reference_output_matmul": lambda: mm(h_ref, w_ref).numpy(),
    }, repeats=5, warmup=1)
    ms = {k: v * 1e3 for k, v in t.items()}
    return {
        "batch": len(sentences), "steps": steps,
        "ours_encoder_ms": ms["ours_encoder"],
        "ours_step_ms": (ms["ours_steps"] - ms["ours_encoder"]) / steps,
        "ours_output_matmul_ms": ms["ours_output_matmul"],
        "ours_target_vocab": int(model.target_vocab_size),
        "reference_encoder_ms": ms["reference_encoder"],
        "reference_step_ms": ms["reference_steps"] / steps,
        "reference_output_matmul_ms": ms["reference_output_matmul"],
        "reference_target_vocab": int(dec.output_layer.units),
        "load_average": load(),
    }


# ---------------------------------------------------------------- report
def _status(row):
    if "met" not in row:
        return "-"
    return "met" if row["met"] else "**missed**"


def _num(x):
    return f"{x:,.1f}" if abs(x) < 100 else f"{x:,.0f}"


def markdown(r):
    m = r["machine"]
    lines = [
        f"Real text ({r['data']}): machine {m['cpu']}, {m['cores']} cores, TensorFlow "
        f"{m['tensorflow']}, Keras {m['keras']}, {m['date']}; load average before/after "
        f"{m['load_average_before']} / {m['load_average_after']} (a shared machine; each row "
        "gives the 1/5/15-min load when it finished)." + (" **Quick pass: not figures.**" if r.get("quick") else ""),
        "",
        f"Ours: {r['ours']['what']}. Reference: {r['reference']['what']}.",
        "",
        "| item | A | B | A vs B | target | status | load |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['item']} | {row['a']} {_num(row['a_value'])} {row['unit']} | "
            f"{row['b']} {_num(row['b_value'])} {row['unit']} | {row['ratio']:.2f}x | {row.get('target', '-')} | "
            f"{_status(row)} | {row['load_average'][0]} |")
    lengths = next((row["output_lengths"] for row in r["rows"] if "output_lengths" in row), None)
    if lengths:
        raw = lengths["reference_greedy"]
        lines += ["", "Rows with targets compare against the reference length-matched: its `translate_upto` "
                  "signature stops each batch at the length of its longest reference translation (in the "
                  f"reference's words, +1 for [END]; {lengths['gold_longest_per_batch_reference_tokens']} "
                  "for the batches here), what a converged reference would decode. As trained (minutes), "
                  f"it seldom emits [END]: {raw['mean_output_words']:.0f} words per sentence on average, "
                  f"longest {raw['mean_longest_output_words']:.0f} per batch (ours: "
                  f"{lengths['ours_greedy']['mean_output_words']:.0f} and "
                  f"{lengths['ours_greedy']['mean_longest_output_words']:.0f}); the (context) rows show it so."]
    c = r.get("memory")
    if c:
        lines += ["", "Peak RSS serving each artifact (a fresh process each, VmHWM; ru_maxrss would carry the parent bench process's peak over fork): "
                  + "; ".join(f"{k} {v:,.0f} MB" for k, v in c["peak_rss_mb"].items()) + "."]
        lines.append("Artifact sizes: " + "; ".join(f"{k} {v / 1e6:.2f} MB" for k, v in c["bytes"].items()) + ".")
        if c["tflite_bleu"]:
            lines.append(f"TFLite BLEU on the first {c['tflite_bleu_sentences']} test sentences (greedy, "
                         "sacreBLEU): " + ", ".join(f"{k} {v:.2f}" for k, v in c["tflite_bleu"].items()) + ".")
    d = r.get("growth")
    if d:
        lines += ["", f"Decode time (ours, greedy search core, batch {d['batch']}, {d['decode_steps']} "
                  f"steps, real subword ids) against source length {d['source_lengths']}: "
                  f"{', '.join(f'{x:.1f}' for x in d['ms_by_source_length'])} ms; linear fit "
                  f"{d['ms_per_source_token']:.3f} ms/token + {d['length_intercept_ms']:.1f} ms, "
                  f"R^2 {d['length_r2']:.3f}. Against beam {d['beams']} ({d['beam_source_length']} "
                  f"source tokens): {', '.join(f'{x:.1f}' for x in d['ms_by_beam'])} ms; linear fit "
                  f"{d['ms_per_beam']:.2f} ms/beam + {d['beam_intercept_ms']:.1f} ms, R^2 "
                  f"{d['beam_r2']:.3f}. {d['verdict']}"]
    p = r.get("profile")
    if p:
        lines += ["", f"Where decode time goes (batch {p['batch']}, interleaved): ours encoder "
                  f"{p['ours_encoder_ms']:.1f} ms, decoder step {p['ours_step_ms']:.2f} ms (of which the "
                  f"output matmul alone, {p['ours_target_vocab']} subwords: {p['ours_output_matmul_ms']:.2f} ms); "
                  f"reference encoder {p['reference_encoder_ms']:.1f} ms, decoder step "
                  f"{p['reference_step_ms']:.2f} ms (output matmul, {p['reference_target_vocab']} words: "
                  f"{p['reference_output_matmul_ms']:.2f} ms)."]
    for note in r.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def run(data_dir, run_dir, quick=False, out=HERE):
    import tensorflow as tf

    from bench import timing

    warnings.filterwarnings("ignore", message=".*does not support masking.*")
    tf.get_logger().setLevel("ERROR")
    t_start = time.time()
    results = {"machine": timing.machine(), "quick": quick, "data": data_dir, "run": run_dir}
    results["machine"]["load_average_before"] = results["machine"].pop("load_average")
    if not os.path.exists(os.path.join(run_dir, "model.keras")):
        raise SystemExit(f"error: {run_dir} has no model.keras; --run needs a trained nmt run "
                         "(python -m recipes train nmt config=configs/nmt-real-text.json data=DIR)")
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    load_split(data_dir, "valid")
    metrics_path = os.path.join(run_dir, "metrics.json")
    ours_bleu = None
    if os.path.exists(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
            metrics = json.load(f)
        ours_bleu = next((v for k, v in _flatten(metrics) if "sacrebleu" in k.lower() and "bleu" in k.lower()), None)

    stages, last = {}, [None, time.time()]

    def stage(name):  # seconds per item, in the results: where a run's wall time went
        if last[0]:
            stages[last[0]] = round(time.time() - last[1], 1)
        last[:] = [name, time.time()]
        if name:
            print(f"== {name}", flush=True)

    tmp = os.path.join(TMP, "real-text-quick" if quick else "real-text")
    exports = os.path.join(tmp, "exports")
    os.makedirs(exports, exist_ok=True)
    stage("export of the run")
    export_run(run_dir, exports)

    n = 16 if quick else 256
    sentences = [s for s, _ in test[:n]]
    stage("A. reference: train and export")
    reference_path = os.path.join(tmp, "reference")
    max_length = 40 if quick else config.get("max_target_length", 200)
    ref_model, source_vec, target_vec, ref_info = train_reference(
        train, test, config, steps=3 if quick else 300, seconds=None if quick else 300,
        max_length=max_length, path=reference_path, tiny=quick)
    ref = tf.saved_model.load(reference_path).signatures["translate"]
    bleu_pairs = test[: 16 if quick else 200]
    hyps = [x.decode() for x in ref(texts=tf.constant([s for s, _ in bleu_pairs]))["text"].numpy()]
    ref_info["bleu_lowercased_first_n_test"] = bleu(hyps, [t.lower() for _, t in bleu_pairs])
    ref_info["bleu_sentences"] = len(bleu_pairs)
    ref_info["max_length"] = max_length
    results["reference"] = {**ref_info, "what": (
        f"bench/reference_real.py, GRU encoder/decoder + MultiHeadAttention, emb/units "
        f"{ref_info['embedding_dim']}/{ref_info['units']}, whole words "
        f"({ref_info['vocab_source']} / {ref_info['vocab_target']} ids), {ref_info['params']:,} "
        f"parameters, trained {ref_info['train_steps']} steps x 64 ({ref_info['train_seconds']} s); "
        f"BLEU {ref_info['bleu_lowercased_first_n_test']:.2f} (lowercased, first "
        f"{len(bleu_pairs)} test sentences) for context")}
    results["ours"] = {"bleu": ours_bleu, "what": (
        f"{run_dir} ({config.get('tokenizer')} {config.get('vocab_size')}, emb/units "
        f"{config.get('embedding_dim')}/{config.get('units')}, {config.get('attention')}"
        + (f"; test sacreBLEU {ours_bleu:.2f}" if isinstance(ours_bleu, (int, float)) else "") + ")")}
    rows = []

    stage("E. training throughput")
    rows.append(training_throughput(data_dir, run_dir, config, ref_model, source_vec, target_vec, train,
                                    batch_count=2 if quick else 16, batch_size=8 if quick else 85,
                                    repeats=1 if quick else 3, tiny=quick))
    stage("B. serving")
    rows += serving(exports, reference_path, target_vec, test[:n], batch=8 if quick else 64,
                    repeats=1 if quick else 5, latency_repeats=2 if quick else 32)
    results["rows"] = rows
    for row in rows:
        print(f"  {row['item']}: {row['a']} {row['a_value']:.1f}, {row['b']} {row['b_value']:.1f}, "
              f"{row['ratio']:.2f}x {row.get('target', '')} load {row['load_average']}", flush=True)

    stage("C. memory and sizes")
    results["memory"] = memory(exports, reference_path, sentences[: 8 if quick else 64], test,
                               int8_sentences=4 if quick else 200, quick=quick)
    stage("D. cost growth")
    d = growth(run_dir, test, lengths=(10, 20) if quick else (10, 25, 50, 75, 100, 150),
               beams=(1, 2) if quick else (1, 2, 4, 6, 8), steps=4 if quick else 40,
               repeats=1 if quick else 5)
    d["verdict"] = ("Linear in both (R^2 >= 0.98)." if min(d["length_r2"], d["beam_r2"]) >= 0.98 else
                    f"Not cleanly linear (R^2 {d['length_r2']:.3f} by length, {d['beam_r2']:.3f} by beam): "
                    "see the points.")
    results["growth"] = d
    if not quick:  # where decode time goes; seconds
        stage("profile")
        results["profile"] = profile(run_dir, ref_model, source_vec, sentences[: 8 if quick else 64],
                                     steps=3 if quick else 20)
    results["notes"] = [
        "Time to quality (wall time to the reference's final validation BLEU) is measured by "
        "`python -m bench.time_to_quality` (both systems trained from scratch, about an hour; "
        "bench/results-time-to-quality.md); item E here compares per-step throughput only.",
    ]
    stage(None)
    results["stage_seconds"] = stages
    results["machine"]["load_average_after"] = load()
    results["wall_seconds"] = round(time.time() - t_start, 1)
    write(results, out)
    return results


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def write(results, out):
    """results-real-text.json and .md in `out`, each written atomically."""
    os.makedirs(out, exist_ok=True)
    text = {"results-real-text.json": json.dumps(results, indent=2, default=float),
            "results-real-text.md": markdown(results)}
    for name, content in text.items():
        path = os.path.join(out, name)
        with tempfile.NamedTemporaryFile("w", dir=out, delete=False, encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(f.name, 0o644)
        os.replace(f.name, path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.real_text", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train.tsv, valid.tsv, test.tsv")
    p.add_argument("--run", required=True, help="a trained nmt run folder")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke pass, not figures")
    p.add_argument("--out", default=HERE, help="where results-real-text.json/.md go")
    args = p.parse_args(argv)
    for name in ("train", "valid", "test"):
        if not os.path.exists(os.path.join(args.data, f"{name}.tsv")):
            p.error(f"--data {args.data} has no {name}.tsv; give a folder with train.tsv, valid.tsv "
                    "and test.tsv (make data CORPUS=bible-en-fr builds data/bible-en-fr)")
    if not os.path.exists(os.path.join(args.run, "model.keras")):
        p.error(f"--run {args.run} has no model.keras; give a trained nmt run folder")
    results = run(args.data, args.run, args.quick, args.out)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
