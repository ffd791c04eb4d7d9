"""The captioning export: the SavedModel's signatures (pixels or encoded image files in,
captions out) and the TFLite model (pixels in, ids and attention maps out).

`export.export("captioning", ...)` uses this module's hooks: `NAME`, `OPTIONS` (none:
the text caps are nmt's), `run_files`, `load`, `save_saved_model` and `write_tflite` (see
`export/__init__.py`).

Files written under an exports root (default `exports/`), beside `export.layout`'s versions:

    exports/tflite/
      captioning.tflite          pixels in, ids and attention maps out (see `write_tflite`)
      captioning.vocab.txt       one token per line, line number = id (line 0 is padding "")
      captioning.json            shapes, special ids, preprocessing: what an app needs

## SavedModel

Everything from the request to the answer is in the SavedModel's graph, in TensorFlow ops, so it
loads in any process that has `tensorflow` and `tensorflow_text` and none of this project's code.

Signatures (`captioning_archive`): `serving_default` and `greedy` take `image` uint8
`[B, H, W, 3]`, `serving_bytes` takes `image_bytes` string `[B]` (encoded JPEG / PNG / GIF /
BMP); each returns `caption` string `[B]`, `tokens` string `[B, T_out]`, `attention` float32
`[B, T_out, h, w]` and `score` float32 `[B]`. Images of any other size are resized to the run's
`image_size` (bilinear, antialiased, aspect ratio not kept), as `Captioner.load_images` does,
from the uint8 pixels (only the resized image is ever float32); an image with no pixels is
captioned as a black image. `serving_bytes` judges each file by its header before decoding it
(`zoo.images`): bytes that are not a JPEG / PNG / GIF / BMP file (WebP, TIFF, text, empty), more
than `MAX_IMAGE_BYTES` (50 MiB) bytes or declaring more than `MAX_IMAGE_PIXELS` (25 million)
pixels fail that request with INVALID_ARGUMENT, naming the image (`image_bytes[i]`) and the
limit; so does a file that starts like an image but is corrupt. The server goes on. Grey or
RGBA pixel arrays do not fit `[B, H, W, 3]`: TF Serving refuses them before the model runs
(send 3 channels, or the encoded file to `serving_bytes`).

## TFLite

The TFLite model (`tflite_archive`) is the image encoder plus the whole greedy search loop in one
graph, converted with TFLite builtin ops only (`export.tflite`): input `image` uint8
`[1, image_size, image_size, 3]` (resize first); outputs `tokens` int32
`[1, max_caption_length + 1]`, `length` int32 `[1]`, `attention` float32
`[1, max_caption_length + 1, h, w]` (the feature grid each token looked at) and `score` float32
`[1]`; it decodes as the SavedModel's `greedy` signature.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from export import graph, tflite, warmup
from recipes.captioning.inference import Captioner

# -- the exporter's hooks (export/__init__.py) -----------------------------------------------

NAME = "captioning"
OPTIONS = ()  # no caps: `export.export` refuses the nmt text caps for this recipe


def run_files(config: dict) -> tuple[str, ...]:
    """The vocabulary a finished captioning run keeps beside `config.json` and `model.keras`."""
    return ("vocab.txt",)


def load(run_dir: str) -> Captioner:
    """The run's `recipes.captioning.Captioner` (model, vocabulary, config); a RunError for a
    run of another recipe."""
    return Captioner.from_run(run_dir)


def save_saved_model(captioner, folder: str, name: str = NAME) -> None:
    """Writes the captioning SavedModel (with its warmup requests) into `folder`; `name` is the
    model's name in TF Serving (the warmup requests carry it)."""
    captioning_archive(captioner).write_out(folder, verbose=False)
    size = int(captioner.image_size)
    images = warmup_images(size)
    png = [tf.io.encode_png(image).numpy() for image in images]
    warmup.write_requests(
        folder,
        [
            warmup.predict_request(name, "serving_default", {"image": images[:2]}),
            warmup.predict_request(name, "serving_default", {"image": images[2:]}),
            warmup.predict_request(name, "serving_bytes", {"image_bytes": png}),
            warmup.predict_request(name, "greedy", {"image": images[:1]}),
        ],
    )


