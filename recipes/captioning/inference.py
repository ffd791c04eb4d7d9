"""Using a trained captioning run: caption images, attention overlays; the same API over an
exported SavedModel; and the `caption` command line.

    >>> from recipes import load
    >>> [c.text for c in load("runs/captioning/latest").caption(["scene.png"])]
"""

from __future__ import annotations

import dataclasses
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from recipes import plot_attention, runner
from recipes.captioning.config import CaptioningConfig, config_from_json
from recipes.captioning.data import CaptionSplit
from recipes.commands import check_counts, open_model, saved_model_folder, signature_inputs
from zoo import decoding, plots, text
from zoo import images as zoo_images
from zoo.data import coco
from zoo.errors import DataError, RunError
from zoo.image_captioner import ImageCaptioner
from zoo.images import resize_uint8


@dataclasses.dataclass
class Caption:
    """One caption: its text, words, score, and attention maps `(len(tokens) + 1, h, w)`: the
    grid the decoder looked at when it emitted each word (the last map: the end token's).
    Without attention the maps have `h = w = 0`."""

    text: str
    tokens: list
    score: float
    attention: np.ndarray


class Captioner:
    """A trained captioning model with its vocabulary and decoding settings."""

    def __init__(self, model: ImageCaptioner, vocab: text.Vocabulary, config: CaptioningConfig):
        self.model = model
        self.vocab = vocab
        self.config = config
        self.image_size = config.image_size
        self.grid_shape = model.grid_shape(self.image_size)
        self._decoders = {}

    @classmethod
    def from_run(cls, run_dir: str, weights: str = "model.keras") -> "Captioner":
        run_dir, config, model = runner.load_run("captioning", config_from_json, run_dir, weights)
        return cls(model, text.Vocabulary.load(os.path.join(run_dir, "vocab.txt")), config)

    def load_images(self, images) -> np.ndarray:
        """Paths, encoded bytes or arrays (`(H, W, 3)`, `(H, W)`, or a batch `(B, H, W, 3)`,
        uint8 or float in [0, 255]) -> uint8 `(B, image_size, image_size, 3)`."""
        size = self.image_size
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, (str, bytes, os.PathLike, np.ndarray)):
            images = [images]
        out = np.zeros((len(images), size, size, 3), np.uint8)
        for n, image in enumerate(images):
            if isinstance(image, (str, os.PathLike)):
                out[n] = coco.load_image(image, size)
            elif isinstance(image, (bytes, bytearray)):
                # The header is checked before decoding (format, zoo.images size limits).
                out[n] = coco.decode_bytes(bytes(image), size, f"image {n}")
            else:
                out[n] = _resize_array(image, size, n)
        return out

    def _decoder(self, beam: int, length_penalty: float):
        key = (beam, length_penalty)
        if key not in self._decoders:
            model = self.model
            size = self.image_size

            @tf.function(
                input_signature=[
                    tf.TensorSpec((None, size, size, 3), tf.uint8),
                    tf.TensorSpec((), tf.int32),
                ]
            )
            def run(images, max_length):
                step_fn, state, constants = model.decoding_inputs(images)
                start = tf.fill(tf.shape(images)[:1], text.START_ID)
                if beam == 1:
                    return decoding.greedy_search(
                        step_fn, state, constants, start, text.END_ID, max_length
                    )
                out = decoding.beam_search(
                    step_fn, state, constants, start, text.END_ID, max_length,
                    beam_size=beam, length_penalty=length_penalty,
                )
                return {k: out[k][:, 0] for k in ("tokens", "lengths", "attention", "score")}

            self._decoders[key] = run
        return self._decoders[key]

    def decode_images(self, images: np.ndarray, beam: int = 1, length_penalty=None) -> dict:
        """uint8 `(B, S, S, 3)` -> numpy dict of tokens `(B, T)`, lengths, attention
        `(B, T, h*w)` and score."""
        lp = self.config.length_penalty if length_penalty is None else length_penalty
        if len(images) == 0:
            # An empty batch never reaches the model: oneDNN's rewrite of the batch-normalised
            # CNN fails on a zero-sized batch on CPUs where it is on.
            h, w = self.grid_shape
            return {"tokens": np.zeros((0, 0), np.int32), "lengths": np.zeros((0,), np.int32),
                    "attention": np.zeros((0, 0, h * w), np.float32),
                    "score": np.zeros((0,), np.float32)}
        run = self._decoder(int(beam), float(lp))
        out = run(tf.constant(images, tf.uint8), tf.constant(self.config.max_caption_length + 1))
        return {k: v.numpy() for k, v in out.items()}

    def caption(self, images, beam=None, batch_size=64, length_penalty=None, progress=None):
        """Captions images; returns one `Caption` per image, in input order.

        Args:
            images: a list of image paths, encoded image bytes (JPEG, PNG, ...) or arrays (see
                `load_images`), or one uint8 batch `(B, H, W, 3)`. Images are resized to the
                model's `image_size`.
            beam: beam size; 1 is greedy search. Defaults to the run's `beam_size`.
            batch_size: images decoded at once.
            length_penalty: GNMT's alpha for beam search. Defaults to the run's.
            progress: optional callable(n_done) called after each batch.
        """
        beam = self.config.beam_size if beam is None else int(beam)
        if beam < 1:
            raise ValueError(f"beam={beam}: must be at least 1 (1 is greedy search)")
        pixels = self.load_images(images)
        results = []
        for start in range(0, len(pixels), batch_size):
            out = self.decode_images(pixels[start : start + batch_size], beam, length_penalty)
            results += [self._result(out, row) for row in range(len(out["tokens"]))]
            if progress is not None:
                progress(len(out["tokens"]))
        return results

    def _result(self, out, row) -> Caption:
        n = int(out["lengths"][row])
        words = [self.vocab.tokens[i] for i in out["tokens"][row, :n]]
        h, w = self.grid_shape if self.model.decoder.attention is not None else (0, 0)
        # One map per word, and the end token's when it was emitted.
        steps = n + int(n < out["tokens"].shape[1] and out["tokens"][row, n] == text.END_ID)
        attention = out["attention"][row, :steps].reshape(steps, h, w)
        return Caption(
            text=" ".join(words), tokens=words, score=float(out["score"][row]), attention=attention
        )


