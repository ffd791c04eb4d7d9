"""Time to quality on real text: the nmt real-text configuration against the plain Keras
reference (bench/reference_real.py), both trained from scratch on the same sentence pairs in one
process, in interleaved slices of training (ours, reference, reference, ours, ...: the load of a
shared machine falls on both), each scored on the same validation sentences every `--every`
seconds of its own training time. Scoring is not counted; data preparation (the tokenizer or
the vocabularies) is.

    python -m bench.time_to_quality --data DIR [--config configs/nmt-real-text.json]
        [--budget 2400] [--every 150] [--patience 4] [--valid 500] [--out bench]

The reference trains until `--budget` seconds or until its validation BLEU has not improved for
`--patience` scorings; its best validation BLEU is "the reference's final BLEU", reached at its
time to quality. Ours trains its configuration's epochs, as `python -m recipes train` would (the
same batches, learning-rate schedule and seed). The figure is ours' time to the reference's
final BLEU over the reference's own (target <= 0.5x); both times are the first scoring at or
above that BLEU, so each is resolved to `--every` seconds. Beside it, the same ratio at the
highest BLEU both systems reached (when ours stops below the reference's final BLEU).

BLEU here is lenient for both systems (NFKD, lower case, only a-z and . ? ! , kept, punctuation
spaced; sacreBLEU with tokenize="none"): the reference lowercases and drops accents when it
trains, so a cased score would measure that, not learning. Greedy decoding for both, each
sentence stopped at twice its source length plus 10 tokens (the reference: words). Writes
results-time-to-quality.json, .md and .png in --out.
"""

import argparse
import os
import re
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(os.path.dirname(HERE), "configs", "nmt-real-text.json")
# Defaults: each system's training budget, seconds between scorings, the reference's patience
# (scorings without a new best), validation sentences scored, seconds of a training slice.
BUDGET, EVERY, PATIENCE, VALID, SLICE = 2400.0, 150.0, 4, 500, 60.0
TARGET = 0.5  # ours' time to the reference's final BLEU, at most this fraction of its own


def lenient(text):
    text = unicodedata.normalize("NFKD", text).lower()
    text = re.sub(r"[^ a-z.?!,¿]", "", text)
    text = re.sub(r"([.?!,¿])", r" \1 ", text)
    return re.sub(r"\s+", " ", text).strip()


def lenient_bleu(hypotheses, references):
    import sacrebleu

    return float(sacrebleu.corpus_bleu([lenient(h) for h in hypotheses],
                                       [[lenient(r) for r in references]],
                                       tokenize="none", force=True).score)


class Ours:
    """The nmt recipe's model, data pipeline and optimizer for `config`, stepped one batch at a
    time."""

    name = "ours"

    def __init__(self, config, data_dir):
        from recipes.nmt import RECIPE
        from recipes.nmt.config import NmtConfig
        from recipes.nmt.inference import Translator

        t0 = time.perf_counter()
        cfg = NmtConfig(**{**config, "data": data_dir, "train": "", "valid": "", "test": ""})
        data = RECIPE.build_data(cfg)
        self.data = data  # the tokenizer resources the pipeline uses live as long as it
        train_ds, steps, _, _ = RECIPE.datasets(data, cfg)
        self.model = RECIPE.build_model(cfg, data)
        RECIPE.compile_model(self.model, cfg, steps)
        self.batches = iter(train_ds)
        self.steps, self.steps_per_epoch, self.total_steps = 0, steps, steps * cfg.epochs
        self.translator = Translator(self.model, data.source_vocab, data.target_vocab, cfg)
        self.setup_seconds = time.perf_counter() - t0
        self.describe = (f"{cfg.tokenizer} {cfg.vocab_size}, emb/units {cfg.embedding_dim}/{cfg.units}, "
                         f"{cfg.attention}, batches of ~{cfg.batch_tokens} tokens, {cfg.epochs} epochs "
                         f"({steps} batches each), {self.model.count_params():,} parameters")

    @property
    def epoch(self):
        return self.steps / self.steps_per_epoch

    def done(self):
        return self.steps >= self.total_steps

    def step(self):
        x, y = next(self.batches)
        self.model.train_on_batch(x, y)
        self.steps += 1

    def translate(self, sources):
        return [t.text for t in self.translator.translate(sources, beam=1)]


