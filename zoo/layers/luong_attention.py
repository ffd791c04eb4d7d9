"""Multiplicative (Luong) attention: dot, general and concat scores, optionally scaled."""

import math

import keras
from keras import ops

from zoo.layers.base_attention import BaseAttention, project

_SCORES = ("dot", "general", "concat")
_SCALES = (None, "learned", "sqrt")



@keras.saving.register_keras_serializable(package="zoo")
class LuongAttention(BaseAttention):
    """Luong-style attention layer, with the three scores of Luong et al. (2015).

    For each query `q` and each key position `j`, `score_j` is one of:

    - `"dot"`: `q . k_j` (needs `Dq == Dk`; no weights);
    - `"general"`: `q^T W k_j`, with `W` of shape `(Dq, Dk)`;
    - `"concat"`: `v^T tanh(W [q; k_j])`, with `W` of shape `(Dq + Dk, units)` and `v` of
      shape `(units,)`;

    then `weights = softmax(score)` over the unmasked positions and
    `context = sum_j weights_j * value_j`.

    `scale="learned"` multiplies the scores by a trainable scalar initialised to 1 (as
    `keras.layers.Attention(use_scale=True)` does); `scale="sqrt"` divides them by `sqrt(d)`,
    where `d` is the depth the score sums over: `Dk` for `"dot"`, `Dq` for `"general"` and
    `units` for `"concat"`. With `score="dot"` and no scale this layer computes the same as
    `keras.layers.Attention()`.

    The key's share of the score (`k` itself, `W k`, or the key half of `W`) is computed once
    per source sentence by `project_key()`, so a decoder's step loop only handles the query
    (see `BaseAttention.attend()`).

    Args:
        score: One of `"dot"`, `"general"` or `"concat"`. Defaults to `"dot"`.
        units: Positive integer, the size of the hidden layer of the `"concat"` score.
            Ignored by the other scores. Defaults to `None`, meaning `Dq`.
        scale: One of `None`, `"learned"` or `"sqrt"`. Defaults to `None`.
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
    decoder_states = keras.random.normal((2, 5, 32))
    attention = LuongAttention(score="general", scale="sqrt")
    context, weights = attention(decoder_states, encoder_outputs)
    # context: (2, 5, 16), weights: (2, 5, 7)
    ```

    Reference:
        - [Luong et al., 2015](https://arxiv.org/abs/1508.04025), "Effective Approaches to
          Attention-based Neural Machine Translation".
    """

    def __init__(self, score="dot", units=None, scale=None, dropout=0.0, **kwargs):
        super().__init__(dropout=dropout, **kwargs)
        if score not in _SCORES:
            raise ValueError(f"`score` must be one of {_SCORES}; received score={score!r}.")
        if scale not in _SCALES:
            raise ValueError(f"`scale` must be one of {_SCALES}; received scale={scale!r}.")
        if units is not None and (
            not isinstance(units, int) or isinstance(units, bool) or units < 1
        ):
            raise ValueError(
                f"`units` must be a positive integer or None (meaning Dq); received "
                f"units={units!r}. Pass e.g. units=128."
            )
        self.score = score
        self.units = units
        self.scale = scale

    def build(self, query_shape, value_shape, key_shape=None):
        query_dim, key_dim = self._check_build_shapes(query_shape, value_shape, key_shape)
        if self.score == "dot":
            _check_dot_depths(query_dim, key_dim)
        elif self.score == "general":
            self.kernel = self.add_weight(
                name="kernel", shape=(query_dim, key_dim), initializer="glorot_uniform"
            )
        else:
            units = query_dim if self.units is None else self.units
            self.kernel = self.add_weight(
                name="kernel", shape=(query_dim + key_dim, units), initializer="glorot_uniform"
            )
            # The score's own weights stay float32 under mixed precision (scores are float32).
            self.v = self.add_weight(
                name="v", shape=(units,), initializer="glorot_uniform", autocast=False
            )
        if self.scale == "learned":
            self.scale_factor = self.add_weight(
                name="scale_factor", shape=(), initializer="ones", autocast=False
            )

    def project_key(self, key):
        self._require_built("project_key")
        key = ops.cast(key, self.compute_dtype)
        if self.score == "dot":
            return key
        kernel = ops.cast(self.kernel, self.compute_dtype)
        if self.score == "general":
            # W k_j for every j, so that the score is a plain dot product with q.
            return project(key, ops.transpose(kernel))
        return project(key, kernel[self._built_query_dim :])

    def compute_scores(self, query, projected_key):
        one_step = len(query.shape) == 2
        if self.score == "concat":
            kernel = ops.cast(self.kernel, self.compute_dtype)
            projected_query = ops.cast(project(query, kernel[: self._built_query_dim]), "float32")
            projected_key = ops.cast(projected_key, "float32")
            if one_step:
                hidden = ops.tanh(ops.expand_dims(projected_query, 1) + projected_key)
                return ops.einsum("bta,a->bt", hidden, ops.cast(self.v, "float32"))
            hidden = ops.tanh(
                ops.expand_dims(projected_query, 2) + ops.expand_dims(projected_key, 1)
            )
            return ops.sum(hidden * ops.cast(self.v, "float32"), axis=-1)
        if self.score == "dot":
            _check_dot_depths(query.shape[-1], projected_key.shape[-1])
        query, projected_key = ops.cast(query, "float32"), ops.cast(projected_key, "float32")
        if one_step and projected_key.shape[0] == 1:
            # One sentence (a static batch of 1): a multiply and a sum beat einsum's fixed cost.
            return ops.sum(ops.expand_dims(query, 1) * projected_key, axis=-1)
        if one_step:
            # Inside a decoder's step loop: einsum works on the key as stored, where a transpose
            # would copy it at every step.
            return ops.einsum("bd,btd->bt", query, projected_key)
        return ops.matmul(query, ops.transpose(projected_key, (0, 2, 1)))

    def scale_scores(self, scores, projected_key):
        if self.scale == "learned":
            return scores * ops.cast(self.scale_factor, "float32")
        if self.scale == "sqrt":
            return scores / math.sqrt(projected_key.shape[-1])
        return scores

    def get_config(self):
        config = super().get_config()
        config.update({"score": self.score, "units": self.units, "scale": self.scale})
        return config


def _check_dot_depths(query_dim, key_dim):
    if None not in (query_dim, key_dim) and query_dim != key_dim:
        raise ValueError(
            f'score="dot" needs the query and the key to have the same depth; received '
            f'Dq={query_dim} and Dk={key_dim}. Use score="general" or score="concat", '
            "which learn a projection between different depths."
        )