def _resize_array(image, size, n):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4) or 0 in image.shape:
        raise DataError(
            f"image {n} has shape {image.shape}; expected (H, W, 3), (H, W, 4), (H, W, 1) or (H, W)"
        )
    image = image[..., :3]
    if image.shape[:2] == (size, size) and image.dtype == np.uint8:
        return image
    if image.dtype != np.uint8:  # float in [0, 255]: already as large as it gets
        image = np.asarray(image, np.float32)
    # uint8 pixels are resized as they are: no float32 copy of a large image is made.
    return resize_uint8(image, size).numpy()


def plot_caption(image, result: Caption, path, boxes=None):
    """The image, then one panel per generated word with its attention map overlaid."""
    words = result.tokens + [text.END]  # the end token's map, where the caption ended
    words = words[: len(result.attention)]
    return plots.plot_caption_attention(image, words, result.attention, path, boxes=boxes)


class CaptionImages(keras.callbacks.Callback):
    """Every epoch: greedy-captions a fixed handful of validation images and writes their
    attention overlays to TensorBoard (`logs/attention`), to watch the attention form."""

    def __init__(self, captioner: Captioner, split: CaptionSplit, run_dir, count=3):
        super().__init__()
        self.captioner = captioner
        self.images = split.images[:count]
        self.boxes = [s.boxes for s in split.scenes[:count]] if split.scenes else [None] * count
        self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs", "attention"))

    def on_epoch_end(self, epoch, logs=None):
        if self.captioner.model.decoder.attention is None:
            return
        results = self.captioner.caption(self.images, beam=1)
        with self.writer.as_default():
            for i, result in enumerate(results):
                fig = plot_caption(self.images[i], result, None, self.boxes[i])
                tf.summary.image(f"caption/{i}", plots.figure_to_image(fig), step=epoch + 1)
        self.writer.flush()


