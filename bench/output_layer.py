"""The output layer's share of a training step, by vocabulary size.

    python -m bench.output_layer    (from the repository root)

Times `train_on_batch` of the real-text configuration's model (configs/nmt-real-text.json) on a
batch of 85 sentences of 36 source and 39 target tokens (the configuration's average batch),
and the output projection with its label-smoothed cross-entropy, forward and backward, on the
same batch; medians of 10 calls after 3 warm-up calls. Target vocabularies of 4,000 and 8,000
subwords and 22,466 words (the French side of bible-en-fr as whole words).
"""

import time

import keras
import numpy as np
import tensorflow as tf

from recipes import nmt
from recipes.config import from_words
from zoo.losses import MaskedTokenLosses


def main():
    rng = np.random.default_rng(0)
    B, S, T = 85, 36, 39
    for V in (4000, 8000, 22466):
        run(rng, B, S, T, V)


def run(rng, B, S, T, V):
    cfg = from_words(
        nmt.NmtConfig, ["config=configs/nmt-real-text.json", "data=tests/data/bible-en-fr"]
    )
    model = nmt.build_model(cfg, V, V)
    nmt.compile_model(model, cfg, 100)
    x = {
        "source": rng.integers(4, V, (B, S)).astype("int32"),
        "target_in": rng.integers(4, V, (B, T)).astype("int32"),
    }
    y = rng.integers(4, V, (B, T)).astype("int32")
    for _ in range(3):
        model.train_on_batch(x, y)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    dense = keras.layers.Dense(V)
    dense.build((None, 256))
    loss = MaskedTokenLosses(0.1)
    h = tf.constant(rng.normal(size=(B, T, 256)).astype("float32"))
    yt = tf.constant(y)

    @tf.function
    def out_step(h, yt):
        with tf.GradientTape() as tape:
            tape.watch(h)
            value = tf.reduce_mean(loss.call(yt, dense(h)))
        return tape.gradient(value, [h] + dense.trainable_variables)

    for _ in range(3):
        out_step(h, yt)
    ot = []
    for _ in range(10):
        t0 = time.perf_counter()
        [g.numpy() for g in out_step(h, yt)]
        ot.append(time.perf_counter() - t0)
    o = float(np.median(ot))
    print(
        f"vocab {V}: step {step * 1000:.0f} ms, output layer fwd+bwd {o * 1000:.0f} ms = {100 * o / step:.0f}% of the step"
    )


if __name__ == "__main__":
    main()
