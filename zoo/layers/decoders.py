"""The attentive LSTM decoder shared by translation and captioning.

One decoder step (Luong et al., 2015, with input feeding):

    x_t   = [embed(y_{t-1}); a_{t-1}]            (input feeding: the last attentional vector)
    h_t   = LSTM(x_t, h_{t-1})
    c_t, w_t = attention(h_t, memory)            (any `zoo.layers` attention; none for the baseline)
    c_t   = sigmoid(W_b h_t) * c_t               (optional "show, attend and tell" gate)
    a_t   = tanh(W_c [c_t; h_t])                 (a_t = tanh(W_c h_t) without attention)
    p(y_t) = softmax(W_o a_t)

Teacher-forced training runs this loop over the whole target; `step` runs one step for greedy
and beam search (`zoo.decoding`). Without input feeding the LSTM runs over the whole target at
once and attention over all steps in one batched call (additive attention's cost is the
attention itself: `(batch, T, Tv, units)` scores either way).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from zoo.layers.base_attention import project
from zoo.layers.encoders import sequence_noise_shape


@keras.saving.register_keras_serializable(package="zoo")
class AttentiveLSTMDecoder(keras.layers.Layer):
    """LSTM decoder attending over a memory (encoder outputs or image regions) at every step.

    Args:
        vocab_size: target vocabulary size (id 0 is padding).
        units: LSTM units; also the size of the attentional vector.
        embedding_dim: size of the target token embeddings.
        attention: a `zoo.layers` attention layer, or `None` for the bottleneck baseline that
            sees only the initial state.
        dropout: dropout on embeddings and attentional vectors, in training only.
        input_feeding: feed the previous attentional vector into the LSTM. Defaults to `True`.
        context_gate: gate the context with a learned scalar per step. Defaults to `False`.
        variational_dropout: one dropout mask per sentence and feature, shared by all its
            steps, instead of one per step (see `zoo.layers.encoders.BidirectionalLSTMEncoder`).
            Defaults to `False`.

    Call arguments:
        target_in: int `(batch_size, T)` previous tokens (START first).
        memory: `(batch_size, Tv, dim)` what to attend over.
        memory_mask: bool `(batch_size, Tv)`.
        initial_state: `(h, c)`, each `(batch_size, units)`.

    Returns:
        `(logits, weights)`: float32 `(batch_size, T, vocab_size)` and float32
        `(batch_size, T, Tv)` attention weights (`(batch_size, T, 0)` without attention).
    """

    def __init__(
        self,
        vocab_size,
        units=256,
        embedding_dim=128,
        attention=None,
        dropout=0.0,
        input_feeding=True,
        context_gate=False,
        variational_dropout=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(attention, dict):
            attention = keras.saving.deserialize_keras_object(attention)
        self.vocab_size = vocab_size
        self.units = units
        self.embedding_dim = embedding_dim
        self.attention = attention
        self.dropout = dropout
        self.input_feeding = input_feeding
        self.context_gate = context_gate
        self.variational_dropout = bool(variational_dropout)
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.rnn = keras.layers.LSTM(units, return_sequences=True, return_state=True, name="lstm")
        self.combine = keras.layers.Dense(units, activation="tanh", use_bias=False, name="combine")
        self.gate = keras.layers.Dense(1, activation="sigmoid", name="gate") if context_gate else None
        self.output_projection = keras.layers.Dense(vocab_size, dtype="float32", name="output")
        self.drop = keras.layers.Dropout(dropout, noise_shape=sequence_noise_shape(variational_dropout))

    def build(self, target_in_shape, memory_shape=None):
        # Named after call()'s arguments: Keras pairs a first call's shapes with build's by name.
        batch = target_in_shape[0]
        self.embedding.build(target_in_shape)
        feed = self.units if self.input_feeding else 0
        self.rnn.build((batch, None, self.embedding_dim + feed))
        dim = 0
        if self.attention is not None:
            if not self.attention.built:  # a decoder restored from its config has it built
                self.attention.build((batch, self.units), tuple(memory_shape))
            dim = memory_shape[-1]
        if self.gate is not None:
            self.gate.build((batch, self.units))
        self.combine.build((batch, self.units + dim))
        self.output_projection.build((batch, self.units))

    # -- pieces shared by the sequence call and the single step --------------------------------

    def prepare_memory(self, memory, memory_mask):
        """What every step needs from the memory, computed once per source: a tuple."""
        if self.attention is None:
            batch = ops.shape(memory)[0]
            return (ops.zeros((batch, 0, 1), self.compute_dtype),) * 2 + (
                ops.zeros((batch, 0), "bool"),
            )
        return memory, self.attention.project_key(memory), memory_mask

    def initial_state(self, h, c):
        """Decoder state from an initial LSTM state: `(h, c, attentional_vector)`."""
        return h, c, ops.zeros_like(h)

    def _attend(self, h, constants, training, combine_kernel=None, grouped=False):
        """`(attentional vector, attention weights)` for LSTM outputs `h`; `combine_kernel`: the
        combine layer's kernel already read and cast, to apply it without reading it again.
        `grouped`: `h` `(N, units)` holds `N / B` consecutive rows per memory row (a sentence's
        beam): they attend together, as one sentence's queries, so its memory is read once."""
        memory, keys, mask = constants
        if combine_kernel is None:
            combine = self.combine
        else:  # the combine Dense layer (tanh, no bias) on the given kernel
            combine = lambda x: ops.tanh(ops.matmul(x, combine_kernel))  # noqa: E731
        if self.attention is None:
            shape = ops.shape(h)[:-1]
            weights = ops.zeros(tuple(shape) + (0,), "float32")
            return combine(h), weights
        if grouped:
            queries = tf.reshape(h, tf.stack([tf.shape(memory)[0], -1, self.units]))
            context, weights = self.attention.attend(queries, memory, keys, mask=mask,
                                                     training=training)
            context = tf.reshape(context, tf.stack([-1, tf.shape(context)[-1]]))
            weights = tf.reshape(weights, tf.stack([-1, tf.shape(weights)[-1]]))
        else:
            context, weights = self.attention.attend(h, memory, keys, mask=mask,
                                                     training=training)
        if self.gate is not None:
            context = context * self.gate(h)
        context = ops.cast(context, h.dtype)
        return combine(ops.concatenate([context, h], axis=-1)), weights

    def _lstm_weights(self):
        """`(input_kernel, feed_recurrent_kernel, bias)` of the LSTM, in the compute dtype.

        The LSTM's input kernel is split: the embedding's share is applied to the whole target
        before the step loop (one large matmul), and the fed-back attentional vector's share is
        stacked on the recurrent kernel, so each step does a single matmul of `[a_{t-1}; h]`.
        The weights are the `keras.layers.LSTM`'s own, so the layout of saved models is unchanged.
        """
        cell = self.rnn.cell
        dtype = self.compute_dtype
        kernel = ops.cast(cell.kernel, dtype)
        recurrent = ops.cast(cell.recurrent_kernel, dtype)
        feed = kernel[self.embedding_dim :]
        return kernel[: self.embedding_dim], ops.concatenate([feed, recurrent], 0), ops.cast(
            cell.bias, dtype
        )

    @staticmethod
    def _lstm_update(z, c):
        """Keras' LSTM cell update from the summed pre-activations `z` (gates i, f, g, o)."""
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        return ops.sigmoid(o) * ops.tanh(c), c

    def step(self, ids, state, constants, training=False):
        """One decoding step: `(logits [N, V], new_state, weights [N, Tv])`."""
        h, c, feed = state
        x = self.embedding(ids)
        if self.input_feeding:
            x = ops.concatenate([x, ops.cast(feed, x.dtype)], axis=-1)
        # The cell itself, on its own weights: restacking them (as the teacher-forced loop does
        # once) would be redone at every decoding step.
        h, (h, c) = self.rnn.cell(x, (h, c), training=training)
        attentional, weights = self._attend(h, constants, training)
        # Through the sequence dropout as a one-step sequence: the same masks in both modes.
        dropped = self.drop(attentional[:, None], training=training)[:, 0] if training else attentional
        logits = self.output_projection(dropped)
        return logits, (h, c, attentional), weights

    def input_table(self):
        """Every target token's share of the LSTM's pre-activations, `embedding @ W_x + b`:
        `(vocab_size, 4 * units)` in the compute dtype, from the current weights (compute it
        again after training). With it, `inference_step(input_table=...)` gathers a token's row
        instead of multiplying its embedding by the input kernel at every step, so a step reads
        less of the LSTM's weights: about 14% off a one-sentence decode of the real-text run,
        whose steps are bound by reading weights. It is `vocab_size / embedding_dim` times the
        size of the kernel's embedding rows; an export stores it (`export.nmt`)."""
        dtype = self.compute_dtype
        kernel = ops.cast(self.rnn.cell.kernel, dtype)[: self.embedding_dim]
        return (ops.matmul(ops.cast(self.embedding.embeddings, dtype), kernel)
                + ops.cast(self.rnn.cell.bias, dtype))

    def inference_step(self, logit_bias=None, input_table=None, grouped=False):
        """`step(ids, state, constants)` for decoding, as `step(training=False)` computes it, with
        the weights read and restacked once, outside the decoding loop: the LSTM's kernels
        stacked for one matmul of `[x; a_{t-1}; h]`, and `logit_bias` (a `(vocab_size,)` vector,
        e.g. -1e9 on ids never to propose) folded into the output bias. The same numbers up to
        float rounding, in fewer ops a step, which is most of a step's time at small batches.
        With `input_table` (this decoder's `input_table()`), a step gathers its tokens' rows of
        it and multiplies only `[a_{t-1}; h]` by the rest of the kernels. With `grouped`, the
        step takes its constants once per sentence for `N / B` consecutive rows each (a
        sentence's beam; `zoo.decoding`'s grouped steps) and those rows attend together.
        """
        dtype = self.compute_dtype
        cell = self.rnn.cell
        kernel = ops.cast(cell.kernel, dtype)
        recurrent = ops.cast(cell.recurrent_kernel, dtype)
        if input_table is None:
            kernel = ops.concatenate([kernel, recurrent], axis=0)
            bias = ops.cast(cell.bias, dtype)
            table = ops.cast(self.embedding.embeddings, dtype)
        else:  # the embedding's share (bias included) is the table's
            kernel = ops.concatenate([kernel[self.embedding_dim :], recurrent], axis=0)
            table = ops.cast(input_table, dtype)
        combine = ops.cast(self.combine.kernel, dtype)
        out_kernel = ops.cast(self.output_projection.kernel, "float32")
        out_bias = ops.cast(self.output_projection.bias, "float32")
        if logit_bias is not None:
            out_bias = out_bias + ops.cast(logit_bias, "float32")

        def step(ids, state, constants):
            h, c, feed = state
            x = tf.gather(table, ids)
            parts = [tf.cast(feed, dtype), h] if self.input_feeding else [h]
            if input_table is None:
                z = tf.matmul(tf.concat([x, *parts], axis=-1), kernel) + bias
            else:
                z = x + tf.matmul(parts[0] if len(parts) == 1 else tf.concat(parts, -1), kernel)
            h, c = self._lstm_update(z, c)
            attentional, weights = self._attend(h, constants, False, combine, grouped)
            logits = tf.matmul(tf.cast(attentional, "float32"), out_kernel) + out_bias
            return logits, (h, c, attentional), weights

        step.grouped = grouped and self.attention is not None
        return step

    # -- teacher forcing ----------------------------------------------------------------------

    def call(self, target_in, memory, memory_mask=None, initial_state=None, training=None):
        if memory_mask is None:
            memory_mask = ops.ones(ops.shape(memory)[:2], "bool")
        constants = self.prepare_memory(memory, memory_mask)
        h0, c0 = initial_state
        x = self.drop(self.embedding(target_in), training=training)
        if not self.input_feeding:
            hs, _, _ = self.rnn(x, initial_state=[h0, c0], training=training)
            attentional, weights = self._attend(hs, constants, training)
        else:
            attentional, weights = self._teacher_forced_loop(x, (h0, c0), constants, training)
        logits = self.output_projection(self.drop(attentional, training=training))
        return logits, weights

    def _teacher_forced_loop(self, x, state, constants, training):
        # A plain tf.while_loop: keras.ops.scan requires each step's outputs to have the carry's
        # structure, and here a step emits the attentional vector and the attention weights.
        h0, c0 = state
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]
        w_x, w_fr, bias = self._lstm_weights()
        # The embeddings' share of every step's pre-activations, in one matmul before the loop.
        # Read back through a TensorArray: the gradient of slicing a captured tensor would be a
        # full-size tensor per step (quadratic in the target length); a TensorArray's is not.
        x_share = tf.transpose(project(x, w_x) + bias, (1, 0, 2))
        x_share = tf.TensorArray(x_share.dtype, size=steps).unstack(x_share)
        tv = tf.shape(constants[0])[1] if self.attention is not None else 0
        out_a = tf.TensorArray(self.compute_dtype, size=steps, element_shape=[None, self.units])
        out_w = tf.TensorArray("float32", size=steps, element_shape=[None, None])

        def body(t, h, c, feed, out_a, out_w):
            z = x_share.read(t) + tf.matmul(tf.concat([feed, h], axis=-1), w_fr)
            h, c = self._lstm_update(z, c)
            attentional, weights = self._attend(h, constants, training)
            return t + 1, h, c, attentional, out_a.write(t, attentional), out_w.write(t, weights)

        _, _, _, _, out_a, out_w = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (0, *self.initial_state(h0, c0), out_a, out_w),
            maximum_iterations=steps,
        )
        attentional = tf.transpose(out_a.stack(), (1, 0, 2))
        weights = tf.transpose(out_w.stack(), (1, 0, 2))
        return attentional, tf.reshape(weights, (batch, steps, tv))

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            units=self.units,
            embedding_dim=self.embedding_dim,
            attention=keras.saving.serialize_keras_object(self.attention)
            if self.attention is not None
            else None,
            dropout=self.dropout,
            input_feeding=self.input_feeding,
            context_gate=self.context_gate,
            variational_dropout=self.variational_dropout,
        )
        return config
