"""`python -m bench.decoder_steps`: where the nmt training step's time goes, per decoder step.

Forward + backward of the decoder alone over a fixed batch (the nmt defaults: batch 128,
units 128, embeddings 64), in five forms, interleaved in one process, against the reference's
decoder (a `keras.layers.GRU` over the target, then one `MultiHeadAttention` over all steps):

- `bahdanau, input feeding`: the default nmt decoder;
- `luong_dot, input feeding`;
- `no attention, input feeding`: the same loop without the attention (what the loop costs);
- `luong_dot, no input feeding` and `bahdanau, no input feeding`: the LSTM runs over the whole
  target at once (a `keras.layers.LSTM`) and the attention over all steps in one call.

Each row also gives the multiply-adds per target token of its matrix products (forward), so
compute and overhead can be told apart. Results go to `bench/decoder_steps.json` and print as a
table.
"""

import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _macs_per_token(form, units, embedding_dim, source_length, target_length):
    """Forward multiply-adds per target token (one batch row) of the matrix products, elementwise
    ops and the vocabulary projection (the same everywhere) left out; per-sentence work (key
    projections) is spread over the target's tokens."""
    u, e, ts = units, embedding_dim, source_length
    if form == "reference":
        # GRU: [x; h] against 3 gates; attention: query and output projections, key and value
        # projections of the source, scores and the weighted sum.
        return (e + u) * 3 * u + 2 * u * u + 2 * ts * u * u / target_length + 2 * ts * u
    feed = u if form.endswith(", input feeding") else 0
    lstm = (e + feed + u) * 4 * u
    if form.startswith("none"):
        return lstm + u * u  # combine: tanh(W h)
    combine = 2 * u * u  # tanh(W [context; h])
    if form.startswith("bahdanau"):
        attention = u * u + ts * u * u / target_length + 2 * ts * u  # W_q h, W_k k, v.tanh, sum
    else:
        attention = 2 * ts * u  # scores and weighted sum
    return lstm + combine + attention


def run(batch=128, source_length=33, target_length=32, units=128, embedding_dim=64, vocab=40,
        repeats=7):
    import keras
    import tensorflow as tf

    from bench.timing import interleaved
    from zoo.layers import BahdanauAttention, LuongAttention
    from zoo.layers.decoders import AttentiveLSTMDecoder

    rng = np.random.default_rng(0)
    target = tf.constant(rng.integers(1, vocab, (batch, target_length)), tf.int32)
    memory = tf.constant(rng.standard_normal((batch, source_length, units)), tf.float32)
    mask = tf.ones((batch, source_length), bool)
    state = (tf.zeros((batch, units)), tf.zeros((batch, units)))

    def ours(attention, input_feeding):
        decoder = AttentiveLSTMDecoder(vocab, units, embedding_dim, attention, 0.1, input_feeding)
        decoder.build((None, None), (None, None, units))

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(memory)  # the encoder's outputs: their gradient is computed too
                logits, _ = decoder(target, memory, mask, initial_state=state, training=True)
                loss = tf.reduce_mean(logits)
            return tape.gradient(loss, [*decoder.trainable_variables, memory])

        return step

    embedding = keras.layers.Embedding(vocab, embedding_dim)
    gru = keras.layers.GRU(units, return_sequences=True)
    cross = keras.layers.MultiHeadAttention(num_heads=1, key_dim=units)
    projection = keras.layers.Dense(vocab)

    @tf.function
    def reference():
        with tf.GradientTape() as tape:
            tape.watch(memory)
            x = gru(embedding(target))
            loss = tf.reduce_mean(projection(x + cross(query=x, value=memory, key=memory)))
        variables = [*embedding.weights, *gru.weights, *cross.weights, *projection.weights]
        return tape.gradient(loss, [*variables, memory])

    forms = {
        "bahdanau, input feeding": ours(BahdanauAttention(units), True),
        "luong_dot, input feeding": ours(LuongAttention("dot"), True),
        "none, input feeding": ours(None, True),
        "luong_dot, no input feeding": ours(LuongAttention("dot"), False),
        "bahdanau, no input feeding": ours(BahdanauAttention(units), False),
        "reference": reference,
    }
    times = interleaved(forms, repeats=repeats, warmup=2)
    rows = []
    for form, seconds in times.items():
        rows.append({
            "form": form,
            "ms_per_step": 1000 * seconds / target_length,
            "time_vs_reference": seconds / times["reference"],
            "forward_macs_per_token": _macs_per_token(
                form, units, embedding_dim, source_length, target_length
            ),
        })
    return {
        "batch": batch, "source_length": source_length, "target_length": target_length,
        "units": units, "embedding_dim": embedding_dim, "rows": rows,
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.decoder_steps", description=__doc__)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=os.path.join(HERE, "decoder_steps.json"))
    args = p.parse_args(argv)
    from bench.timing import machine

    result = {"machine": machine(), **run(repeats=args.repeats)}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print("| decoder form | ms per target step (fwd+bwd) | time vs reference | fwd MACs/token |")
    print("|---|---:|---:|---:|")
    for row in result["rows"]:
        print(f"| {row['form']} | {row['ms_per_step']:.2f} | {row['time_vs_reference']:.2f}x | "
              f"{row['forward_macs_per_token'] / 1e3:.0f}k |")


if __name__ == "__main__":
    main()
