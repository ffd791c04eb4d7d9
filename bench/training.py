"""Item 2: target tokens per second of a training step, the nmt model against a plain reference.

The reference is written the way Keras' NMT tutorials write it: a bidirectional GRU encoder, a
GRU decoder over the whole target, `keras.layers.MultiHeadAttention` cross-attention (one head)
with a residual and layer norm, and a Dense vocabulary projection; same embedding size, same
units, same optimizer, same loss, same batches.
"""

import os

import keras
import numpy as np

from bench.timing import interleaved
from recipes import nmt
from zoo.losses import masked_loss


class ReferenceSeq2Seq(keras.Model):
    def __init__(self, source_vocab_size, target_vocab_size, embedding_dim, units, **kwargs):
        super().__init__(**kwargs)
        self.source_embedding = keras.layers.Embedding(source_vocab_size, embedding_dim, mask_zero=True)
        self.encoder = keras.layers.Bidirectional(
            keras.layers.GRU(units, return_sequences=True), merge_mode="sum"
        )
        self.target_embedding = keras.layers.Embedding(target_vocab_size, embedding_dim, mask_zero=True)
        self.decoder = keras.layers.GRU(units, return_sequences=True)
        self.cross_attention = keras.layers.MultiHeadAttention(num_heads=1, key_dim=units)
        self.add = keras.layers.Add()
        self.norm = keras.layers.LayerNormalization()
        self.output_projection = keras.layers.Dense(target_vocab_size)

    def call(self, inputs):
        source = self.source_embedding(inputs["source"])
        memory = self.encoder(source)
        x = self.decoder(self.target_embedding(inputs["target_in"]))
        attended = self.cross_attention(query=x, value=memory, key=memory)
        x = self.norm(self.add([x, attended]))
        return self.output_projection(x)


def setup(config, batch_count):
    """The nmt data for `config` and `batch_count` fixed, bucketed training batches."""
    data = nmt.build_data(config)
    src, tgt = nmt.encode_pairs(data.train, data, config)
    pad = 32 if config.jit_compile else 1
    batches = list(nmt.batches(src, tgt, config.batch_size, config.seed, 0, pad))
    # Spread over the length buckets: short and long batches alike.
    batches.sort(key=lambda b: b[1].shape[1])
    picks = np.linspace(0, len(batches) - 1, batch_count).round().astype(int)
    return data, [batches[i] for i in picks]


def models(config, data, steps):
    ours = nmt.build_model(config, len(data.source_vocab), len(data.target_vocab))
    nmt.compile_model(ours, config, steps)
    reference = ReferenceSeq2Seq(
        len(data.source_vocab), len(data.target_vocab), config.embedding_dim, config.units
    )
    reference.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm),
        loss=masked_loss,
        jit_compile=config.jit_compile,
    )
    return ours, reference


def _epoch(model, batches):
    def run():
        for x, y in batches:
            model.train_on_batch(x, y)
    return run


# (mode, variant) rows. A variant is an attention name, the rest of the nmt defaults, plus
# optional "+" flags: "+feed" turns input feeding on (the decoder then steps its LSTM and its
# attention together, target position by position), "+positiondrop" draws a dropout mask per
# position instead of one per sentence (variational_dropout=false). The first row is the default
# model; Bahdanau with input feeding was the default before; the XLA pair shows what per-position
# dropout costs there (the random numbers dominate the compiled step on a CPU).
VARIANTS = (
    ("graph", "luong_dot"), ("graph", "bahdanau+feed"),
    ("xla", "luong_dot"), ("xla", "luong_dot+positiondrop"),
)
FLAGS = {"feed": {"input_feeding": True}, "positiondrop": {"variational_dropout": False}}


def _variant_config(config, variant):
    """`config` for a variant name `"<attention>[+flag...]"` (flags: `FLAGS`)."""
    attention, *flags = variant.split("+")
    changes = {"attention": attention}
    for flag in flags:
        changes.update(FLAGS[flag])
    return nmt.NmtConfig(**{**config.__dict__, **changes})


def forward_macs(config, target_vocab_size, batches, reference=False):
    """Forward multiply-adds of the matrix products over `batches` (elementwise work, layer
    norm and the loss left out): ours for `config`, or the reference of the same size."""
    e, u, v = config.embedding_dim, config.units, target_vocab_size
    total = 0
    for x, y in batches:
        b, ts = x["source"].shape
        tt = y.shape[1]
        if reference:
            encoder = ts * (2 * (e + u) * 3 * u + 2 * u * u)  # BiGRU, key and value projections
            step = (e + u) * 3 * u + 2 * u * u + 2 * ts * u + u * v  # GRU, query/output, scores
        else:
            h = u // 2
            encoder = ts * 2 * (e + h) * 4 * h  # BiLSTM, u/2 per direction
            feed = u if config.input_feeding else 0
            step = (e + feed + u) * 4 * u + u * v
            if config.attention == "none":
                step += u * u
            else:
                step += 2 * u * u + 2 * ts * u  # combine [context; h], scores and weighted sum
                if config.attention in ("bahdanau", "luong_general", "luong_concat"):
                    step += u * u  # query (or general) projection
                if config.attention in ("bahdanau", "luong_concat"):
                    encoder += ts * u * u  # key projection
        total += b * (encoder + tt * step)
    return total


