import math

import keras
import numpy as np
import pytest

from tests.helpers import run_layer_test
from zoo.layers import LuongAttention

B, TQ, TV, DQ, DK, DV = 2, 3, 5, 4, 6, 7
MASK = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0]], bool)


def reference(layer, query, value, key, mask):
    """The formulas in NumPy, with the layer's own weights."""
    if layer.score == "dot":
        scores, depth = query @ key.transpose(0, 2, 1), key.shape[-1]
    elif layer.score == "general":
        w = np.asarray(layer.kernel)  # (Dq, Dk)
        scores = np.einsum("bqd,de,bve->bqv", query, w, key)
        depth = query.shape[-1]
    else:
        w, v = np.asarray(layer.kernel), np.asarray(layer.v)  # (Dq + Dk, units), (units,)
        q = np.broadcast_to(
            query[:, :, None, :], query.shape[:2] + key.shape[1:2] + query.shape[2:]
        )
        k = np.broadcast_to(key[:, None, :, :], query.shape[:2] + key.shape[1:])
        scores = np.tanh(np.concatenate([q, k], -1) @ w) @ v
        depth = v.shape[0]
    if layer.scale == "learned":
        scores = scores * np.asarray(layer.scale_factor)
    elif layer.scale == "sqrt":
        scores = scores / math.sqrt(depth)
    scores = np.where(mask[:, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ value, weights


def inputs(key_dim, seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, TQ, DQ)).astype("float32")
    value = rng.normal(size=(B, TV, DV)).astype("float32")
    key = rng.normal(size=(B, TV, key_dim)).astype("float32")
    return query, value, key


@pytest.mark.parametrize("scale", [None, "learned", "sqrt"])
@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_matches_the_formula_in_numpy(score, scale):
    query, value, key = inputs(key_dim=DQ if score == "dot" else DK)
    layer = LuongAttention(score=score, units=5 if score == "concat" else None, scale=scale)
    layer.build(query.shape, value.shape, key.shape)
    if scale == "learned":
        layer.scale_factor.assign(1.7)  # away from its initial 1, so that the test sees it
    context, weights = layer(query, value, key=key, mask=MASK)
    expected_context, expected_weights = reference(layer, query, value, key, MASK)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(context, expected_context, atol=1e-5)


def test_dot_equals_keras_attention():
    query, value, _ = inputs(key_dim=DQ)
    value = value[..., :DQ]
    context, weights = LuongAttention()(query, value, mask=MASK)
    expected_context, expected_weights = keras.layers.Attention()(
        [query, value], mask=[None, MASK], return_attention_scores=True
    )
    np.testing.assert_allclose(context, expected_context, atol=1e-6)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)


def test_golden_hand_worked_case():
    # q = [1, 1] against k = [0, 0], [ln 2, 0], [0, ln 2]: scores [0, ln 2, ln 2], so
    # exp(scores) = [1, 2, 2] and the weights are [0.2, 0.4, 0.4]; the context of values
    # [10, 20, 30] is 2 + 8 + 12 = 22. Masking the last position: [1/3, 2/3, 0] and 50/3.
    query = np.array([[1.0, 1.0]], "float32")
    key = np.array([[[0, 0], [math.log(2), 0], [0, math.log(2)]]], "float32")
    value = np.array([[[10.0], [20.0], [30.0]]], "float32")
    layer = LuongAttention()
    context, weights = layer(query, value, key=key)
    np.testing.assert_allclose(weights, [[0.2, 0.4, 0.4]], atol=1e-6)
    np.testing.assert_allclose(context, [[22.0]], atol=1e-5)
    context, weights = layer(query, value, key=key, mask=np.array([[True, True, False]]))
    np.testing.assert_allclose(weights, [[1 / 3, 2 / 3, 0]], atol=1e-6)
    np.testing.assert_allclose(context, [[50 / 3]], atol=1e-5)


