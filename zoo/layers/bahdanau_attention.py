"""Additive (Bahdanau) attention, optionally weight-normalised or with sigmoid scores."""

import math

import keras
from keras import ops

from zoo.layers.base_attention import BaseAttention, project

_SCORE_ACTIVATIONS = (None, "sigmoid")


@keras.saving.register_keras_serializable(package="zoo")
class BahdanauAttention(BaseAttention):
    """Additive attention layer, a.k.a. Bahdanau-style attention.

    For each query `q` and each key position `j`:

    `score_j = v^T tanh(W_q q + W_k k_j + b)`

    with learned `W_q`, `W_k`, `v` and a bias `b` initialised to zeros, then `weights = softmax(score)` over the unmasked positions and
    `context = sum_j weights_j * value_j`.

    With `normalize=True`, `v` is weight-normalised: `v = g * v / ||v||`, with a trainable
    scalar gain `g` initialised to `sqrt(1 / units)` (the "normed Bahdanau" attention).

    With `score_activation="sigmoid"`, each score becomes `sigmoid(score_j)`, a "matching
    degree" in (0, 1), before the softmax. This bounds how peaked the weights can get: with
    scores in (0, 1) the largest weight over `Tv` positions is below `e / (e + Tv - 1)`
    (0.232 for Tv=10, 0.053 for Tv=50), however large the raw scores grow (docs/layers.md
    measures it: `docs/results/layers/sigmoid_sharpness.py`). Use it where several positions
    should share the attention; leave it off where one position should win.

    `W_k k` is computed once per source sentence by `project_key()`, so a decoder's step loop
    only projects the query (see `BaseAttention.attend()`).

    Args:
        units: Positive integer, the size of the hidden layer of the score (`W_q`, `W_k`, `b`
            and `v` have `units` outputs).
        normalize: Boolean, whether to weight-normalise `v` with a learned gain `g`.
            Defaults to `False`.
        score_activation: `None` or `"sigmoid"`, applied to each score before the softmax.
            Defaults to `None`.
        dropout: Float in `[0, 1)`, the fraction of attention weights to drop in training.
            Defaults to `0.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        query: Query tensor of shape `(batch_size, Dq)` (one decoder step) or
            `(batch_size, Tq, Dq)`.
        value: Value tensor of shape `(batch_size, Tv, Dv)`.
        key: Optional key tensor of shape `(batch_size, Tv, Dk)`. Defaults to `value`.
        mask: Optional boolean tensor of shape `(batch_size, Tv)`, `True` where `value` may be
            attended to. Defaults to the Keras mask carried on `value`, if any.
        training: Python boolean; dropout is applied only when `True`.

    Returns:
        A tuple `(context, weights)`:
        - `context`: `(batch_size, Dv)` or `(batch_size, Tq, Dv)`.
        - `weights`: `(batch_size, Tv)` or `(batch_size, Tq, Tv)`, float32, each row summing
          to 1 over unmasked positions and exactly 0 on masked ones (all 0 if fully masked).

    Example:

    ```python
    encoder_outputs = keras.random.normal((2, 7, 16))
    decoder_state = keras.random.normal((2, 32))
    attention = BahdanauAttention(units=24, normalize=True)
    context, weights = attention(decoder_state, encoder_outputs)
    # context: (2, 16), weights: (2, 7)
    ```

    Reference:
        - [Bahdanau et al., 2015](https://arxiv.org/abs/1409.0473), "Neural Machine
          Translation by Jointly Learning to Align and Translate".
        - [Salimans & Kingma, 2016](https://arxiv.org/abs/1602.07868), "Weight
          Normalization" (`normalize=True`).
    """

    def __init__(self, units, normalize=False, score_activation=None, dropout=0.0, **kwargs):
        super().__init__(dropout=dropout, **kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(
                f"`units` must be a positive integer; received units={units!r}. "
                "Pass e.g. units=128."
            )
        if score_activation not in _SCORE_ACTIVATIONS:
            raise ValueError(
                f"`score_activation` must be one of {_SCORE_ACTIVATIONS}; received "
                f"score_activation={score_activation!r}."
            )
        self.units = units
        self.normalize = normalize
        self.score_activation = score_activation

    def build(self, query_shape, value_shape, key_shape=None):
        query_dim, key_dim = self._check_build_shapes(query_shape, value_shape, key_shape)
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(query_dim, self.units), initializer="glorot_uniform"
        )
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(key_dim, self.units), initializer="glorot_uniform"
        )
        # The score's own weights stay float32 under mixed precision (scores are float32).
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer="zeros", autocast=False
        )
        self.v = self.add_weight(
            name="v", shape=(self.units,), initializer="glorot_uniform", autocast=False
        )
        if self.normalize:
            self.g = self.add_weight(
                name="g",
                shape=(),
                initializer=keras.initializers.Constant(math.sqrt(1.0 / self.units)),
                autocast=False,
            )

    def project_key(self, key):
        self._require_built("project_key")
        key = ops.cast(key, self.compute_dtype)
        return project(key, ops.cast(self.key_kernel, self.compute_dtype))

    def compute_scores(self, query, projected_key):
        projected_query = project(query, ops.cast(self.query_kernel, self.compute_dtype))
        projected_query = ops.cast(projected_query, "float32") + ops.cast(self.bias, "float32")
        projected_key = ops.cast(projected_key, "float32")
        if len(query.shape) == 2:  # one decoder step: (batch, Tv, units)
            hidden = ops.tanh(ops.expand_dims(projected_query, 1) + projected_key)
        else:  # (batch, Tq, Tv, units)
            hidden = ops.tanh(
                ops.expand_dims(projected_query, 2) + ops.expand_dims(projected_key, 1)
            )
        v = ops.cast(self.v, "float32")
        if self.normalize:
            v = ops.cast(self.g, "float32") * v / ops.sqrt(ops.sum(ops.square(v)))
        # The sum over units as a 2-D matmul: several times faster than a reduction on CPU.
        shape = ops.shape(hidden)
        flat = ops.matmul(ops.reshape(hidden, (-1, self.units)), ops.expand_dims(v, 1))
        scores = ops.reshape(flat, tuple(shape[:-1]))
        if self.score_activation == "sigmoid":
            scores = ops.sigmoid(scores)
        return scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "normalize": self.normalize,
                "score_activation": self.score_activation,
            }
        )
        return config
