"""Behaviour every attention form shares through BaseAttention: masks, steps, dtypes, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers import BahdanauAttention, BaseAttention, LuongAttention

B, TQ, TV, D = 3, 4, 5, 6

FORMS = {
    "bahdanau": (BahdanauAttention, {"units": 7}),
    "bahdanau_normed_sigmoid": (
        BahdanauAttention,
        {"units": 7, "normalize": True, "score_activation": "sigmoid"},
    ),
    "luong_dot": (LuongAttention, {"score": "dot"}),
    "luong_general_sqrt": (LuongAttention, {"score": "general", "scale": "sqrt"}),
    "luong_concat_learned": (LuongAttention, {"score": "concat", "units": 5, "scale": "learned"}),
}
# The forms with weights, for gradient checks.
WEIGHTED = [name for name in FORMS if name != "luong_dot"]

# Row 0: nothing masked; row 1: the last two positions masked; row 2: everything masked.
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)


def make(name, **overrides):
    layer_cls, kwargs = FORMS[name]
    return layer_cls(**{**kwargs, **overrides})


def copy_weights(source, target):
    for s, t in zip(source.trainable_weights, target.trainable_weights, strict=True):
        t.assign(s)


def data(seed=0, query_rank=3, key_dim=D):
    rng = np.random.default_rng(seed)
    query_shape = (B, D) if query_rank == 2 else (B, TQ, D)
    query = rng.normal(size=query_shape).astype("float32")
    value = rng.normal(size=(B, TV, D)).astype("float32")
    key = rng.normal(size=(B, TV, key_dim)).astype("float32")
    return query, value, key


@pytest.mark.parametrize("query_rank", [2, 3])
@pytest.mark.parametrize("name", FORMS)
def test_masked_weights_sum_to_one_and_are_zero_where_masked(name, query_rank):
    query, value, key = data(query_rank=query_rank)
    context, weights = make(name)(query, value, key=key, mask=MASK)
    context, weights = np.asarray(context), np.asarray(weights)
    assert not np.isnan(context).any() and not np.isnan(weights).any()
    if query_rank == 3:  # put every query step on the batch axis
        weights = weights.transpose(1, 0, 2)
        context = context.transpose(1, 0, 2)
    np.testing.assert_allclose(weights[..., 0, :].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(weights[..., 1, 3:], 0.0)
    np.testing.assert_array_equal(weights[..., 2, :], 0.0)  # fully masked: zeros
    np.testing.assert_array_equal(context[..., 2, :], 0.0)
    np.testing.assert_allclose(weights[..., 1, :3].sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", WEIGHTED)
def test_fully_masked_row_has_finite_gradients(name):
    query, value, key = data()
    layer = make(name)
    with tf.GradientTape() as tape:
        context, weights = layer(query, value, key=key, mask=MASK)
        loss = keras.ops.sum(context) + keras.ops.sum(weights)
    for grad in tape.gradient(loss, layer.trainable_variables):
        assert np.isfinite(np.asarray(grad)).all()


@pytest.mark.parametrize("name", ["bahdanau", "luong_general_sqrt"])
def test_keras_mask_carried_on_value_is_honoured(name):
    tokens = np.array([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0]])
    query = np.random.default_rng(0).normal(size=(2, TQ, D)).astype("float32")
    embedding = keras.layers.Embedding(10, D, mask_zero=True)
    layer = make(name)
    value = embedding(tokens)
    assert getattr(value, "_keras_mask", None) is not None
    context, weights = layer(query, value)
    expected_context, expected_weights = layer(query, value, mask=tokens != 0)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-7)
    np.testing.assert_allclose(context, expected_context, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(weights)[1, :, 2:], 0.0)

    # The same through a functional model, where Keras carries the mask between layers.
    token_input = keras.Input((None,), dtype="int32")
    query_input = keras.Input((None, D))
    model = keras.Model([query_input, token_input], layer(query_input, embedding(token_input)))
    np.testing.assert_allclose(model([query, tokens])[1], expected_weights, atol=1e-6)


@pytest.mark.parametrize("name", FORMS)
def test_one_step_queries_agree_with_a_sequence_query(name):
    query, value, key = data()
    layer = make(name)
    context, weights = layer(query, value, key=key, mask=MASK)
    for t in range(TQ):
        step_context, step_weights = layer(query[:, t], value, key=key, mask=MASK)
        np.testing.assert_allclose(step_context, np.asarray(context)[:, t], atol=1e-6)
        np.testing.assert_allclose(step_weights, np.asarray(weights)[:, t], atol=1e-6)


@pytest.mark.parametrize("name", FORMS)
def test_project_key_then_attend_equals_call(name):
    query, value, key = data()
    layer = make(name)
    expected = layer(query, value, key=key, mask=MASK)
    actual = layer.attend(query, value, layer.project_key(key), mask=MASK)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=1e-6)


@pytest.mark.parametrize("name", ["bahdanau_normed_sigmoid", "luong_concat_learned"])
def test_attend_in_an_xla_while_loop_on_an_explicitly_built_layer(name):
    # What a decoder does: build, project the keys once, then one attend() per step.
    query, value, key = data(key_dim=D + 2)
    layer = make(name)
    layer.build((B, D), value.shape, key.shape)

    @tf.function(jit_compile=True)
    def decode(query, value, key, mask):
        projected_key = layer.project_key(key)

        def step(t, contexts):
            context, _ = layer.attend(query[:, t], value, projected_key, mask=mask)
            return t + 1, contexts.write(t, context)

        _, contexts = keras.ops.while_loop(
            lambda t, _: t < TQ, step, (0, tf.TensorArray(tf.float32, size=TQ))
        )
        return tf.transpose(contexts.stack(), (1, 0, 2))

    expected, _ = layer(query, value, key=key, mask=MASK)
    np.testing.assert_allclose(decode(query, value, key, MASK), expected, atol=1e-5)


@pytest.mark.parametrize("name", WEIGHTED)
def test_gradients_reach_every_trainable_weight(name):
    query, value, key = data()
    layer = make(name)
    layer(query, value, key=key)  # build
    rng = np.random.default_rng(1)
    with tf.GradientTape() as tape:
        context, weights = layer(query, value, key=key, mask=MASK)
        loss = keras.ops.sum(context * rng.normal(size=context.shape)) + keras.ops.sum(
            weights * rng.normal(size=weights.shape)
        )
    grads = tape.gradient(loss, layer.trainable_variables)
    for variable, grad in zip(layer.trainable_variables, grads, strict=True):
        assert grad is not None, variable.path
        assert np.abs(np.asarray(grad)).max() > 0, variable.path


@pytest.mark.parametrize("name", FORMS)
def test_mixed_float16_scores_and_softmax_in_float32(name):
    query, value, key = data()
    layer = make(name, dtype="mixed_float16")
    context, weights = layer(query, value, key=key, mask=MASK)
    assert context.dtype == "float16"
    assert weights.dtype == "float32"
    np.testing.assert_allclose(np.asarray(weights)[:2].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(weights)[2], 0.0)
    for variable in layer.weights:
        assert variable.dtype == "float32"
    # Called directly, as a decoder does, outside Keras' autocast scope.
    projected_key = layer.project_key(key)
    assert layer.compute_scores(keras.ops.cast(query, "float16"), projected_key).dtype == "float32"
    step_context, step_weights = layer.attend(query[:, 0], value, projected_key, mask=MASK)
    assert step_context.dtype == "float16" and step_weights.dtype == "float32"
    np.testing.assert_allclose(step_weights, np.asarray(weights)[:, 0], atol=1e-3)
    # Close to float32, up to float16 rounding of the projections and the values.
    expected_layer = make(name)
    expected_layer(query, value, key=key)
    copy_weights(layer, expected_layer)
    expected_context, expected_weights = expected_layer(query, value, key=key, mask=MASK)
    np.testing.assert_allclose(weights, expected_weights, atol=2e-2)
    np.testing.assert_allclose(np.asarray(context, "float32"), expected_context, atol=2e-2)


@pytest.mark.parametrize("name", ["bahdanau", "luong_dot"])
def test_dropout_only_in_training_and_only_on_the_context(name):
    query, value, key = data()
    layer = make(name, dropout=0.5)
    context, weights = layer(query, value, key=key)
    again, _ = layer(query, value, key=key, training=False)
    np.testing.assert_array_equal(context, again)
    train_context, train_weights = layer(query, value, key=key, training=True)
    # The returned weights are the ones before dropout; the context uses the dropped ones.
    np.testing.assert_allclose(train_weights, weights, atol=1e-7)
    assert not np.allclose(train_context, context)
    # Inference is the same as no dropout at all.
    plain = make(name)
    plain(query, value, key=key)
    copy_weights(layer, plain)
    np.testing.assert_allclose(plain(query, value, key=key)[0], context, atol=1e-6)


def test_base_attention_leaves_the_score_to_subclasses():
    layer = BaseAttention()
    with pytest.raises(NotImplementedError):
        layer.project_key(np.zeros((1, 2, 3)))
    assert layer.get_config()["dropout"] == 0.0


# -- one test per error message ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bahdanau", "luong_dot"])
def test_query_of_wrong_rank_is_rejected(name):
    _, value, _ = data()
    with pytest.raises(ValueError, match=r"`query` must have shape \(batch_size, Dq\) or"):
        make(name)(np.zeros((B, 2, TQ, D), "float32"), value)


def test_value_of_wrong_rank_is_rejected():
    query, _, _ = data()
    with pytest.raises(ValueError, match=r"`value` must have shape \(batch_size, Tv, Dv\)"):
        make("bahdanau")(query, np.zeros((B, D), "float32"))


def test_key_of_wrong_rank_is_rejected():
    query, value, _ = data()
    with pytest.raises(ValueError, match=r"`key` must have shape \(batch_size, Tv, Dk\)"):
        make("bahdanau")(query, value, key=np.zeros((B, D), "float32"))


def test_mismatched_batch_sizes_are_rejected():
    query, value, _ = data()
    with pytest.raises(ValueError, match="needs one batch size.*query 3, value 2"):
        make("luong_dot")(query, value[:2])


def test_key_and_value_of_different_lengths_are_rejected():
    query, value, key = data()
    with pytest.raises(ValueError, match="must have the same number of positions Tv"):
        make("bahdanau")(query, value, key=key[:, :3])


@pytest.mark.parametrize("mask_shape", [(B, TV - 1), (B, TQ, TV)])
def test_mask_of_wrong_shape_is_rejected(mask_shape):
    query, value, _ = data()
    with pytest.raises(ValueError, match=r"`mask` must be a boolean tensor of shape"):
        make("bahdanau")(query, value, mask=np.ones(mask_shape, bool))


def test_symbolic_inputs_are_checked_too():
    with pytest.raises(ValueError, match=r"`mask` must be a boolean tensor of shape"):
        make("luong_dot")(
            keras.Input((TQ, D)), keras.Input((TV, D)), mask=keras.Input((TV + 1,), dtype="bool")
        )


def test_unknown_feature_depth_is_rejected_at_build():
    with pytest.raises(ValueError, match="needs the last dimension of `query` and `key`"):
        make("bahdanau").build((None, None, None), (None, None, D))


def test_attend_before_build_is_rejected():
    query, value, key = data()
    with pytest.raises(ValueError, match=r"attend\(\) needs a built layer"):
        make("bahdanau").attend(query, value, key)
    with pytest.raises(ValueError, match=r"project_key\(\) needs a built layer"):
        make("luong_general_sqrt").project_key(key)


def test_query_depth_other_than_the_built_one_is_rejected():
    query, value, _ = data()
    layer = make("bahdanau")
    layer(query, value)
    with pytest.raises(ValueError, match="was built for queries of depth 6"):
        layer(query[..., :4], value)


@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_dropout_out_of_range_is_rejected(dropout):
    with pytest.raises(ValueError, match=r"`dropout` must be a float in \[0, 1\)"):
        make("luong_dot", dropout=dropout)
