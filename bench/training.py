"""Item 2: target tokens per second of a training step, the nmt model against a plain reference.

The reference is written the way Keras' NMT tutorials write it: a bidirectional GRU encoder, a
GRU decoder over the whole target, `keras.layers.MultiHeadAttention` cross-attention (one head)
with a residual and layer norm, and a Dense vocabulary projection; same embedding size, same
units, same optimizer, same loss, same batches.
"""

import cProfile
import io
import pstats

import keras
import numpy as np

from bench.timing import interleaved
from recipes import nmt
from zoo.models import masked_loss


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


# (mode, attention) rows: the default model, and the Luong dot form that is closest to the
# reference's dot-product cross-attention; "+nofeed": without input feeding, so the decoder's
# LSTM and its attention each run over the whole target at once, as the reference's do. XLA
# only for the default (it is slower on CPU).
VARIANTS = (
    ("graph", "bahdanau"), ("graph", "luong_dot"), ("graph", "luong_dot+nofeed"),
    ("xla", "bahdanau"),
)


def _variant_config(config, attention):
    """`config` for a variant name: `"<attention>"` or `"<attention>+nofeed"`."""
    name, _, extra = attention.partition("+")
    return nmt.NmtConfig(**{**config.__dict__, "attention": name,
                            "input_feeding": extra != "nofeed"})


def run(config, batch_count=6, repeats=5, variants=VARIANTS):
    results = []
    for mode in dict.fromkeys(m for m, _ in variants):
        jit = mode == "xla"
        attentions = [a for m, a in variants if m == mode]
        cfg = nmt.NmtConfig(**{**config.__dict__, "jit_compile": jit})
        data, batches = setup(cfg, batch_count)
        tokens = sum(int((y != 0).sum()) for _, y in batches)
        fns, params = {}, {}
        for attention in attentions:
            ours, reference = models(_variant_config(cfg, attention), data, 100)
            fns[attention], params[attention] = _epoch(ours, batches), ours.count_params()
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
            }
            results.append(row)
            print(f"  training {mode} {attention}: ours {row['ours_tokens_per_s']:.0f} tok/s, "
                  f"reference {row['reference_tokens_per_s']:.0f} tok/s, "
                  f"speed-up {row['ratio']:.2f}x")
    return results


def profile(config, path, batch_count=4, rounds=3):
    """cProfile of our (graph-mode) training step; the top entries go to `path`."""
    data, batches = setup(config, batch_count)
    ours, _ = models(config, data, 100)
    step = _epoch(ours, batches)
    step()  # trace outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        step()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    stats.print_stats(25)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"cProfile of {rounds} x {len(batches)} nmt train_on_batch calls (graph mode, "
                f"after tracing), sorted by own time\n")
        f.write(out.getvalue())
    total = stats.total_tt
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:3]
    return [{"function": f"{k[0].rsplit('/', 1)[-1]}:{k[2]}", "share": v[2] / total} for k, v in top]
