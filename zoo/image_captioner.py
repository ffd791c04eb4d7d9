"""The "show, attend and tell" image captioner: image encoder + attentive LSTM decoder.

    grid   = encoder(image)                     (batch, h, w, d): one annotation vector a_i per cell
             (optionally layer-normalised per cell, plus a learned row and column embedding)
    memory = reshape(grid, (batch, h * w, d))
    s      = [mean_i a_i ; max_i a_i]             (what the image holds on average, and at its peak)
    h_0    = tanh(W_h s),  c_0 = tanh(W_c s)
    logits, alpha = AttentiveLSTMDecoder(target_in, memory, initial_state=(h_0, c_0))

trained on the token cross-entropy plus the doubly stochastic attention regulariser
`lambda * sum_i (1 - sum_t alpha_ti)^2` (each region's attention summed over the caption is pushed
towards 1, so every part of the image gets looked at). Decoding uses `zoo.decoding` through
`decoding_inputs`, exactly as the translator does.

Reference:
    [Xu et al., 2015. Show, Attend and Tell: Neural Image Caption Generation with Visual
    Attention](https://arxiv.org/abs/1502.03044)
"""

from __future__ import annotations

import keras
from keras import ops

from zoo.distribute import MultiWorkerFitMixin
from zoo.image_encoders import build_image_encoder
from zoo.layers import make_attention
from zoo.layers.decoders import AttentiveLSTMDecoder


def doubly_stochastic_penalty(weights, target_mask):
    """`sum_i (1 - sum_t alpha_ti)^2` per caption, summed over the batch.

    Args:
        weights: float `(batch_size, T, regions)` attention weights.
        target_mask: bool `(batch_size, T)`, `True` on real (non-padding) target steps; padded
            steps add nothing to a region's total.

    Returns:
        A float32 scalar: the penalty summed over the captions of the batch.
    """
    mask = ops.cast(target_mask, "float32")[:, :, None]
    totals = ops.sum(ops.cast(weights, "float32") * mask, axis=1)
    return ops.sum(ops.square(1.0 - totals))