def run(config, batch_count=6, repeats=5, variants=VARIANTS):
    results = []
    for mode in dict.fromkeys(m for m, _ in variants):
        jit = mode == "xla"
        attentions = [a for m, a in variants if m == mode]
        cfg = nmt.NmtConfig(**{**config.__dict__, "jit_compile": jit})
        data, batches = setup(cfg, batch_count)
        tokens = sum(int((y != 0).sum()) for _, y in batches)
        vocab = len(data.target_vocab)
        reference_macs = forward_macs(cfg, vocab, batches, reference=True)
        fns, params, macs = {}, {}, {}
        for attention in attentions:
            variant = _variant_config(cfg, attention)
            ours, reference = models(variant, data, 100)
            fns[attention], params[attention] = _epoch(ours, batches), ours.count_params()
            macs[attention] = forward_macs(variant, vocab, batches)
        fns["reference"] = _epoch(reference, batches)
        # Interleaved; the warm-up compiles every batch shape (XLA: one per padded shape).
        times = interleaved(fns, repeats=repeats, warmup=1)
        for attention in attentions:
            row = {
                "mode": mode,
                "attention": attention,
                "batches": len(batches),
                "batch_size": cfg.batch_size,
                "target_tokens": tokens,
                "ours_tokens_per_s": tokens / times[attention],
                "reference_tokens_per_s": tokens / times["reference"],
                "ratio": times["reference"] / times[attention],
                "ours_params": params[attention],
                "reference_params": reference.count_params(),
                # How much less arithmetic ours does: the speed-up a step bound by its
                # matrix products, run as efficiently as the reference's, would show.
                "macs_ratio": reference_macs / macs[attention],
            }
            results.append(row)
            print(f"  training {mode} {attention}: ours {row['ours_tokens_per_s']:.0f} tok/s, "
                  f"reference {row['reference_tokens_per_s']:.0f} tok/s, "
                  f"speed-up {row['ratio']:.2f}x (multiply-adds: reference / ours "
                  f"{row['macs_ratio']:.2f})")
    return results


# Parts of the model, told apart by the op names TensorFlow gives them (first match wins).
PARTS = (
    ("dropout", lambda name: "dropout" in name),
    ("encoder LSTM loops", lambda name: "encoder" in name and "while" in name),
    ("decoder LSTM/step loop", lambda name: "decoder" in name and "while" in name),
    ("loss", lambda name: "loss" in name),
    ("vocabulary projection", lambda name: "/output" in name),
    ("optimizer", lambda name: "adam" in name.lower() or "clip" in name.lower()),
)


def _op_stats(logdir):
    """Per-op rows `{type, operation, self_us, count}` from a TensorFlow profiler trace."""
    import glob
    import json

    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    data, _ = plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    table = json.loads(data)[0]
    cols = [c["id"] for c in table["cols"]]
    rows = [dict(zip(cols, [c["v"] if c else None for c in r["c"]], strict=True)) for r in table["rows"]]
    return [{"type": r["type"], "operation": r["operation"], "self_us": r["total_self_time"],
             "count": r["occurrences"]} for r in rows if r["type"] != "IDLE"]


def profile(config, path, batch_count=4, rounds=2):
    """TensorFlow profiler trace of our training step (graph mode, after tracing): op time by
    op type and by part of the model, written to `path`; returns the top parts' shares."""
    import collections
    import tempfile

    import tensorflow as tf

    data, batches = setup(config, batch_count)
    ours, _ = models(config, data, 100)
    step = _epoch(ours, batches)
    step()  # trace outside the profile
    with tempfile.TemporaryDirectory(prefix="zoo-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(rounds):
            step()
        tf.profiler.experimental.stop()
        rows = _op_stats(logdir)
    total = sum(r["self_us"] for r in rows)
    by_type, by_part = collections.Counter(), collections.Counter()
    for r in rows:
        by_type[r["type"]] += r["self_us"]
        part = next((label for label, match in PARTS if match(r["operation"])), "other")
        by_part[part] += r["self_us"]
    lines = [f"TensorFlow profiler: {rounds} x {len(batches)} nmt train_on_batch calls (graph mode, "
             f"after tracing), {config.attention}, input_feeding={config.input_feeding}, "
             f"variational_dropout={config.variational_dropout}; busy op time {total / 1e3:.0f} ms "
             "(both cores; idle time left out)", "", "By part of the model:"]
    lines += [f"  {share / total:6.1%}  {part}" for part, share in by_part.most_common()]
    lines += ["", "By op type (top 15):"]
    lines += [f"  {share / total:6.1%}  {kind}" for kind, share in by_type.most_common(15)]
    lines += ["", "Single ops (top 15, self time):"]
    for r in sorted(rows, key=lambda r: -r["self_us"])[:15]:
        lines.append(f"  {r['self_us'] / total:6.1%}  x{r['count']:<5.0f} {r['type']:<12} {r['operation'][-90:]}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return [{"function": part, "share": share / total} for part, share in by_part.most_common(3)] + [
        {"function": f"op {kind}", "share": share / total} for kind, share in by_type.most_common(1)]