class Reference:
    """bench/reference_real.py as its module trains it: whole words, batches of 64 pairs,
    Adam 1e-3."""

    name = "reference"

    def __init__(self, pairs, embedding_dim, units, batch_size=64, seed=0):
        from bench import reference_real

        t0 = time.perf_counter()
        self.r, self.pairs = reference_real, pairs
        self.source_vec, self.target_vec = reference_real.vectorizers(pairs)
        self.model = reference_real.build(self.source_vec, self.target_vec, embedding_dim, units)
        self.batches = reference_real.batch_indices(pairs, batch_size, seed)
        self.steps_per_epoch = -(-len(pairs) // batch_size)
        self.steps = 0
        self.export = reference_real.Export(self.model, self.source_vec, self.target_vec)
        self.setup_seconds = time.perf_counter() - t0
        self.describe = (f"whole words {self.source_vec.vocabulary_size()} / "
                         f"{self.target_vec.vocabulary_size()}, emb/units {embedding_dim}/{units}, "
                         f"GRU + MultiHeadAttention, batches of {batch_size} pairs, "
                         f"{self.model.count_params():,} parameters")

    @property
    def epoch(self):
        return self.steps / self.steps_per_epoch

    def done(self):
        return False  # stopped by the budget or its patience

    def step(self):
        _, chunk = next(self.batches)
        x, y = self.r.encode(self.source_vec, self.target_vec, [self.pairs[i] for i in chunk])
        self.model.train_on_batch(x, y)
        self.steps += 1

    def translate(self, sources, batch_size=64):
        import tensorflow as tf

        order = sorted(range(len(sources)), key=lambda i: len(sources[i].split()))
        out = [""] * len(sources)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            limit = min(200, 2 * max(len(sources[i].split()) for i in idx) + 10)
            text = self.export.translate_upto(tf.constant([sources[i] for i in idx]),
                                              tf.constant(limit, tf.int32))["text"]
            for i, t in zip(idx, text.numpy(), strict=True):
                out[i] = t.decode("utf-8")
        return out


def first_at(curve, bleu):
    """Seconds of the first scoring at or above `bleu`, or None."""
    return next((p["seconds"] for p in curve if p["bleu"] >= bleu), None)


def race(sides, valid, budget, every, patience, slice_seconds=60.0, log=None):
    """Trains the sides in interleaved slices; returns {name: curve}. A curve is a list of
    {seconds (data preparation + training), steps, epoch, bleu, load}."""
    log = log or (lambda line: print(line, flush=True))
    sources, references = [s for s, _ in valid], [t for _, t in valid]
    clock = {s.name: 0.0 for s in sides}
    curves = {s.name: [] for s in sides}
    active = list(sides)
    turn = 0
    while active:
        order = active if turn % 2 == 0 else active[::-1]
        turn += 1
        for side in order:
            due = every * (len(curves[side.name]) + 1)
            t0 = time.perf_counter()
            while (time.perf_counter() - t0 < slice_seconds and not side.done()
                   and clock[side.name] + time.perf_counter() - t0 < min(due, budget)):
                side.step()
            clock[side.name] += time.perf_counter() - t0
            scored = clock[side.name] >= min(due, budget) or side.done()
            if not scored:
                continue
            t1 = time.perf_counter()
            bleu = lenient_bleu(side.translate(sources), references)
            curve = curves[side.name]
            curve.append({"seconds": round(side.setup_seconds + clock[side.name], 1),
                          "steps": side.steps, "epoch": round(side.epoch, 2),
                          "bleu": round(bleu, 2), "load": round(os.getloadavg()[0], 2)})
            log(f"  {side.name:9s} {curve[-1]['seconds']:7.0f} s  epoch {side.epoch:5.2f}  "
                f"validation BLEU {bleu:5.2f}  (scored in {time.perf_counter() - t1:.0f} s)")
            best = max(range(len(curve)), key=lambda i: curve[i]["bleu"])
            stale = len(curve) - 1 - best
            if side.done() or clock[side.name] >= budget or (patience and stale >= patience):
                active.remove(side)
    return curves


def summarise(curves):
    ref, ours = curves["reference"], curves["ours"]
    target = max(p["bleu"] for p in ref)
    ref_time = first_at(ref, target)
    ours_time = first_at(ours, target)
    ratio = ours_time / ref_time if ours_time is not None else None
    # The highest BLEU both reached, and when each first did: the race where neither stopped short.
    common = min(target, max(p["bleu"] for p in ours))
    common_ours, common_ref = first_at(ours, common), first_at(ref, common)
    return {"reference_final_bleu": target, "reference_seconds": ref_time,
            "ours_seconds": ours_time, "ours_best_bleu": max(p["bleu"] for p in ours),
            "ratio": None if ratio is None else round(ratio, 3), "target": f"<= {TARGET:g}x",
            "met": ratio is not None and ratio <= TARGET,
            "common_bleu": common, "common_ours_seconds": common_ours,
            "common_reference_seconds": common_ref,
            "common_ratio": round(common_ours / common_ref, 3)}


def markdown(r):
    s = r["summary"]
    ours = "never reached it" if s["ours_seconds"] is None else f"{s['ours_seconds']:,.0f} s"
    ratio = "-" if s["ratio"] is None else f"{s['ratio']:.2f}x"
    lines = [
        f"Time to quality ({r['data']}): machine {r['machine']['cpu']}, {r['machine']['cores']} cores, "
        f"TensorFlow {r['machine']['tensorflow']}, Keras {r['machine']['keras']}, {r['machine']['date']}; "
        f"load average before/after {r['machine']['load_average_before']} / {r['load_average_after']}.",
        "",
        f"Ours: {r['ours']}. Reference: {r['reference']}. Both from scratch, interleaved "
        f"{r['slice_seconds']:.0f}-second slices; scored every {r['every']:.0f} s of training on "
        f"{r['validation_sentences']} validation sentences, greedy, lenient BLEU. The reference "
        f"stops after {r['budget']:.0f} s or {r['patience']} scorings without a new best.",
        "",
        "| item | ours | reference | ours vs reference | target | status |",
        "|---|---:|---:|---:|---|---|",
        f"| time to the reference's final validation BLEU ({s['reference_final_bleu']:.2f}) | {ours} | "
        f"{s['reference_seconds']:,.0f} s | {ratio} | {s['target']} | "
        f"{'met' if s['met'] else '**missed**'} |",
        f"| time to the highest validation BLEU both reached ({s['common_bleu']:.2f}) | "
        f"{s['common_ours_seconds']:,.0f} s | {s['common_reference_seconds']:,.0f} s | "
        f"{s['common_ratio']:.2f}x | | |",
        f"| best validation BLEU | {s['ours_best_bleu']:.2f} | {s['reference_final_bleu']:.2f} | | | |",
        "",
        "| system | seconds | epoch | validation BLEU | load |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("ours", "reference"):
        for p in r["curves"][name]:
            lines.append(f"| {name} | {p['seconds']:,.0f} | {p['epoch']:.2f} | {p['bleu']:.2f} | {p['load']} |")
    return "\n".join(lines) + "\n"


def plot(r, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, style in (("ours", "o-"), ("reference", "s--")):
        curve = r["curves"][name]
        ax.plot([p["seconds"] / 60 for p in curve], [p["bleu"] for p in curve], style, label=name)
    ax.axhline(r["summary"]["reference_final_bleu"], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("minutes (data preparation + training; 2-core CPU)")
    ax.set_ylabel("validation BLEU (lenient, greedy)")
    ax.set_title("Time to quality on bible-en-fr")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(data_dir, config_path=DEFAULT_CONFIG, budget=BUDGET, every=EVERY, patience=PATIENCE,
        valid_n=VALID, out=HERE, slice_seconds=SLICE, tiny=False):
    import keras
    import tensorflow as tf

    from bench import timing
    from bench.real_text import load_split
    from recipes.config import load_config_file

    tf.get_logger().setLevel("ERROR")
    config = load_config_file(config_path)
    if tiny:  # a smoke pass: the same code on toy sizes
        config.update(embedding_dim=16, units=16, vocab_size=500, epochs=1)
    train, valid = load_split(data_dir, "train"), load_split(data_dir, "valid")[:valid_n]
    machine = timing.machine()
    machine["load_average_before"] = machine.pop("load_average")
    # One seed for both: seeding again would clear TensorFlow's kernel cache, and with it the
    # tokenizer resources of ours' input pipeline.
    keras.utils.set_random_seed(0)
    ours = Ours(config, data_dir)
    ref = Reference(train, config.get("embedding_dim", 256), config.get("units", 256))
    print(f"ours: {ours.describe}\nreference: {ref.describe}", flush=True)
    curves = race([ours, ref], valid, budget, every, patience, slice_seconds)
    results = {"machine": machine, "data": data_dir, "config": config_path, "ours": ours.describe,
               "reference": ref.describe, "budget": budget, "every": every, "patience": patience,
               "slice_seconds": slice_seconds, "validation_sentences": len(valid),
               "setup_seconds": {"ours": round(ours.setup_seconds, 1),
                                 "reference": round(ref.setup_seconds, 1)},
               "curves": curves, "summary": summarise(curves),
               "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    write(results, out)
    return results


def write(results, out):
    from recipes.config import write_json
    from recipes.training import write_text_durable

    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "results-time-to-quality.json"), results)
    write_text_durable(os.path.join(out, "results-time-to-quality.md"), markdown(results))
    plot(results, os.path.join(out, "results-time-to-quality.png"))


def main_item(data_dir, quick, out):
    """`python -m bench --only time_to_quality`: the defaults, or a toy smoke pass when quick."""
    if quick:
        return run(data_dir, budget=6, every=3, patience=1, valid_n=10, out=out, slice_seconds=2,
                   tiny=True)["summary"]
    return run(data_dir, out=out)["summary"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.time_to_quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with train.tsv and valid.tsv")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--budget", type=float, default=BUDGET,
                   help="training seconds, each system at most")
    p.add_argument("--every", type=float, default=EVERY,
                   help="seconds of training between scorings")
    p.add_argument("--patience", type=int, default=PATIENCE,
                   help="the reference stops after this many scorings without a new best")
    p.add_argument("--valid", type=int, default=VALID, help="validation sentences scored")
    p.add_argument("--slice", type=float, default=SLICE,
                   help="seconds each system trains before the other's turn")
    p.add_argument("--out", default=HERE)
    p.add_argument("--tiny", action="store_true", help="toy model sizes: a smoke pass, not figures")
    args = p.parse_args(argv)
    for name in ("train", "valid"):
        if not os.path.exists(os.path.join(args.data, f"{name}.tsv")):
            sys.exit(f"error: {args.data} has no {name}.tsv; make data CORPUS=bible-en-fr builds "
                     "data/bible-en-fr")
    r = run(args.data, args.config, args.budget, args.every, args.patience, args.valid, args.out,
            args.slice, args.tiny)
    print(markdown(r))


if __name__ == "__main__":
    main()