class SavedModelCaptioner:
    """An exported captioning SavedModel (`python -m export captioning`) behind the two calls the
    caption command makes on a `Captioner`: `load_images` and `caption`. Each image goes to the
    SavedModel at its own size (the graph resizes it as `Captioner` does); `beam=1` calls the
    `greedy` signature, any other beam `serving_default` (the run's beam size, fixed at export).
    """

    def __init__(self, path: str):
        self.path = saved_model_folder(path, "captioning")
        self.model = tf.saved_model.load(self.path)
        signatures = sorted(self.model.signatures)
        inputs = signature_inputs(self.model) if "serving_default" in signatures else []
        if "greedy" not in signatures or inputs != ["image"]:
            raise RunError(
                f"{self.path} is not a captioning SavedModel: expected the signatures "
                f"serving_default and greedy taking `image`, found {signatures} taking {inputs}; "
                "`make export RECIPE=captioning` writes one"
            )

    def load_images(self, images) -> list:
        """Image files (or encoded bytes) -> uint8 `(H, W, 3)` arrays at their own size. Each
        header is checked before decoding (`zoo.images`: JPEG / PNG / GIF / BMP only, at most
        `MAX_IMAGE_BYTES` bytes and `MAX_IMAGE_PIXELS` pixels); a `DataError` names the image."""
        out = []
        for n, image in enumerate(images):
            if isinstance(image, (bytes, bytearray)):
                name, image = f"image {n}", bytes(image)
            else:
                name = f"image file {os.fspath(image)!r}"
                image = coco.read_image_file(image)
            zoo_images.check_bytes(image, name)
            try:
                out.append(tf.io.decode_image(image, channels=3, expand_animations=False).numpy())
            except tf.errors.OpError:
                raise DataError(
                    f"Cannot read {name}: it is a corrupt {zoo_images.FORMATS} file that "
                    "TensorFlow cannot decode."
                ) from None
        return out

    def caption(self, images, beam=None, batch_size=1, progress=None) -> list:
        signature = self.model.signatures["greedy" if beam == 1 else "serving_default"]
        results = []
        for image in images:
            out = signature(image=tf.constant(image[None], tf.uint8))
            words = [t.decode("utf-8") for t in out["tokens"].numpy()[0] if t]
            ended = "[END]" in words
            words = words[: words.index("[END]")] if ended else words
            results.append(Caption(
                text=out["caption"].numpy()[0].decode("utf-8"), tokens=words,
                score=float(out["score"].numpy()[0]),
                attention=out["attention"].numpy()[0, : len(words) + ended],
            ))
            if progress is not None:
                progress(1)
        return results


# -- the caption command ----------------------------------------------------------------


def caption_command(args, recipe) -> int:
    """`python -m recipes caption captioning IMAGE ...`: prints `image<TAB>caption` lines; an
    image that cannot be read is named on stderr and skipped (exit status 1 at the end)."""
    if not args.images:
        raise ValueError("nothing to caption: give one or more image files")
    check_counts(args.beam)
    model = open_model(recipe, args.run, args.model)
    names, pixels, failed = [], [], 0
    for path in args.images:
        try:
            pixels.append(model.load_images([path])[0])
            names.append(path)
        except DataError as e:
            failed += 1
            print(f"skipped: {e}", file=sys.stderr)
    results = model.caption(pixels, beam=args.beam) if pixels else []
    for name, result in zip(names, results, strict=True):
        print(f"{name}\t{result.text}")
    sys.stdout.flush()
    if args.plot:
        width = len(str(len(names)))
        written = 0
        for n, (name, result) in enumerate(zip(names, results, strict=True), 1):
            if result.attention.size == 0:
                continue  # a model without attention has no maps to draw
            stem = os.path.splitext(os.path.basename(name))[0]
            # The file itself, at its own size: the maps are stretched over the whole image.
            plot_attention(result, os.path.join(args.plot, f"caption-{n:0{width}d}-{stem}.png"),
                           image=name)
            written += 1
        print(f"wrote {written} attention overlay(s) to {args.plot}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.images)} images could not be read", file=sys.stderr)
    return 1 if failed else 0
