"""TensorFlow-op pieces every recipe's signatures share (SavedModel and TFLite): the search,
its outputs trimmed, the empty-batch guard, and an ExportArchive from a model and endpoints.

A recipe's own graph (tokenising text, resizing images, ...) lives in `export/<recipe>.py`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from zoo import decoding
from zoo import text as zoo_text


def archive(model, endpoints: dict, trackables=()) -> keras.export.ExportArchive:
    """A `keras.export.ExportArchive` tracking `model` (and `trackables`: lookup tables,
    tokenizers) with one endpoint per `name: (function, input_signature)`, in that order."""
    out = keras.export.ExportArchive()
    out.track(model)
    for trackable in trackables:
        out.track(trackable)
    for name, (function, input_signature) in endpoints.items():
        out.add_endpoint(name, function, input_signature=input_signature)
    return out


def search(decoding_inputs, batch_size, max_length, beam_size: int, length_penalty=0.0,
           coverage_penalty=0.0):
    """Greedy (`beam_size == 1`) or beam search from a model's `decoding_inputs(...)`; returns
    the best hypothesis per example: tokens `[B, T]`, lengths `[B]`, attention `[B, T, S]` and
    score `[B]`, as `zoo.decoding.greedy_search` does."""
    step_fn, state, constants = decoding_inputs
    start = tf.fill([batch_size], zoo_text.START_ID)
    if beam_size == 1:
        return decoding.greedy_search(step_fn, state, constants, start, zoo_text.END_ID, max_length)
    out = decoding.beam_search(
        step_fn, state, constants, start, zoo_text.END_ID, max_length,
        beam_size=beam_size, length_penalty=length_penalty,
        coverage_penalty=coverage_penalty, n_best=1,
    )
    return {k: out[k][:, 0] for k in ("tokens", "lengths", "attention", "score")}


def unless_empty(batch_size, run, empty_outputs):
    """`run()` for a batch of one or more, else `empty_outputs()` without running the model.

    An empty batch is a valid request. On CPUs where TensorFlow turns its oneDNN graph rewrites on
    (the default on many Intel and AMD CPUs), the rewritten batch-normalised convolution fails on
    a zero-sized batch, so an empty batch must never reach the model; on other CPUs the model is
    simply skipped. Both branches return the same structure and dtypes.
    """
    return tf.cond(batch_size > 0, run, empty_outputs)


def trim(out):
    """Cuts a search's outputs to the rows that mean something: each output token's plus the
    end token's where it was emitted. Returns `(ids [B, T_out], lengths [B], attention
    [B, T_out, S])`; `ids[b, lengths[b]]` is the end id when it was emitted, later ids are 0."""
    tokens, lengths = out["tokens"], out["lengths"]
    rows = tf.minimum(lengths + 1, tf.shape(tokens)[1])
    width = tf.reduce_max(tf.concat([rows, [0]], 0))
    return tokens[:, :width], lengths, out["attention"][:, :width]