def write_tflite(captioner, exports_root: str, quantize: bool = False,
                 name: str = NAME) -> list[str]:
    """Writes `exports_root/tflite/<name>.tflite` (and `<name>.dynamic_range.tflite` with
    `quantize`), `<name>.vocab.txt` and `<name>.json`, each to a temporary name then renamed;
    returns the paths written. The model: see the module docstring."""
    config = captioner.config
    size, out_length = int(captioner.image_size), int(config.max_caption_length) + 1
    meta = {
        "model": f"{name}.tflite",
        "vocab": f"{name}.vocab.txt",
        "inputs": {"image": ["uint8", [1, size, size, 3]]},
        "outputs": tflite.outputs_metadata(out_length, list(attention_grid(captioner))),
        "image_size": size,
        "max_caption_length": config.max_caption_length,
        "special_ids": tflite.SPECIAL_IDS,
        "preprocessing": "RGB uint8, resized to image_size x image_size (bilinear, antialiased)",
        "decoding": "greedy",
    }
    files = {f"{name}.vocab.txt": tflite.vocabulary_file(captioner.vocab.tokens)}
    return tflite.write(tflite_archive(captioner), exports_root, name, quantize, files, meta)


def attention_grid(captioner) -> tuple[int, int]:
    """`(h, w)`, the feature grid the decoder attends over; `(0, 0)` without attention."""
    if captioner.model.decoder.attention is None:
        return (0, 0)
    return tuple(captioner.grid_shape)


# -- the SavedModel's graph, in TensorFlow ops ---------------------------------------------

CAPTIONING_SIGNATURES = ("serving_default", "serving_bytes", "greedy")


def resize_images(images, size: int):
    """uint8 `[B, H, W, 3]` of any size -> uint8 `[B, size, size, 3]`, as
    `Captioner.load_images` resizes arrays: untouched when already `size x size`, else bilinear
    with antialiasing, rounded; an image with no pixels (`H` or `W` is 0) becomes black. The
    resize reads the uint8 pixels: only the resized images are ever float32."""
    from zoo.images import resize_uint8

    shape = tf.shape(images)

    def blank():
        return tf.zeros([shape[0], size, size, 3], tf.uint8)

    def same():
        return tf.ensure_shape(images, [None, size, size, 3])

    empty = tf.logical_or(shape[1] == 0, shape[2] == 0)
    is_size = tf.logical_and(shape[1] == size, shape[2] == size)
    return tf.cond(empty, blank, lambda: tf.cond(is_size, same, lambda: resize_uint8(images, size)))


def decode_images(image_bytes, size: int):
    """Encoded images `[B]` -> uint8 `[B, size, size, 3]` with `zoo.data.coco.decode_image` (as
    `Captioner.load_images` decodes bytes), one image at a time, so a request holds at most one
    full-size image. Each header is checked before its image is decoded: bytes that are not a
    JPEG, PNG, GIF or BMP file, more than `zoo.images.MAX_IMAGE_BYTES` bytes or declaring more
    than `zoo.images.MAX_IMAGE_PIXELS` pixels fail the request with INVALID_ARGUMENT, naming
    the image (`image_bytes[i]`) and the limit; so does a corrupt file."""
    from zoo.data import coco

    def one(args):
        index, data = args
        name = tf.strings.format("image_bytes[{}]", (index,))
        return coco.decode_image(data, size, name)

    indices = tf.range(tf.shape(image_bytes)[0])
    return tf.map_fn(one, (indices, image_bytes), parallel_iterations=1,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))