@keras.saving.register_keras_serializable(package="zoo")
class ImageCaptioner(MultiWorkerFitMixin, keras.Model):
    """Image encoder, then an attentive LSTM decoder over the flattened feature grid.

    The loss `fit` minimises is the per-token cross-entropy (from `compile`) plus the doubly
    stochastic regulariser divided by the batch's number of target tokens, i.e. the paper's
    per-caption objective averaged per token.

    Args:
        vocab_size: caption vocabulary size (id 0 is padding).
        image_size: side of the square input images, or `None` for any size. Defaults to `64`.
        backbone: an image encoder name from `zoo.image_encoders.BACKBONES`. Defaults to
            `"small_cnn"`. (Pretrained weights are loaded into `encoder` by the caller.)
        trainable_backbone: whether the encoder trains. Defaults to `True`.
        encoder_filters: the channels of each `SmallCNNEncoder` block (`"small_cnn"` only).
            Defaults to `(32, 64, 128)`.
        batch_norm: batch normalisation in the small CNN's blocks (`"small_cnn"` only): from
            scratch, it learns to tell the digits apart several times faster. Defaults to `True`.
        feature_dim: size of each grid feature vector. Defaults to `128`.
        embedding_dim: word embedding size. Defaults to `64`.
        units: decoder LSTM units. Defaults to `128`.
        attention: a name from `zoo.layers.ATTENTION_TYPES` (`"none"`: the decoder only sees
            the initial state). Defaults to `"bahdanau"`.
        dropout: decoder dropout in training. Defaults to `0.1`.
        input_feeding: feed the previous attentional vector (which carries the context) back
            into the LSTM, as the paper feeds `z_t`. Defaults to `True`.
        context_gate: the paper's gating scalar `beta_t = sigmoid(f_beta(h))` on the context.
            Defaults to `True`.
        doubly_stochastic: `lambda`, the weight of the attention regulariser; `0` turns it off.
            Defaults to `1.0`.
        position_embedding: add a learned embedding of each grid row and column to the
            features, so the context says where the decoder looked as well as what it saw
            (convolutions alone hardly encode absolute position). Needs a fixed `image_size`.
            Defaults to `True`.

    Call arguments:
        inputs: dict with `"image"` uint8 or float `(batch_size, H, W, 3)` in [0, 255] and
            `"target_in"` int `(batch_size, T)` (START then the caption, 0-padded).

    Returns:
        float32 logits `(batch_size, T, vocab_size)`.

    Example:

    >>> model = ImageCaptioner(vocab_size=40, image_size=32)
    >>> model({"image": np.zeros((2, 32, 32, 3), "uint8"), "target_in": np.ones((2, 5))}).shape
    TensorShape([2, 5, 40])
    """

    def __init__(
        self,
        vocab_size,
        image_size=64,
        backbone="small_cnn",
        trainable_backbone=True,
        encoder_filters=(32, 64, 128),
        batch_norm=True,
        feature_dim=128,
        embedding_dim=64,
        units=128,
        attention="bahdanau",
        dropout=0.1,
        input_feeding=True,
        context_gate=True,
        doubly_stochastic=1.0,
        position_embedding=True,
        feature_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if doubly_stochastic < 0:
            raise ValueError(
                f"`doubly_stochastic` must be >= 0 (0 turns it off); received {doubly_stochastic}."
            )
        self.vocab_size = int(vocab_size)
        self.image_size = None if image_size is None else int(image_size)
        self.backbone = backbone
        self.trainable_backbone = bool(trainable_backbone)
        self.encoder_filters = tuple(int(f) for f in encoder_filters)
        self.batch_norm = bool(batch_norm)
        self.feature_dim = int(feature_dim)
        self.embedding_dim = int(embedding_dim)
        self.units = int(units)
        self.attention_type = attention
        self.dropout = float(dropout)
        self.input_feeding = bool(input_feeding)
        self.context_gate = bool(context_gate)
        self.doubly_stochastic = float(doubly_stochastic)
        if position_embedding and image_size is None:
            raise ValueError(
                "`position_embedding=True` needs a fixed `image_size` (the grid size); pass "
                "image_size=..., or position_embedding=False for images of any size."
            )
        self.position_embedding = bool(position_embedding)
        self.feature_norm = bool(feature_norm)
        self.encoder = build_image_encoder(
            backbone,
            weights=None,
            trainable=self.trainable_backbone,
            image_size=self.image_size,
            feature_dim=self.feature_dim,
            filters=self.encoder_filters,
            batch_norm=self.batch_norm,
        )
        self.feature_normalization = (
            keras.layers.LayerNormalization(name="feature_norm") if self.feature_norm else None
        )
        self.init_h = keras.layers.Dense(self.units, activation="tanh", name="init_h")
        self.init_c = keras.layers.Dense(self.units, activation="tanh", name="init_c")
        self.decoder = AttentiveLSTMDecoder(
            self.vocab_size,
            self.units,
            self.embedding_dim,
            make_attention(attention, self.units),
            self.dropout,
            self.input_feeding,
            self.context_gate and attention != "none",
            name="decoder",
        )

    def build(self, input_shape=None):
        size = self.image_size
        grid = self.encoder.compute_output_shape((None, size, size, 3))
        if self.position_embedding:
            self.row_embedding = self.add_weight(
                shape=(grid[1], 1, grid[-1]), initializer="zeros", name="row_embedding"
            )
            self.column_embedding = self.add_weight(
                shape=(1, grid[2], grid[-1]), initializer="zeros", name="column_embedding"
            )
        if self.feature_normalization is not None:
            self.feature_normalization.build(grid)
        self.init_h.build((None, 2 * self.feature_dim))
        self.init_c.build((None, 2 * self.feature_dim))
        self.decoder.build((None, None), (None, None, grid[-1]))
        self.built = True

    def grid_shape(self, image_size=None):
        """`(h, w)` of the feature grid for square images of `image_size` (default: the model's)."""
        size = image_size or self.image_size
        if size is None:
            raise ValueError("grid_shape needs an image size: this model takes any size.")
        return tuple(int(s) for s in self.encoder.compute_output_shape((1, size, size, 3))[1:3])

    def encode(self, images, training=False):
        """`(memory (batch, h*w, d), (h_0, c_0))` for images `(batch, H, W, 3)` in [0, 255]."""
        if not self.built:  # called directly (decoding), not through __call__
            self.build()
        grid = self.encoder(ops.cast(images, "float32"), training=training)
        if self.feature_normalization is not None:
            grid = self.feature_normalization(grid)
        if self.position_embedding:
            grid = grid + self.row_embedding + self.column_embedding
        shape = ops.shape(grid)
        memory = ops.reshape(grid, (shape[0], -1, shape[-1]))
        # The paper starts from the mean annotation vector; on a mostly empty canvas the mean
        # dilutes a digit's features by the number of cells, while their maximum over the grid
        # says which digits are there whatever their count: the decoder starts knowing what
        # to name, and the encoder learns the digits from the first steps.
        summary = ops.concatenate([ops.mean(memory, axis=1), ops.max(memory, axis=1)], axis=-1)
        return memory, (self.init_h(summary), self.init_c(summary))

    def forward(self, images, target_in, training=None):
        """Teacher-forced logits and attention weights `(batch_size, T, h * w)`."""
        memory, state = self.encode(images, training=training)
        mask = ops.ones(ops.shape(memory)[:2], "bool")
        return self.decoder(target_in, memory, mask, initial_state=state, training=training)

    def call(self, inputs, training=None):
        target_in = inputs["target_in"]
        logits, weights = self.forward(inputs["image"], target_in, training=training)
        if self.doubly_stochastic and self.decoder.attention is not None:
            mask = ops.not_equal(target_in, 0)
            tokens = ops.maximum(ops.sum(ops.cast(mask, "float32")), 1.0)
            penalty = doubly_stochastic_penalty(weights, mask)
            self.add_loss(self.doubly_stochastic * penalty / tokens)
        return logits

    def decoding_inputs(self, images):
        """`(step_fn, initial_state, constants)` for `zoo.decoding.greedy_search/beam_search`."""
        memory, (h, c) = self.encode(images)
        mask = ops.ones(ops.shape(memory)[:2], "bool")
        constants = self.decoder.prepare_memory(memory, mask)
        return self.decoder.step, self.decoder.initial_state(h, c), constants

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "image_size": self.image_size,
            "backbone": self.backbone,
            "trainable_backbone": self.trainable_backbone,
            "encoder_filters": list(self.encoder_filters),
            "batch_norm": self.batch_norm,
            "feature_dim": self.feature_dim,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention": self.attention_type,
            "dropout": self.dropout,
            "input_feeding": self.input_feeding,
            "context_gate": self.context_gate,
            "doubly_stochastic": self.doubly_stochastic,
            "position_embedding": self.position_embedding,
            "feature_norm": self.feature_norm,
        }
