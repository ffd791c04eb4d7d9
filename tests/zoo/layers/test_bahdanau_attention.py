import math

import numpy as np
import pytest

from tests.helpers import run_layer_test
from zoo.layers import BahdanauAttention

B, TQ, TV, DQ, DK, DV, UNITS = 2, 3, 5, 4, 6, 7, 8


def reference(layer, query, value, key, mask):
    """The formula in NumPy, with the layer's own weights."""
    w_q, w_k = np.asarray(layer.query_kernel), np.asarray(layer.key_kernel)
    b, v = np.asarray(layer.bias), np.asarray(layer.v)
    if layer.normalize:
        v = np.asarray(layer.g) * v / np.linalg.norm(v)
    hidden = np.tanh((query @ w_q)[:, :, None, :] + (key @ w_k)[:, None, :, :] + b)
    scores = hidden @ v
    if layer.score_activation == "sigmoid":
        scores = 1 / (1 + np.exp(-scores))
    scores = np.where(mask[:, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ value, weights


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("score_activation", [None, "sigmoid"])
def test_matches_the_formula_in_numpy(normalize, score_activation):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(B, TQ, DQ)).astype("float32")
    value = rng.normal(size=(B, TV, DV)).astype("float32")
    key = rng.normal(size=(B, TV, DK)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0]], bool)
    layer = BahdanauAttention(UNITS, normalize=normalize, score_activation=score_activation)
    layer.build(query.shape, value.shape, key.shape)
    # Non-zero bias and gain, so that the test sees them.
    layer.bias.assign(rng.normal(size=UNITS))
    if normalize:
        layer.g.assign(1.7)
    context, weights = layer(query, value, key=key, mask=mask)
    expected_context, expected_weights = reference(layer, query, value, key, mask)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(context, expected_context, atol=1e-5)


def test_golden_hand_worked_case():
    # One unit, W_q = W_k = v = 1, b = 0: score_j = tanh(q + k_j). With q = 0 and
    # k = [0, atanh(ln 2)] the scores are [0, ln 2], so the weights are [1/3, 2/3]
    # and the context of values [3, 6] is 3/3 + 12/3 = 5.
    layer = BahdanauAttention(1)
    layer.build((1, 1), (1, 2, 1))
    for weight in (layer.query_kernel, layer.key_kernel, layer.v):
        weight.assign(np.ones(weight.shape))
    key = np.array([[[0.0], [math.atanh(math.log(2))]]], "float32")
    value = np.array([[[3.0], [6.0]]], "float32")
    context, weights = layer(np.zeros((1, 1), "float32"), value, key=key)
    np.testing.assert_allclose(weights, [[1 / 3, 2 / 3]], atol=1e-6)
    np.testing.assert_allclose(context, [[5.0]], atol=1e-5)


def test_normalize_starts_with_gain_sqrt_one_over_units_and_v_of_that_norm():
    layer = BahdanauAttention(UNITS, normalize=True)
    layer.build((B, DQ), (B, TV, DV))
    assert math.isclose(float(layer.g), math.sqrt(1 / UNITS), rel_tol=1e-6)
    np.testing.assert_array_equal(np.asarray(layer.bias), 0.0)
    assert [w.name for w in layer.trainable_weights] == [
        "query_kernel",
        "key_kernel",
        "bias",
        "v",
        "g",
    ]


def test_sigmoid_bounds_the_largest_weight_by_e_over_e_plus_tv_minus_1():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(64, DQ)).astype("float32")
    value = rng.normal(size=(64, TV, DV)).astype("float32")
    sharp, bounded = BahdanauAttention(UNITS), BahdanauAttention(UNITS, score_activation="sigmoid")
    for layer in (sharp, bounded):
        layer.build(query.shape, value.shape)
    for s, b in zip(sharp.weights, bounded.weights, strict=True):
        b.assign(s)
    for layer in (sharp, bounded):  # drive the raw scores large
        layer.v.assign(np.asarray(layer.v) * 100 / np.linalg.norm(layer.v))
    bound = math.e / (math.e + TV - 1)
    assert np.asarray(bounded(query, value)[1]).max() <= bound + 1e-6
    assert np.asarray(sharp(query, value)[1]).max(-1).mean() > 0.9


@pytest.mark.parametrize(
    "init_kwargs, query_shape",
    [
        ({"units": UNITS}, (B, TQ, DQ)),
        ({"units": UNITS, "normalize": True, "dropout": 0.1}, (B, DQ)),
        ({"units": UNITS, "score_activation": "sigmoid"}, (B, TQ, DQ)),
    ],
    ids=["plain", "normalize_dropout_one_step", "sigmoid"],
)
def test_layer_contract(init_kwargs, query_shape):
    rng = np.random.default_rng(0)
    mask = np.ones((B, TV), bool)
    mask[1, 3:] = False
    input_data = {
        "query": rng.normal(size=query_shape).astype("float32"),
        "value": rng.normal(size=(B, TV, DV)).astype("float32"),
        "key": rng.normal(size=(B, TV, DK)).astype("float32"),
        "mask": mask,
    }
    batch_dims = query_shape[:-1]
    run_layer_test(
        BahdanauAttention,
        init_kwargs,
        input_data,
        expected_output_shape=(batch_dims + (DV,), batch_dims + (TV,)),
        expected_num_trainable_weights=5 if init_kwargs.get("normalize") else 4,
    )


def test_defaults():
    config = BahdanauAttention(16).get_config()
    assert (config["normalize"], config["score_activation"], config["dropout"]) == (
        False,
        None,
        0.0,
    )


@pytest.mark.parametrize("units", [0, 2.5, None])
def test_units_must_be_a_positive_integer(units):
    with pytest.raises(ValueError, match="`units` must be a positive integer; received"):
        BahdanauAttention(units)


def test_unknown_score_activation_is_rejected():
    with pytest.raises(ValueError, match=r"`score_activation` must be one of \(None, 'sigmoid'\)"):
        BahdanauAttention(UNITS, score_activation="tanh")