class CaptioningGraph:
    """The captioning model from images to captions, in TensorFlow ops.

    Args:
        captioner: a `recipes.captioning.Captioner` (model, vocabulary, config).
    """

    def __init__(self, captioner):
        self.model = captioner.model
        self.config = captioner.config
        self.image_size = int(captioner.image_size)
        self.strings = tf.constant(captioner.vocab.tokens)
        self.grid = attention_grid(captioner)

    def caption(self, images, beam_size: int):
        """uint8 `[B, image_size, image_size, 3]` -> caption, tokens, attention, score."""
        h, w = self.grid

        def empty():
            return {
                "caption": tf.zeros([0], tf.string),
                "attention": tf.zeros([0, 0, h, w], tf.float32),
                "tokens": tf.zeros([0, 0], tf.string),
                "score": tf.zeros([0], tf.float32),
            }

        return graph.unless_empty(tf.shape(images)[0], lambda: self._caption(images, beam_size),
                                  empty)

    def _caption(self, images, beam_size: int):
        out = graph.search(
            self.model.decoding_inputs(images),
            tf.shape(images)[0],
            int(self.config.max_caption_length) + 1,
            beam_size,
            self.config.length_penalty,
        )
        ids, lengths, attention = graph.trim(out)
        words = tf.gather(self.strings, ids)
        h, w = self.grid
        caption = tf.strings.reduce_join(
            tf.RaggedTensor.from_tensor(words, lengths=tf.minimum(lengths, tf.shape(ids)[1])),
            axis=-1, separator=" ",
        )
        shape = tf.concat([tf.shape(attention)[:2], [h, w]], 0)
        return {
            "caption": caption,
            "attention": tf.reshape(attention, shape),
            "tokens": words,
            "score": out["score"],
        }


def captioning_archive(captioner) -> keras.export.ExportArchive:
    """A `keras.export.ExportArchive` with the captioning signatures:

    - `serving_default`: `image` uint8 `[B, H, W, 3]` (any `H`, `W`; resized in the graph),
      beam search with the run's `beam_size` and `length_penalty`.
    - `serving_bytes`: `image_bytes` string `[B]` (encoded JPEG / PNG / GIF / BMP; TF Serving's
      REST API takes them as `{"b64": ...}`), the same search.
    - `greedy`: `image` as `serving_default`, greedy search (what the TFLite model does).

    Each returns `caption` string `[B]` (the words joined by spaces), `tokens` string
    `[B, T_out]` (the words, then `"[END]"` where emitted, padded with `""`), `attention`
    float32 `[B, T_out, h, w]` (the feature grid each token looked at; 0 after the end token)
    and `score` float32 `[B]`.
    """
    captioning = CaptioningGraph(captioner)
    size = captioning.image_size
    beam_size = int(captioner.config.beam_size)

    def serving_default(image):
        return captioning.caption(resize_images(image, size), beam_size)

    def serving_bytes(image_bytes):
        return captioning.caption(decode_images(image_bytes, size), beam_size)

    def greedy(image):
        return captioning.caption(resize_images(image, size), 1)

    pixels = [tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")]
    return graph.archive(captioner.model, {
        "serving_default": (serving_default, pixels),
        "serving_bytes": (serving_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        "greedy": (greedy, pixels),
    })


def warmup_images(size: int):
    """A black image, a noise image and a noise image of another size, uint8 `[H, W, 3]`."""
    rng = np.random.default_rng(0)
    return [
        np.zeros((size, size, 3), np.uint8),
        rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        rng.integers(0, 256, (size * 2, size, 3), dtype=np.uint8),
    ]


# -- the TFLite model ------------------------------------------------------------------------


def tflite_archive(captioner) -> keras.export.ExportArchive:
    """The fixed-shape greedy captioner (pixels in, ids and attention maps out), for
    `tflite.convert`."""
    model = captioner.model
    size = int(captioner.image_size)
    out_length = int(captioner.config.max_caption_length) + 1
    grid = list(attention_grid(captioner))

    def serving_default(image):
        out = graph.search(model.decoding_inputs(image), 1, out_length, beam_size=1)
        return tflite.fixed_outputs(out, out_length, grid)

    spec = [tf.TensorSpec([1, size, size, 3], tf.uint8, name="image")]
    return graph.archive(model, {"serving_default": (serving_default, spec)})
