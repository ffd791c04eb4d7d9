"""Item 1: zoo attention layers against Keras' own, forward + backward, with and without XLA."""

import keras
import numpy as np
import tensorflow as tf

from bench.timing import interleaved
from zoo.layers import BahdanauAttention, LuongAttention


class KerasAdditive(keras.layers.Layer):
    """The same math as BahdanauAttention from stock parts: Dense projections of q and k, then
    `keras.layers.AdditiveAttention` (its `scale` vector plays the part of `v`)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.wq = keras.layers.Dense(units, use_bias=False)
        self.wk = keras.layers.Dense(units)
        self.additive = keras.layers.AdditiveAttention()

    def call(self, query, value):
        return self.additive([self.wq(query), value, self.wk(value)])


def _step(call, weights_of, query, value, jit):
    @tf.function(jit_compile=jit)
    def step(q, v):
        with tf.GradientTape() as tape:
            tape.watch([q, v])
            loss = tf.reduce_sum(call(q, v))
        return tape.gradient(loss, [q, v] + weights_of())

    return lambda: [g.numpy() for g in step(query, value)][0]


def pairs(d):
    ours_luong = LuongAttention("dot")
    theirs_luong = keras.layers.Attention()
    ours_bahdanau = BahdanauAttention(d)
    theirs_bahdanau = KerasAdditive(d)
    return {
        "luong_dot": (
            (lambda q, v: ours_luong(q, v)[0], lambda: ours_luong.trainable_weights),
            (lambda q, v: theirs_luong([q, v]), lambda: theirs_luong.trainable_weights),
        ),
        "bahdanau": (
            (lambda q, v: ours_bahdanau(q, v)[0], lambda: ours_bahdanau.trainable_weights),
            (lambda q, v: theirs_bahdanau(q, v), lambda: theirs_bahdanau.trainable_weights),
        ),
    }


def run(batch=64, tq=32, tv=64, d=256, repeats=15, inner=3):
    rng = np.random.default_rng(0)
    query = tf.constant(rng.normal(size=(batch, tq, d)), tf.float32)
    value = tf.constant(rng.normal(size=(batch, tv, d)), tf.float32)
    results = []
    for name, ((ours, ours_w), (theirs, theirs_w)) in pairs(d).items():
        ours(query, value), theirs(query, value)  # build weights
        for jit in (False, True):
            times = interleaved(
                {
                    "ours": _step(ours, ours_w, query, value, jit),
                    "keras": _step(theirs, theirs_w, query, value, jit),
                },
                repeats=repeats,
                warmup=2,
                inner=inner,
            )
            results.append({
                "layer": name,
                "mode": "xla" if jit else "graph",
                "shape": f"B={batch} Tq={tq} Tv={tv} D={d}",
                "ours_ms": times["ours"] * 1e3,
                "keras_ms": times["keras"] * 1e3,
                "ratio": times["ours"] / times["keras"],
            })
            print(f"  {name} {'xla' if jit else 'graph'}: ours {times['ours'] * 1e3:.2f} ms, "
                  f"keras {times['keras'] * 1e3:.2f} ms, ratio {times['ours'] / times['keras']:.3f}")
    return results
