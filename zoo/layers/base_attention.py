"""What every attention form shares: shape checks, masking, softmax, scaling hook, dropout."""

import keras
from keras import ops

# Added to masked scores before the softmax. Scores are always float32, so this cannot overflow,
# and exp(-1e9 - max) is exactly 0.0: masked positions get exactly zero weight.
_MASKED_SCORE = -1e9


def project(x, kernel):
    """`x @ kernel` over the last axis, for `x` of rank 2 or 3.

    A rank-3 `x` is flattened to rank 2 first: a plain 2-D matmul is several times faster on
    CPU than `einsum`, and unlike `tensordot` its gradient compiles under XLA inside a loop.
    """
    if len(x.shape) == 2:
        return ops.matmul(x, kernel)
    shape = ops.shape(x)
    flat = ops.matmul(ops.reshape(x, (-1, shape[-1])), kernel)
    return ops.reshape(flat, (shape[0], shape[1], kernel.shape[-1]))


def _shape(x):
    return tuple(x.shape)


def _rank_error(name, expected, shape, fix):
    return ValueError(
        f"`{name}` must have shape {expected}; received shape {shape} (rank {len(shape)}). {fix}"
    )


@keras.saving.register_keras_serializable(package="zoo")
class BaseAttention(keras.layers.Layer):
    """Base class of the zoo's attention layers: masking, softmax and dropout, written once.

    A form (`BahdanauAttention`, `LuongAttention`) only adds its weights in
    `build(query_shape, value_shape, key_shape=None)` and two methods:

    - `project_key(key)`: the part of the score that depends on the key only, computed once per
      source sentence (a decoder calls it before its step loop);
    - `compute_scores(query, projected_key)`: scores of shape `(batch_size, Tq, Tv)` for a
      query of shape `(batch_size, Tq, Dq)`, and `(batch_size, Tv)` for one step's query
      `(batch_size, Dq)`;

    and may override `scale_scores(scores, projected_key)`, which rescales the scores before
    masking (identity here).

    The attention weights are `softmax(scores)` over the `Tv` value positions, with masked
    positions set to exactly 0; a fully masked row gives all-zero weights and a zero context.
    Scores and softmax run in float32, also under a `"mixed_float16"` dtype policy.

    Args:
        dropout: Float in `[0, 1)`, the fraction of attention weights to drop in training.
            Defaults to `0.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        query: Query tensor of shape `(batch_size, Dq)` (one decoder step) or
            `(batch_size, Tq, Dq)`.
        value: Value tensor of shape `(batch_size, Tv, Dv)`.
        key: Optional key tensor of shape `(batch_size, Tv, Dk)`. Defaults to `value`.
        mask: Optional boolean tensor of shape `(batch_size, Tv)`, `True` where `value` may be
            attended to. If `None`, a Keras mask carried on `value` (e.g. from
            `Embedding(mask_zero=True)`) is used.
        training: Python boolean; dropout is applied to the weights only when `True`.

    Returns:
        A tuple `(context, weights)`:
        - `context`: `(batch_size, Dv)` or `(batch_size, Tq, Dv)`, in the layer's compute dtype.
        - `weights`: `(batch_size, Tv)` or `(batch_size, Tq, Tv)`, float32, the weights before
          dropout (the context uses the dropped ones).
    """

    def __init__(self, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"`dropout` must be a float in [0, 1); received dropout={dropout!r}. "
                "Pass e.g. dropout=0.1, or 0.0 to turn it off."
            )
        self.dropout = dropout
        self.seed_generator = keras.random.SeedGenerator() if dropout > 0 else None

    # -- what a form provides ------------------------------------------------------------------

    def project_key(self, key):
        """Returns the key's share of the score, `(batch_size, Tv, ...)`; computed once."""
        raise NotImplementedError

    def compute_scores(self, query, projected_key):
        """Scores `(batch_size, Tq, Tv)` for a query `(batch_size, Tq, Dq)`, or `(batch_size, Tv)`
        for a query `(batch_size, Dq)`."""
        raise NotImplementedError

    def scale_scores(self, scores, projected_key):
        """Hook to rescale the float32 scores before masking. Identity by default."""
        return scores

    # -- shared machinery ----------------------------------------------------------------------

    def call(self, query, value, key=None, mask=None, training=None):
        key = value if key is None else key
        self._check_shapes(query, value, key, mask, key_name="key")
        return self.attend(query, value, self.project_key(key), mask=mask, training=training)

    def attend(self, query, value, projected_key, mask=None, training=None):
        """Attends with a key already passed through `project_key()`.

        A decoder calls `project_key()` once per source sentence and this once per step. It
        works on a built layer inside `while_loop` and under XLA. Called directly (not through
        `__call__`), `training` defaults to inference: pass `training=True` for dropout.

        Args:
            query: `(batch_size, Dq)` or `(batch_size, Tq, Dq)`.
            value: `(batch_size, Tv, Dv)`.
            projected_key: `project_key(key)`, `(batch_size, Tv, ...)`.
            mask: Optional boolean `(batch_size, Tv)`; defaults to the Keras mask on `value`.
            training: Python boolean; dropout only when `True`.

        Returns:
            `(context, weights)`, shaped as for `call()`.
        """
        self._require_built("attend")
        if mask is None:
            # The Keras mask that Embedding(mask_zero=True) and friends attach to a tensor.
            mask = getattr(value, "_keras_mask", None)
        self._check_shapes(query, value, projected_key, mask, key_name="projected_key")
        one_step = len(query.shape) == 2
        query = ops.cast(query, self.compute_dtype)
        value = ops.cast(value, self.compute_dtype)

        # One decoder step stays rank 2 throughout: no time axis to add and squeeze back, which
        # is several ops less inside a decoder's step loop.
        scores = self.compute_scores(query, projected_key)
        scores = self.scale_scores(ops.cast(scores, "float32"), projected_key)
        if mask is not None:
            mask = ops.cast(mask, "bool")
            if not one_step:
                mask = ops.expand_dims(mask, 1)
            scores = ops.where(mask, scores, _MASKED_SCORE)
        weights = ops.softmax(scores, axis=-1)
        if mask is not None:
            # Only changes fully masked rows, whose softmax is uniform over masked positions.
            weights = ops.where(mask, weights, 0.0)

        dropped = weights
        if training and self.dropout > 0:
            dropped = keras.random.dropout(weights, self.dropout, seed=self.seed_generator)
        dropped = ops.cast(dropped, self.compute_dtype)
        if one_step and value.shape[0] == 1:
            # One sentence (a static batch of 1, as a TFLite model or a batch-1 request decodes):
            # a multiply and a sum, where a batched matmul's fixed cost is most of a step's time.
            return ops.sum(ops.expand_dims(dropped, -1) * value, axis=1), weights
        if one_step:
            return ops.squeeze(ops.matmul(ops.expand_dims(dropped, 1), value), 1), weights
        return ops.matmul(dropped, value), weights

    def compute_output_spec(self, query, value, key=None, mask=None, training=None):
        key = value if key is None else key
        if mask is None:
            mask = getattr(value, "_keras_mask", None)
        self._check_shapes(query, value, key, mask, key_name="key")
        batch_dims = tuple(query.shape[:-1])
        context = keras.KerasTensor(batch_dims + (value.shape[-1],), dtype=self.compute_dtype)
        weights = keras.KerasTensor(batch_dims + (value.shape[1],), dtype="float32")
        return context, weights

    def compute_mask(self, query, previous_mask=None):
        # Both outputs follow the query's time axis, so they carry the query's mask (as
        # keras.layers.Attention does); the value mask is used up here.
        query_mask = getattr(query, "_keras_mask", None)
        if query_mask is None:
            return None
        return query_mask, query_mask

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout})
        return config

    # -- checks ----------------------------------------------------------------------------------

    def _check_build_shapes(self, query_shape, value_shape, key_shape=None):
        """Checks the shapes given to `build()`; returns `(query_dim, key_dim)`."""
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        self._check_shape_tuples(query_shape, value_shape, key_shape, None, "key")
        query_dim, key_dim = query_shape[-1], key_shape[-1]
        if query_dim is None or key_dim is None:
            raise ValueError(
                f"{type(self).__name__} needs the last dimension of `query` and `key` to be "
                f"known to create its weights; received query shape {query_shape}, key shape "
                f"{key_shape}. Give the inputs a static feature size, e.g. "
                "keras.Input((None, 64))."
            )
        self._built_query_dim = query_dim
        return query_dim, key_dim

    def _require_built(self, method):
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.{method}() needs a built layer, but this one is not "
                "built yet. Call layer.build(query_shape, value_shape, key_shape) first, or "
                "call the layer once on real inputs."
            )

    def _check_shapes(self, query, value, key, mask, key_name):
        mask_shape = None if mask is None else _shape(mask)
        self._check_shape_tuples(_shape(query), _shape(value), _shape(key), mask_shape, key_name)

    def _check_shape_tuples(self, query_shape, value_shape, key_shape, mask_shape, key_name):
        name = type(self).__name__
        if len(query_shape) not in (2, 3):
            raise _rank_error(
                "query",
                "(batch_size, Dq) or (batch_size, Tq, Dq)",
                query_shape,
                f"Pass one decoder state per example, or a sequence of them, to {name}.",
            )
        if len(value_shape) != 3:
            raise _rank_error(
                "value",
                "(batch_size, Tv, Dv)",
                value_shape,
                "Pass the encoder outputs as a sequence; add a time axis of length 1 "
                "for a single vector.",
            )
        if len(key_shape) != 3:
            raise _rank_error(
                key_name,
                "(batch_size, Tv, Dk)",
                key_shape,
                "Pass the output of layer.project_key(key)."
                if key_name == "projected_key"
                else "Pass one key vector per value position, or leave `key` out to use `value`.",
            )
        built_dim = getattr(self, "_built_query_dim", None)
        if built_dim is not None and query_shape[-1] not in (None, built_dim):
            raise ValueError(
                f"{name} was built for queries of depth {built_dim}; received query shape "
                f"{query_shape}. Use a separate layer for each query depth."
            )
        batch_sizes = {"query": query_shape[0], "value": value_shape[0], key_name: key_shape[0]}
        if mask_shape is not None:
            batch_sizes["mask"] = mask_shape[0]
        known = {k: b for k, b in batch_sizes.items() if b is not None}
        if len(set(known.values())) > 1:
            received = ", ".join(f"{k} {b}" for k, b in known.items())
            raise ValueError(
                f"{name} needs one batch size across its inputs; received batch sizes "
                f"{received}. Batch the query, value, key and mask together."
            )
        if None not in (key_shape[1], value_shape[1]) and key_shape[1] != value_shape[1]:
            raise ValueError(
                f"`{key_name}` and `value` must have the same number of positions Tv; received "
                f"{key_name} shape {key_shape} and value shape {value_shape}. Pass a key with "
                "one vector per value position."
            )
        if mask_shape is not None:
            tv = value_shape[1]
            if len(mask_shape) != 2 or (None not in (tv, mask_shape[1]) and mask_shape[1] != tv):
                raise ValueError(
                    f"`mask` must be a boolean tensor of shape (batch_size, Tv) = "
                    f"({value_shape[0]}, {tv}), True where `value` may be attended to; "
                    f"received mask shape {mask_shape}. Pass the padding mask of the value "
                    "sequence (e.g. `tokens != 0`), not of the query."
                )
