"""Image encoders for captioning: images in, a grid of feature vectors out for attention to scan.

A captioner's attention looks at the encoder's `h x w` grid: each cell is one "annotation vector"
seeing one patch of the image (Xu et al., 2015). Two kinds of encoder:
- `SmallCNNEncoder`, a three-block CNN trained from scratch, fast on a CPU (64x64 -> 8x8);
- `keras.applications` backbones (MobileNetV3, EfficientNet, ConvNeXt) through
  `build_image_encoder`, randomly initialised or with ImageNet weights.

Every encoder takes images with values in [0, 255] (uint8 or float) and rescales inside, so the
same uint8 tensor can go to training, evaluation and an exported serving signature.

Reference:
    [Xu et al., 2015. Show, Attend and Tell: Neural Image Caption Generation with Visual
    Attention](https://arxiv.org/abs/1502.03044)
"""

from __future__ import annotations

import os

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class SmallCNNEncoder(keras.layers.Layer):
    """A small CNN that turns images into a grid of feature vectors.

    Each block is a 3x3 convolution ("same" padding) with ReLU, then 2x2 max pooling, so the grid
    is the image size divided by `2 ** len(filters)` (rounded up): 64x64 -> 8x8 with the default
    three blocks. A final 1x1 projection (linear) maps each cell to `feature_dim` values.
    Pixel values in [0, 255] are rescaled to [0, 1] first.

    Args:
        filters: output channels of each convolution block. Defaults to `(32, 64, 128)`.
        feature_dim: size of each output feature vector. Defaults to `128`.
        dropout: dropout rate on the output features, during training. Defaults to `0.0`.
        batch_norm: batch-normalise each convolution's output (before the ReLU), which makes a
            CNN trained from scratch learn much faster. Defaults to `False`.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        images: images `(batch_size, height, width, channels)`, uint8 or float in [0, 255].
        training: whether dropout is applied.

    Returns:
        Features `(batch_size, h, w, feature_dim)`, with `h = ceil(height / 2 ** len(filters))`,
        likewise `w`.

    Example:

    >>> encoder = SmallCNNEncoder()
    >>> encoder(np.zeros((2, 64, 64, 3), "uint8")).shape
    (2, 8, 8, 128)
    """

    def __init__(
        self, filters=(32, 64, 128), feature_dim=128, dropout=0.0, batch_norm=False, **kwargs
    ):
        super().__init__(**kwargs)
        filters = tuple(int(f) for f in filters)
        if not filters or min(filters) < 1:
            raise ValueError(f"`filters` must be positive integers, received {filters!r}.")
        if int(feature_dim) < 1:
            raise ValueError(f"`feature_dim` must be a positive integer, received {feature_dim!r}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), received {dropout!r}.")
        self.filters = filters
        self.feature_dim = int(feature_dim)
        self.dropout = float(dropout)
        self.seed_generator = keras.random.SeedGenerator() if self.dropout else None
        self.batch_norm = bool(batch_norm)
        self.norms = [
            keras.layers.BatchNormalization(momentum=0.9, name=f"conv{n}_norm")
            for n in range(len(filters) if self.batch_norm else 0)
        ]

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "SmallCNNEncoder expects images (batch_size, height, width, channels) with a known "
                f"number of channels, received shape {input_shape}."
            )
        channels = input_shape[-1]
        self.kernels, self.biases = [], []
        for n, filters in enumerate(self.filters):
            self.kernels.append(
                self.add_weight(
                    shape=(3, 3, channels, filters), initializer="he_normal", name=f"conv{n}_kernel"
                )
            )
            self.biases.append(
                self.add_weight(shape=(filters,), initializer="zeros", name=f"conv{n}_bias")
            )
            if self.batch_norm:
                self.norms[n].build((*input_shape[:-1], filters))
            channels = filters
        self.projection_kernel = self.add_weight(
            shape=(channels, self.feature_dim),
            initializer="glorot_uniform",
            name="projection_kernel",
        )
        self.projection_bias = self.add_weight(
            shape=(self.feature_dim,), initializer="zeros", name="projection_bias"
        )

    def call(self, images, training=None):
        x = ops.cast(images, self.compute_dtype) / 255.0
        for n, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            x = ops.conv(x, kernel, padding="same") + bias
            if self.batch_norm:
                x = self.norms[n](x, training=training)
            x = ops.relu(x)
            x = ops.max_pool(x, pool_size=2, strides=2, padding="same")
        x = ops.matmul(x, self.projection_kernel) + self.projection_bias
        if training and self.dropout:
            x = keras.random.dropout(x, self.dropout, seed=self.seed_generator)
        return x

    def compute_output_shape(self, input_shape):
        scale = 2 ** len(self.filters)
        batch, height, width = input_shape[:3]
        height, width = (None if s is None else -(-s // scale) for s in (height, width))
        return (batch, height, width, self.feature_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=list(self.filters),
            feature_dim=self.feature_dim,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
        )
        return config


# keras.applications backbones that take pixels in [0, 255] and preprocess inside.
_APPLICATIONS = {
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": True}),
    "mobilenet_v3_large": ("MobileNetV3Large", {"include_preprocessing": True}),
    "efficientnet_b0": ("EfficientNetB0", {}),
    "efficientnet_v2_b0": ("EfficientNetV2B0", {"include_preprocessing": True}),
    "convnext_tiny": ("ConvNeXtTiny", {"include_preprocessing": True}),
}
BACKBONES = ("small_cnn", *_APPLICATIONS)


def build_image_encoder(
    backbone="small_cnn",
    weights=None,
    trainable=True,
    image_size=None,
    feature_dim=None,
    dropout=0.0,
    filters=(32, 64, 128),
    batch_norm=False,
):
    """Builds an image encoder: images `(batch, H, W, 3)` in [0, 255] -> `(batch, h, w, d)`.

    Args:
        backbone: one of `BACKBONES`: `"small_cnn"` (a `SmallCNNEncoder`, from scratch) or a
            `keras.applications` network without its classifier (`"mobilenet_v3_small"`,
            `"mobilenet_v3_large"`, `"efficientnet_b0"`, `"efficientnet_v2_b0"`,
            `"convnext_tiny"`). Defaults to `"small_cnn"`.
        weights: `None` (random initialisation, works offline), `"imagenet"` (downloaded by Keras
            on first use into `~/.keras/models/`, or found there), or the path of a weights file
            (`.weights.h5`, `.keras` or a legacy `.h5`, e.g. Keras' `..._notop.h5` file).
            Defaults to `None`.
        trainable: whether the backbone's weights train (`False` freezes it, batch norm
            included). Defaults to `True`.
        image_size: side of the square input images, or `None` for any size. Defaults to `None`.
        feature_dim: size of the output features. For `"small_cnn"` the CNN's projection size
            (`None` means 128); for other backbones `None` keeps the backbone's channels, an int
            adds a trainable 1x1 projection. Defaults to `None`.
        dropout: dropout rate on the output features, during training. Defaults to `0.0`.
        filters: the `"small_cnn"` channels of each convolution block (ignored by other
            backbones). Defaults to `(32, 64, 128)`.
        batch_norm: batch normalisation in the `"small_cnn"` blocks (see `SmallCNNEncoder`).
            Defaults to `False`.

    Returns:
        A `keras.Model` named `"<backbone>_encoder"` mapping float32 images (uint8 is accepted
        and cast) to features `(batch_size, h, w, d)`.

    Raises:
        ValueError: an unknown backbone, or `weights="imagenet"` for `"small_cnn"`.
        FileNotFoundError: a weights path that does not exist.
        RuntimeError: ImageNet weights that are neither cached nor downloadable (no internet);
            the message says how to provide them.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown image encoder backbone {backbone!r}; known: {list(BACKBONES)}.")
    is_path = weights is not None and weights != "imagenet"
    if is_path:
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"Weights file {weights!r} for the {backbone!r} image encoder does not exist."
            )
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")

    if backbone == "small_cnn":
        if weights == "imagenet":
            raise ValueError(
                "The 'small_cnn' image encoder is trained from scratch and has no ImageNet "
                "weights: pass weights=None, or choose one of "
                f"{[b for b in BACKBONES if b != 'small_cnn']}."
            )
        cnn = SmallCNNEncoder(
            filters,
            128 if feature_dim is None else feature_dim,
            dropout=dropout,
            batch_norm=batch_norm,
            name="cnn",
        )
        cnn.trainable = trainable
        model = keras.Model(inputs, cnn(inputs), name=f"{backbone}_encoder")
        if is_path:
            _load_weights(model, weights, backbone)
        return model

    class_name, options = _APPLICATIONS[backbone]
    application = getattr(keras.applications, class_name)
    try:
        network = application(
            include_top=False,
            weights=None if is_path else weights,
            input_shape=(image_size, image_size, 3),
            **options,
        )
    except Exception as error:
        if weights == "imagenet" and _is_download_failure(error):
            raise RuntimeError(_offline_message(backbone, error)) from error
        raise
    if is_path:
        _load_weights(network, weights, backbone)
    network.trainable = trainable
    features = network(inputs)
    if feature_dim is not None:
        features = keras.layers.Dense(int(feature_dim), name="projection")(features)
    if dropout:
        features = keras.layers.Dropout(dropout, name="feature_dropout")(features)
    return keras.Model(inputs, features, name=f"{backbone}_encoder")


def _load_weights(model, path, backbone):
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"Could not load weights file {path!r} into the {backbone!r} image encoder (built "
            f"without its classifier head, so use the 'notop' file): {error}"
        ) from error


def _is_download_failure(error):
    # Keras' get_file turns urllib errors into a bare Exception("URL fetch failure on ...").
    return isinstance(error, OSError) or "URL fetch failure" in str(error)


def _offline_message(backbone, error):
    words = str(error).split()
    url = next((w.rstrip(":") for w in words if w.startswith(("http://", "https://"))), None)
    file_name = url.rsplit("/", 1)[-1] if url else "<the weights file>"
    where = os.path.join(_keras_home(), "models")
    return (
        f"Could not download the ImageNet weights of the {backbone!r} image encoder: this "
        f"machine seems to have no internet access ({error}). To use ImageNet weights offline, "
        f"download {url or 'the weights file'} on a connected machine, then either pass "
        f"weights='/path/to/{file_name}' or copy it to {where}{os.sep}{file_name}, where Keras "
        "looks before downloading. Or pass weights=None to start from random weights."
    )


def _keras_home():
    """The folder Keras caches downloads in (its `models/` holds application weights)."""
    try:  # Keras reads $KERAS_HOME once, at import; ask it rather than guess.
        from keras.src.backend.config import keras_home

        home = os.path.expanduser(keras_home())
    except ImportError:
        home = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    if not os.access(home, os.W_OK):  # where Keras' get_file falls back to
        home = os.path.join("/tmp", ".keras")
    return home
