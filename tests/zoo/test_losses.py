"""The compile loss: per-token values whose plain mean is the masked mean."""

import keras
import numpy as np

from zoo.losses import masked_loss, masked_token_losses


def _batch():
    rng = np.random.default_rng(0)
    y = rng.integers(1, 7, size=(3, 5)).astype("int32")
    y[0, 3:] = 0  # padding
    y[2, 1:] = 0
    logits = rng.normal(size=(3, 5, 7)).astype("float32")
    return y, logits


def test_mean_of_token_losses_is_the_mean_over_real_tokens():
    y, logits = _batch()
    ce = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    )
    expected = ce[y != 0].mean()
    per_token = keras.ops.convert_to_numpy(masked_token_losses(y, logits))
    assert per_token.shape == y.shape
    assert np.all(per_token[y == 0] == 0.0)
    np.testing.assert_allclose(per_token.mean(), expected, rtol=1e-6)
    np.testing.assert_allclose(float(masked_loss(y, logits)), expected, rtol=1e-6)


def test_keras_reduces_it_to_the_masked_mean():
    # What `compile(loss=masked_token_losses)` reports: Keras' own reduction of the values.
    y, logits = _batch()
    model = keras.Sequential([keras.Input((5, 7)), keras.layers.Identity()])
    model.compile(loss=masked_token_losses)
    reported = model.evaluate(logits, y, batch_size=3, verbose=0)
    np.testing.assert_allclose(reported, float(masked_loss(y, logits)), rtol=1e-5)
