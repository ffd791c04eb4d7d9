import keras
import numpy as np
import pytest

from zoo.image_captioner import ImageCaptioner, doubly_stochastic_penalty

TINY = dict(
    vocab_size=20, image_size=32, encoder_filters=(4, 8, 8), feature_dim=8, embedding_dim=8,
    units=8, dropout=0.0,
)


def _inputs(seed=0, batch=3, steps=5):
    rng = np.random.default_rng(seed)
    target_in = rng.integers(4, 20, (batch, steps)).astype("int32")
    target_in[0, 3:] = 0  # a shorter caption, padded
    return {"image": rng.integers(0, 256, (batch, 32, 32, 3)).astype("uint8"),
            "target_in": target_in}


def test_doubly_stochastic_penalty_by_hand():
    # One caption, 2 steps (the second padded away), 3 regions.
    weights = np.array([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]], "float32")
    mask = np.array([[True, False]])
    # totals (0.5, 0.5, 0) -> 0.25 + 0.25 + 1
    assert float(doubly_stochastic_penalty(weights, mask)) == pytest.approx(1.5)
    both = doubly_stochastic_penalty(np.concatenate([weights, weights]), np.ones((2, 2), bool))
    # totals (1.5, 0.5, 0) -> 0.25 + 0.25 + 1, for each of the two captions
    assert float(both) == pytest.approx(3.0)


def test_call_shapes_and_the_added_regulariser():
    model = ImageCaptioner(**TINY, doubly_stochastic=0.5)
    x = _inputs()
    logits = model(x)
    assert tuple(logits.shape) == (3, 5, 20)
    assert model.grid_shape() == (4, 4)
    _, weights = model.forward(x["image"], x["target_in"])
    assert tuple(weights.shape) == (3, 5, 16)
    mask = x["target_in"] != 0
    expected = 0.5 * float(doubly_stochastic_penalty(weights, mask)) / mask.sum()
    assert len(model.losses) == 1
    assert float(model.losses[0]) == pytest.approx(expected, rel=1e-5)

    off = ImageCaptioner(**TINY, doubly_stochastic=0.0)
    off(x)
    assert not off.losses
    blind = ImageCaptioner(**TINY, attention="none")
    blind(x)
    assert not blind.losses and blind.decoder.attention is None
    assert tuple(blind.forward(x["image"], x["target_in"])[1].shape) == (3, 5, 0)


def test_teacher_forcing_matches_step_by_step_decoding():
    model = ImageCaptioner(**TINY)
    x = _inputs(1)
    logits, weights = model.forward(x["image"], x["target_in"], training=False)
    step_fn, state, constants = model.decoding_inputs(x["image"])
    for t in range(5):
        step_logits, state, step_weights = step_fn(x["target_in"][:, t], state, constants)
        np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-5)
        np.testing.assert_allclose(step_weights, weights[:, t], atol=1e-6)


def test_config_round_trip_and_keras_save(tmp_path):
    model = ImageCaptioner(**TINY, attention="luong_general", context_gate=False)
    model.build()
    x = _inputs(2)
    config = model.get_config()
    again = ImageCaptioner.from_config(config)
    assert again.get_config() == config
    path = str(tmp_path / "captioner.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_feature_norm_normalises_each_cell_and_saves(tmp_path):
    model = ImageCaptioner(**TINY, feature_norm=True, position_embedding=False)
    x = _inputs(3)
    memory, _ = model.encode(x["image"])
    # Each cell's features standardised (LayerNormalization's initial gain 1 and bias 0).
    grid = np.asarray(model.encoder(x["image"].astype("float32"))).reshape(memory.shape)
    mean, var = grid.mean(-1, keepdims=True), grid.var(-1, keepdims=True)
    eps = model.feature_normalization.epsilon
    np.testing.assert_allclose(memory, (grid - mean) / np.sqrt(var + eps), atol=1e-4)
    assert np.abs(np.asarray(memory) - grid).max() > 1e-3  # it did change something
    without = ImageCaptioner(**TINY, position_embedding=False)
    without.build()
    assert len(model.weights) == len(without.weights) + 2  # the norm's gamma and beta
    path = str(tmp_path / "normed.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.feature_norm
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="doubly_stochastic.*>= 0"):
        ImageCaptioner(**TINY, doubly_stochastic=-1.0)
    with pytest.raises(ValueError, match="position_embedding=True.*image_size"):
        ImageCaptioner(**{**TINY, "image_size": None})
    with pytest.raises(ValueError, match="unknown attention 'bahdanu'"):
        ImageCaptioner(**TINY, attention="bahdanu")