def test_concat_units_default_to_the_query_depth():
    layer = LuongAttention(score="concat")
    layer.build((B, DQ), (B, TV, DV), (B, TV, DK))
    assert tuple(layer.kernel.shape) == (DQ + DK, DQ)
    assert tuple(layer.v.shape) == (DQ,)
    assert layer.get_config()["units"] is None
    layer = LuongAttention(score="concat", units=9)
    layer.build((B, DQ), (B, TV, DV), (B, TV, DK))
    assert tuple(layer.kernel.shape) == (DQ + DK, 9)


def test_weights_per_score():
    shapes = {}
    for score in ["dot", "general", "concat"]:
        layer = LuongAttention(score=score, scale="learned")
        layer.build((B, DQ), (B, TV, DV), (B, TV, DQ if score == "dot" else DK))
        shapes[score] = [(w.name, tuple(w.shape)) for w in layer.trainable_weights]
    assert shapes == {
        "dot": [("scale_factor", ())],
        "general": [("kernel", (DQ, DK)), ("scale_factor", ())],
        "concat": [("kernel", (DQ + DK, DQ)), ("v", (DQ,)), ("scale_factor", ())],
    }


@pytest.mark.parametrize(
    "init_kwargs, query_shape, key_dim, num_weights",
    [
        ({"score": "dot"}, (B, TQ, DQ), DQ, 0),
        ({"score": "dot", "scale": "learned", "dropout": 0.1}, (B, DQ), DQ, 1),
        ({"score": "general", "scale": "sqrt"}, (B, TQ, DQ), DK, 1),
        ({"score": "concat", "units": 5, "scale": "learned"}, (B, DQ), DK, 3),
    ],
    ids=["dot", "dot_learned_dropout_one_step", "general_sqrt", "concat_learned_one_step"],
)
def test_layer_contract(init_kwargs, query_shape, key_dim, num_weights):
    rng = np.random.default_rng(0)
    input_data = {
        "query": rng.normal(size=query_shape).astype("float32"),
        "value": rng.normal(size=(B, TV, DV)).astype("float32"),
        "key": rng.normal(size=(B, TV, key_dim)).astype("float32"),
        "mask": MASK,
    }
    batch_dims = query_shape[:-1]
    run_layer_test(
        LuongAttention,
        init_kwargs,
        input_data,
        expected_output_shape=(batch_dims + (DV,), batch_dims + (TV,)),
        expected_num_trainable_weights=num_weights,
    )


def test_defaults():
    config = LuongAttention().get_config()
    assert (config["score"], config["units"], config["scale"], config["dropout"]) == (
        "dot",
        None,
        None,
        0.0,
    )


def test_unknown_score_is_rejected():
    with pytest.raises(
        ValueError, match=r"`score` must be one of \('dot', 'general', 'concat'\); received"
    ):
        LuongAttention(score="additive")


def test_unknown_scale_is_rejected():
    with pytest.raises(
        ValueError, match=r"`scale` must be one of \(None, 'learned', 'sqrt'\); received"
    ):
        LuongAttention(scale=True)


@pytest.mark.parametrize("units", [0, -3, 1.5])
def test_units_must_be_a_positive_integer_or_none(units):
    with pytest.raises(ValueError, match="`units` must be a positive integer or None"):
        LuongAttention(score="concat", units=units)


def test_dot_with_different_query_and_key_depths_is_rejected():
    query, value, key = inputs(key_dim=DK)
    match = r'score="dot" needs the query and the key to have the same depth.*Dq=4 and Dk=6'
    with pytest.raises(ValueError, match=match + r'.*Use score="general" or score="concat"'):
        LuongAttention()(query, value, key=key)
    layer = LuongAttention()
    layer.build(query.shape, value.shape, (B, TV, DQ))
    with pytest.raises(ValueError, match=match):  # also through attend() on a built layer
        layer.attend(query, value, key)
