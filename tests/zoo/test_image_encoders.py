import os

import keras
import numpy as np
import pytest

from tests.helpers import run_layer_test
from zoo.image_encoders import BACKBONES, SmallCNNEncoder, build_image_encoder

IMAGES = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")


def test_small_cnn_encoder_layer_checks():
    run_layer_test(
        SmallCNNEncoder,
        {"filters": [4, 8], "feature_dim": 6, "dropout": 0.0},
        {"images": IMAGES},
        expected_output_shape=(2, 8, 8, 6),
        expected_num_trainable_weights=6,
    )


def test_small_cnn_default_grid_rescales_and_rounds_up():
    encoder = SmallCNNEncoder()
    images = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3)).astype("uint8")
    features = keras.ops.convert_to_numpy(encoder(images))
    assert features.shape == (1, 8, 8, 128)
    # uint8 and float images with the same values give the same features.
    np.testing.assert_allclose(encoder(images.astype("float32")), features, atol=1e-5)
    assert encoder(np.zeros((1, 20, 36, 3), "uint8")).shape == (1, 3, 5, 128)
    assert encoder.compute_output_shape((None, None, 36, 3)) == (None, None, 5, 128)


def test_small_cnn_dropout_only_in_training():
    encoder = SmallCNNEncoder(filters=(4,), feature_dim=8, dropout=0.5)
    eval_a, eval_b = encoder(IMAGES), encoder(IMAGES)
    np.testing.assert_allclose(eval_a, eval_b)
    trained = keras.ops.convert_to_numpy(encoder(IMAGES, training=True))
    assert (trained == 0).mean() > 0.3


@pytest.mark.parametrize(
    "kwargs, match",
    [({"filters": ()}, "filters"), ({"feature_dim": 0}, "feature_dim"), ({"dropout": 1.0}, "dropout")],
)
def test_small_cnn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallCNNEncoder(**kwargs)


def test_build_small_cnn_and_load_a_weights_file(tmp_path):
    encoder = build_image_encoder("small_cnn", image_size=32, feature_dim=16)
    assert encoder.name == "small_cnn_encoder"
    assert encoder.output_shape == (None, 4, 4, 16)
    path = str(tmp_path / "cnn.weights.h5")
    encoder.save_weights(path)
    again = build_image_encoder("small_cnn", weights=path, image_size=32, feature_dim=16)
    np.testing.assert_allclose(again(IMAGES), encoder(IMAGES), atol=1e-6)
    frozen = build_image_encoder("small_cnn", trainable=False)
    assert not frozen.trainable_weights
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_image_encoder("small_cnn", weights="imagenet")
    with pytest.raises(FileNotFoundError, match="missing.weights.h5.*does not exist"):
        build_image_encoder("small_cnn", weights=str(tmp_path / "missing.weights.h5"))


def test_mobilenet_v3_small_without_weights_gives_a_grid(tmp_path):
    encoder = build_image_encoder("mobilenet_v3_small", weights=None, image_size=64, feature_dim=32)
    features = encoder(np.zeros((1, 64, 64, 3), "uint8"))
    assert features.shape == (1, 2, 2, 32)  # MobileNetV3 strides by 32
    # A weights file saved from one encoder loads into a fresh one.
    path = str(tmp_path / "backbone.weights.h5")
    backbone = encoder.get_layer("MobileNetV3Small")
    backbone.save_weights(path)
    again = build_image_encoder("mobilenet_v3_small", weights=path, image_size=64)
    reference = backbone(np.full((1, 64, 64, 3), 128, "float32"))
    np.testing.assert_allclose(again(np.full((1, 64, 64, 3), 128, "uint8")), reference, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
def test_imagenet_weights_offline_give_a_clear_error():
    # This machine (and CI) cannot download. Where the weights are cached or a network is
    # available, building succeeds instead: then there is no offline error to check.
    try:
        encoder = build_image_encoder("mobilenet_v3_small", weights="imagenet", image_size=64)
    except RuntimeError as error:
        message = str(error)
    else:
        assert encoder.output_shape[-1] == 576
        pytest.skip("ImageNet weights were available: this machine is online or has them cached")
    assert "Could not download the ImageNet weights of the 'mobilenet_v3_small'" in message
    assert "no internet access" in message
    assert "weights='/path/to/weights_mobilenet_v3_small" in message
    assert os.path.join("models", "weights_mobilenet_v3_small") in message
    assert "weights=None" in message


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown image encoder backbone 'resnet9'.*mobilenet_v3_small"):
        build_image_encoder("resnet9")
    assert BACKBONES[0] == "small_cnn"
