"""Text encoders: token ids -> one vector per source position, plus a final state."""

from __future__ import annotations

import keras
from keras import ops


def sequence_noise_shape(variational: bool):
    """`noise_shape` of a `keras.layers.Dropout` over `(batch, time, features)` tensors: one
    mask per sentence shared across time when `variational`, else one per element."""
    return (None, 1, None) if variational else None


@keras.saving.register_keras_serializable(package="zoo")
class BidirectionalLSTMEncoder(keras.layers.Layer):
    """Embedding followed by a bidirectional LSTM, forward and backward outputs concatenated.

    Args:
        vocab_size: source vocabulary size (id 0 is padding).
        embedding_dim: size of the token embeddings.
        units: LSTM units per direction; outputs and states have `2 * units` features.
        dropout: dropout on the embeddings and on the outputs, in training only.
        variational_dropout: one dropout mask per sentence and feature, shared by all its
            positions (Gal & Ghahramani, 2016), instead of one per position: `Tv` times fewer
            random numbers, which under XLA on a CPU is most of a training step's cost.

    Call arguments:
        ids: int `(batch_size, Tv)` token ids.
        mask: optional bool `(batch_size, Tv)`; defaults to `ids != 0`.
        padded: `False` when every id is a real token (e.g. one sentence tokenised alone):
            the LSTMs then skip their per-step masking, to the same numbers. Defaults to `True`.

    Returns:
        `(outputs, (h, c))`: outputs `(batch_size, Tv, 2 * units)` (zeros at padded positions),
        and the final states `(batch_size, 2 * units)` of both directions concatenated, taken
        at each sentence's own last token.
    """

    def __init__(self, vocab_size, embedding_dim=128, units=128, dropout=0.0,
                 variational_dropout=False, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.dropout = dropout
        self.variational_dropout = bool(variational_dropout)
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.rnn = keras.layers.Bidirectional(
            keras.layers.LSTM(units, return_sequences=True, return_state=True), name="bilstm"
        )
        self.drop = keras.layers.Dropout(dropout, noise_shape=sequence_noise_shape(variational_dropout))
        # The mask is an explicit call argument; say so, so Keras does not warn that it is lost.
        self.supports_masking = True

    def compute_mask(self, ids, mask=None):
        return None

    def build(self, ids_shape):
        self.embedding.build(ids_shape)
        self.rnn.build(tuple(ids_shape) + (self.embedding_dim,))

    def call(self, ids, mask=None, training=None, padded=True):
        if not padded:
            mask = None  # nothing to mask: the LSTMs run without their per-step masking
        elif mask is None:
            mask = ops.not_equal(ids, 0)
        x = self.drop(self.embedding(ids), training=training)
        outputs, fh, fc, bh, bc = self.rnn(x, mask=mask, training=training)
        outputs = self.drop(outputs, training=training)
        if mask is not None:
            outputs = outputs * ops.cast(mask, outputs.dtype)[..., None]
        return outputs, (ops.concatenate([fh, bh], -1), ops.concatenate([fc, bc], -1))

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            embedding_dim=self.embedding_dim,
            units=self.units,
            dropout=self.dropout,
            variational_dropout=self.variational_dropout,
        )
        return config
