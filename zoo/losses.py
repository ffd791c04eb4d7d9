"""Losses and metrics of the token-by-token decoders: masked cross-entropy (with optional label
smoothing) and masked token accuracy. Padding (id 0) never counts."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
def masked_token_losses(y_true, y_pred):
    """Per-token cross-entropy, 0 on padding (id 0), scaled so that its plain mean over the batch
    is the mean over the non-padding tokens.

    This is the loss to `compile` with: Keras reduces it to a scalar itself, which under
    `tf.distribute` includes dividing by the number of replicas before the gradients are summed
    across them. (A loss function that returns a scalar is taken as already reduced and is not
    divided, so with two replicas the gradients, and the logged loss, would be doubled.)
    """
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    tokens = ops.cast(ops.size(mask), "float32")
    return ce * mask * (tokens / ops.maximum(ops.sum(mask), 1.0))


@keras.saving.register_keras_serializable(package="zoo")
class MaskedTokenLosses(keras.losses.Loss):
    """`masked_token_losses` with label smoothing: the target distribution puts
    `1 - label_smoothing` on the reference token and spreads `label_smoothing` evenly over the
    vocabulary (Szegedy et al., 2016), so the model is not pushed to ever more certain outputs.

    Args:
        label_smoothing: in `[0, 1)`. Defaults to `0.0` (plain cross-entropy).
    """

    def __init__(self, label_smoothing=0.0, name="masked_token_losses", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        if not self.label_smoothing:
            return masked_token_losses(y_true, y_pred)
        mask = ops.cast(ops.not_equal(y_true, 0), "float32")
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        labels = ops.expand_dims(ops.cast(y_true, "int32"), -1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, labels, axis=-1), -1)
        uniform = -ops.mean(log_probs, axis=-1)
        ce = (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform
        tokens = ops.cast(ops.size(mask), "float32")
        return ce * mask * (tokens / ops.maximum(ops.sum(mask), 1.0))

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="zoo")
def masked_loss(y_true, y_pred):
    """Token cross-entropy averaged over non-padding target tokens (id 0 is padding): a scalar."""
    return ops.mean(masked_token_losses(y_true, y_pred))


@keras.saving.register_keras_serializable(package="zoo")
def masked_accuracy(y_true, y_pred):
    """Share of non-padding target tokens predicted right under teacher forcing."""
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    hit = ops.cast(ops.equal(ops.cast(y_true, "int32"), ops.argmax(y_pred, -1)), "float32")
    return ops.sum(hit * mask) / ops.maximum(ops.sum(mask), 1.0)
