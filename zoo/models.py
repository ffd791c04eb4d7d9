"""Models assembled from the zoo's layers: the attentive sequence-to-sequence translator."""

from __future__ import annotations

import keras
from keras import ops

from zoo.decoders import AttentiveLSTMDecoder
from zoo.distribute import MultiWorkerFitMixin
from zoo.encoders import BidirectionalLSTMEncoder
from zoo.layers import BahdanauAttention, LuongAttention

# The attention forms a recipe can name, and `none` for the bottleneck baseline.
ATTENTION_TYPES = {
    "bahdanau": lambda units: BahdanauAttention(units),
    "normed_bahdanau": lambda units: BahdanauAttention(units, normalize=True),
    "sigmoid_bahdanau": lambda units: BahdanauAttention(units, score_activation="sigmoid"),
    "luong_dot": lambda units: LuongAttention("dot"),
    "luong_scaled_dot": lambda units: LuongAttention("dot", scale="sqrt"),
    "luong_general": lambda units: LuongAttention("general"),
    "luong_concat": lambda units: LuongAttention("concat", units=units),
    "none": lambda units: None,
}


def make_attention(name: str, units: int):
    """An attention layer by name (`ATTENTION_TYPES`), or None for `"none"`."""
    if name not in ATTENTION_TYPES:
        raise ValueError(
            f"unknown attention {name!r}; choose one of: {', '.join(ATTENTION_TYPES)}"
        )
    return ATTENTION_TYPES[name](units)


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


def masked_loss(y_true, y_pred):
    """Token cross-entropy averaged over non-padding target tokens (id 0 is padding): a scalar."""
    return ops.mean(masked_token_losses(y_true, y_pred))


def masked_accuracy(y_true, y_pred):
    """Share of non-padding target tokens predicted right under teacher forcing."""
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    hit = ops.cast(ops.equal(ops.cast(y_true, "int32"), ops.argmax(y_pred, -1)), "float32")
    return ops.sum(hit * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="zoo")
class Seq2Seq(MultiWorkerFitMixin, keras.Model):
    """Bidirectional LSTM encoder + attentive LSTM decoder (Luong et al., 2015).

    Args:
        source_vocab_size, target_vocab_size: vocabulary sizes (id 0 is padding).
        embedding_dim: token embedding size on both sides.
        units: decoder LSTM units; the encoder has `units // 2` per direction, so its outputs
            and final state (both directions concatenated) have `units` features.
        attention: a name from `ATTENTION_TYPES`; `"none"` is the bottleneck baseline.
        dropout: dropout rate in training.
        input_feeding: Luong's input feeding (the previous attentional vector is fed back).
        variational_dropout: one dropout mask per sentence, shared by its positions, in the
            encoder and the decoder (see `BidirectionalLSTMEncoder`). Defaults to `False`.

    Call arguments:
        inputs: dict with `"source"` int `(batch_size, Tv)` and `"target_in"` int
            `(batch_size, T)` (START then the target, teacher forcing).

    Returns:
        float32 logits `(batch_size, T, target_vocab_size)`.
    """

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        embedding_dim=128,
        units=256,
        attention="bahdanau",
        dropout=0.1,
        input_feeding=True,
        variational_dropout=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units % 2:
            raise ValueError(f"units must be even (split over two directions), got {units}")
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.attention_type = attention
        self.dropout = dropout
        self.input_feeding = input_feeding
        self.variational_dropout = bool(variational_dropout)
        self.encoder = BidirectionalLSTMEncoder(
            source_vocab_size, embedding_dim, units // 2, dropout, variational_dropout,
            name="encoder",
        )
        self.decoder = AttentiveLSTMDecoder(
            target_vocab_size,
            units,
            embedding_dim,
            make_attention(attention, units),
            dropout,
            input_feeding,
            variational_dropout=variational_dropout,
            name="decoder",
        )

    def build(self, input_shape=None):
        self.encoder.build((None, None))
        self.decoder.build((None, None), (None, None, self.units))
        self.built = True

    def encode(self, source, training=False):
        """`(memory, mask, (h, c))` for int source ids `(batch_size, Tv)`."""
        mask = ops.not_equal(source, 0)
        memory, state = self.encoder(source, mask=mask, training=training)
        return memory, mask, state

    def call(self, inputs, training=None):
        logits, _ = self.forward(inputs["source"], inputs["target_in"], training=training)
        return logits

    def forward(self, source, target_in, training=None):
        """Teacher-forced logits and attention weights `(batch_size, T, Tv)`."""
        memory, mask, state = self.encode(source, training=training)
        return self.decoder(target_in, memory, mask, initial_state=state, training=training)

    def decoding_inputs(self, source):
        """`(step_fn, initial_state, constants)` for `zoo.decoding.greedy_search/beam_search`.

        The step never proposes padding (id 0) or the start token (id 2): an undertrained model
        can score them highest, and a 0 inside an output would end it early for anything that
        counts non-padding ids.
        """
        memory, mask, (h, c) = self.encode(source)
        constants = self.decoder.prepare_memory(memory, mask)
        never = ops.convert_to_tensor(
            [[-1e9 if i in (0, 2) else 0.0 for i in range(min(3, self.target_vocab_size))]]
        )

        def step(ids, state, constants):
            logits, state, weights = self.decoder.step(ids, state, constants)
            head = ops.cast(logits[:, : never.shape[1]], "float32") + never
            logits = ops.concatenate([ops.cast(head, logits.dtype), logits[:, never.shape[1]:]], -1)
            return logits, state, weights

        return step, self.decoder.initial_state(h, c), constants

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention": self.attention_type,
            "dropout": self.dropout,
            "input_feeding": self.input_feeding,
            "variational_dropout": self.variational_dropout,
        }
