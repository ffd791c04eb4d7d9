"""Recipe `captioning`: show, attend and tell (Xu et al., 2015).

A small CNN (or a `keras.applications` backbone) turns each image into an `h x w` grid of
feature vectors; an attentive LSTM decoder, started from the mean and the maximum feature,
captions the image looking at the grid through any `zoo.layers` attention, with the paper's
gating scalar and doubly stochastic attention regulariser available (both off by default).
Default data: captioned scenes of handwritten digits (no download), whose digit boxes let the
attention be scored; `data=coco:CAPTIONS.json:IMAGE_DIR` (or `coco_json=... image_dir=...`)
trains on a user's COCO-format captions.

    python -m recipes train captioning                 # or: make train RECIPE=captioning
    python -m recipes train captioning attention=none  # the baseline that sees no grid
    python -m recipes evaluate captioning --beam 1
    >>> from recipes import load
    >>> [c.text for c in load("runs/captioning/latest").caption(["scene.png"])]
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from recipes import training
from recipes.config import (
    ConfigError,
    check_ranges,
    check_run_id,
    fingerprint,
    to_dict,
    write_json,
)
from recipes.trials import CachedTrialData
from zoo import caption_metrics, decoding, plots, text
from zoo.data import coco, digit_scenes
from zoo.errors import DataError
from zoo.image_captioner import ImageCaptioner
from zoo.image_encoders import BACKBONES, build_image_encoder
from zoo.images import resize_uint8
from zoo.layers import ATTENTION_TYPES
from zoo.losses import masked_accuracy, masked_loss, masked_token_losses

NAME = "captioning"

# The compiled loss and metric, found by name when a checkpoint is loaded.


@dataclasses.dataclass(frozen=True)
class CaptioningConfig:
    # Data: "digits" (generated scenes, no download) or "coco:CAPTIONS.json:IMAGE_DIR"; the keys
    # coco_json= and image_dir= say the same for paths that contain a colon.
    data: str = "digits"
    coco_json: str = ""
    image_dir: str = ""
    # Digit scenes per split; for COCO data the validation and test images held out (at most a
    # tenth of the images each), every other image trains.
    train_size: int = 12000
    validation_size: int = 500
    test_size: int = 1000
    max_digits: int = 4
    # Digit scenes: draw train_size new training scenes every epoch after the first (a pure
    # function of seed and epoch, so a resumed run sees the same ones). With one fixed set the
    # decoder learns each training scene's caption by heart within three epochs, and the
    # validation loss rises while the digits are still not told apart.
    fresh_scenes: bool = True
    # Images are resized to image_size x image_size; the small CNN's grid is image_size / 2**n
    # for n encoder blocks: 3x3 with the defaults, one grid cell per cell of the digit scenes'
    # layout, so each cell holds at most one digit.
    image_size: int = 48
    max_caption_length: int = 30
    max_vocab_size: int = 10000
    min_count: int = 1
    # Model.
    backbone: str = "small_cnn"
    # Backbone weights: "" (random), "imagenet", or the path of a weights file.
    weights: str = ""
    trainable_backbone: bool = True
    # Four blocks (48x48 -> 3x3). With three (a 6x6 grid, 8 pixels a cell) a digit spread over
    # several cells and the attention over 36 of them stayed diffuse: a 4-epoch run measured
    # BLEU-4 0.436 and localisation 10% against 0.671 and 41% with four blocks.
    encoder_filters: tuple[int, ...] = (16, 32, 64, 64)
    # Batch normalisation in the small CNN: from scratch it learns digits several times faster.
    batch_norm: bool = True
    feature_dim: int = 128
    embedding_dim: int = 64
    units: int = 128
    attention: str = "bahdanau"
    # The paper's gating scalar on the context. Off by default: trained from scratch, the gate
    # learns to shut the context out while the encoder does not yet tell the digits apart,
    # which leaves the encoder without the gradient it needs to learn them.
    context_gate: bool = False
    # Feed the last attentional vector back into the LSTM. Off by default: without it the
    # image reaches each word only through that word's own attention (and the initial state),
    # so the map of the step that emits a digit's name is where the decoder looked for it.
    input_feeding: bool = False
    # lambda of the doubly stochastic attention regulariser; 0 turns it off (the default). It
    # pushes each region's attention, summed over the caption, towards 1: with 36 regions and
    # about 15 words that cannot hold, its least value (about 0.8 per word) is as large as the
    # cross-entropy itself, and it spreads the attention evenly over an empty canvas.
    doubly_stochastic: float = 0.0
    # A learned embedding of each grid row and column added to the features: the captions
    # say where digits are, which translation-invariant convolutions hardly encode.
    position_embedding: bool = True
    # Layer normalisation of each grid cell's features (before the position embedding). Without
    # it the features' scale grows, the tanh initial state saturates (it hardly changes from
    # image to image): 10 epochs without it reached BLEU-4 0.273, 4 epochs with it 0.436.
    feature_norm: bool = True
    dropout: float = 0.1
    # Training.
    batch_size: int = 64
    epochs: int = 10
    learning_rate: float = 0.003
    clipnorm: float = 1.0
    patience: int = 3
    jit_compile: bool = False
    seed: int = 0
    # Decoding (evaluation, caption, export).
    beam_size: int = 3
    length_penalty: float = 0.0
    # Run folder name under runs/captioning/; empty: "<attention>-<config hash>", so re-running
    # the same command resumes the same run.
    run_id: str = ""

    def validate(self):
        if self.attention not in ATTENTION_TYPES:
            raise ConfigError(
                f"attention={self.attention!r} is not a known attention; choose one of: "
                f"{', '.join(ATTENTION_TYPES)}"
            )
        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"backbone={self.backbone!r} is not a known image encoder; choose one of: "
                f"{', '.join(BACKBONES)}"
            )
        check_ranges(self, RANGES)
        check_run_id(self.run_id)
        if not self.encoder_filters or min(self.encoder_filters) < 1:
            raise ConfigError(
                f"encoder_filters={','.join(map(str, self.encoder_filters))}: give one or more "
                "positive filter counts, e.g. encoder_filters=16,32,64"
            )
        if self.backbone == "small_cnn" and self.image_size < 2 ** len(self.encoder_filters):
            raise ConfigError(
                f"image_size={self.image_size} is too small for {len(self.encoder_filters)} "
                "pooling blocks (encoder_filters); raise image_size or drop a block"
            )
        if self.data == "digits" and self.image_size < 32:
            raise ConfigError(f"image_size={self.image_size}: digit scenes need at least 32")
        if self.max_digits not in (1, 2, 3, 4):
            raise ConfigError(f"max_digits={self.max_digits}: must be 1, 2, 3 or 4")
        if self.attention in ("luong_dot", "luong_scaled_dot") and self.units != self.feature_dim:
            raise ConfigError(
                f"attention={self.attention} scores h . a_i, so units ({self.units}) must equal "
                f"feature_dim ({self.feature_dim}); set both, or use luong_general"
            )
        if self.weights == "imagenet" and self.backbone == "small_cnn":
            raise ConfigError(
                "weights=imagenet needs a keras.applications backbone (backbone=mobilenet_v3_small, "
                "efficientnet_b0, ...); the small CNN trains from scratch"
            )
        if self.weights not in ("", "imagenet") and not os.path.isfile(self.weights):
            raise ConfigError(f"weights={self.weights}: no such file (or use weights=imagenet)")
        paths = self.coco_paths()
        if paths is None and self.data != "digits":
            raise ConfigError(
                f"data={self.data!r}: expected digits or coco:CAPTIONS.json:IMAGE_DIR (or the keys "
                "coco_json=... image_dir=...)"
            )
        if paths is not None:
            json_path, image_dir = paths
            if not os.path.isfile(json_path):
                raise ConfigError(f"caption file {json_path!r} does not exist (COCO-format JSON)")
            if not os.path.isdir(image_dir):
                raise ConfigError(f"image folder {image_dir!r} does not exist")

    def coco_paths(self) -> tuple[str, str] | None:
        """`(captions JSON, image folder)` for COCO-format data, `None` for digit scenes."""
        if self.coco_json or self.image_dir:
            if not (self.coco_json and self.image_dir):
                raise ConfigError("coco_json= and image_dir= go together: give both")
            return self.coco_json, self.image_dir
        if self.data.startswith("coco:"):
            parts = self.data.split(":", 2)
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise ConfigError(
                    f"data={self.data!r}: expected coco:CAPTIONS.json:IMAGE_DIR; for paths with a "
                    "colon use coco_json=... image_dir=..."
                )
            return parts[1], parts[2]
        return None


# The range of every numeric field: name -> (low, high[, low_open[, high_open]]).
RANGES = {
    **{key: (1, None) for key in (
        "train_size", "validation_size", "test_size", "image_size", "max_caption_length",
        "max_vocab_size", "min_count", "feature_dim", "embedding_dim", "units", "batch_size",
        "epochs", "patience", "beam_size",
    )},
    "dropout": (0.0, 1.0, False, True),
    "doubly_stochastic": (0.0, None),  # 0: off
    "learning_rate": (0.0, 1.0, True),
    "clipnorm": (0.0, None, True),
    "seed": (0, None),
    "length_penalty": (0.0, None),
}

Config = CaptioningConfig


# Keys that do not change what is trained: a re-run that changes them continues the same run
# (more epochs extend a finished run, from its last checkpoint and learning rate).
CONTINUE_KEYS = ("run_id", "epochs", "patience", "beam_size", "length_penalty")


def run_id(config: CaptioningConfig) -> str:
    return config.run_id or f"{config.attention}-{fingerprint(config, ignore=CONTINUE_KEYS)}"


def config_from_json(values: dict) -> CaptioningConfig:
    """The config saved in a run's `config.json` (JSON lists back to tuples)."""
    names = {f.name for f in dataclasses.fields(CaptioningConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return CaptioningConfig(**values)


def _as_json(config) -> dict:
    return json.loads(json.dumps(to_dict(config)))


# -- data ------------------------------------------------------------------------------------


@dataclasses.dataclass
class CaptionSplit:
    """Images of one split with their reference captions (tokenised, each a list of words)
    and, for digit scenes, the scenes (boxes, digits, digit word positions)."""

    images: np.ndarray
    references: list
    scenes: list | None = None

    def __len__(self):
        return len(self.images)


@dataclasses.dataclass
class CaptionData:
    train: CaptionSplit
    validation: CaptionSplit
    test: CaptionSplit
    vocab: text.Vocabulary
    report: str


def _tokenised(captions, config):
    return [t[: config.max_caption_length] for t in text.python_tokens(list(captions))]


def _digit_split(name, count, config):
    scenes = digit_scenes.make_scenes(
        name, count, seed=config.seed, image_size=config.image_size, max_digits=config.max_digits
    )
    references = [[words] for words in _tokenised([s.caption for s in scenes], config)]
    images = np.stack([s.image for s in scenes]) if scenes else np.zeros((0,) * 4, np.uint8)
    return CaptionSplit(images, references, scenes)


def _coco_splits(config):
    json_path, image_dir = config.coco_paths()
    pairs = coco.load_coco_captions(json_path, image_dir)
    if len(pairs) < 3:
        raise DataError(
            f"{json_path} has {len(pairs)} captioned images; at least 3 are needed (train, "
            "validation, test)"
        )
    order = np.random.default_rng(config.seed).permutation(len(pairs))
    held = max(1, len(pairs) // 10)
    n_test, n_val = min(config.test_size, held), min(config.validation_size, held)
    parts = {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    splits = {}
    for name, indices in parts.items():
        indices = sorted(indices)
        images = np.stack([coco.load_image(pairs[i][0], config.image_size) for i in indices])
        flat = [c for i in indices for c in pairs[i][1]]
        tokens, references, at = _tokenised(flat, config), [], 0
        for i in indices:
            references.append(tokens[at : at + len(pairs[i][1])])
            at += len(pairs[i][1])
        splits[name] = CaptionSplit(images, references)
    report = f"COCO-format captions {json_path} ({len(pairs)} images from {image_dir})"
    return splits["train"], splits["validation"], splits["test"], report


def load_splits(config: CaptioningConfig):
    """`(train, validation, test, report)` for the config's data."""
    if config.coco_paths() is None:
        splits = [
            _digit_split(name, count, config)
            for name, count in (
                ("train", config.train_size),
                ("validation", config.validation_size),
                ("test", config.test_size),
            )
        ]
        return (*splits, f"digit scenes of {config.image_size}x{config.image_size}")
    return _coco_splits(config)


def build_data(config: CaptioningConfig, vocab_dir: str | None = None) -> CaptionData:
    """Loads the splits and the vocabulary (built from the training captions, or read back)."""
    train, validation, test, report = load_splits(config)
    path = vocab_dir and os.path.join(vocab_dir, "vocab.txt")
    if path and os.path.exists(path):
        vocab = text.Vocabulary.load(path)
    else:
        vocab = text.Vocabulary.build(
            [words for refs in train.references for words in refs],
            config.max_vocab_size,
            config.min_count,
        )
    return CaptionData(train, validation, test, vocab, report)


def encode_examples(split: CaptionSplit, vocab: text.Vocabulary):
    """One training example per (image, reference): image indices and START/END-framed ids."""
    image_index = [i for i, refs in enumerate(split.references) for _ in refs]
    words = [w for refs in split.references for w in refs]
    ids = vocab.ids(tf.ragged.constant(words, dtype=tf.string, ragged_rank=1)).to_list()
    return np.asarray(image_index, np.int64), [
        np.asarray([text.START_ID, *row, text.END_ID], np.int32) for row in ids
    ]


def batches(images, image_index, targets, batch_size, seed, epoch, shuffle=True):
    """Batches of captions of similar length (little padding); the order is a pure function of
    (seed, epoch), so a resumed run sees the same batches."""
    order = np.arange(len(targets))
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        rng.shuffle(order)
    window = batch_size * 32
    chunks = []
    for i in range(0, len(order), window):
        part = sorted(order[i : i + window], key=lambda j: len(targets[j]))
        chunks += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(chunks)
    for idx in chunks:
        rows = [targets[j] for j in idx]
        target = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
        for n, row in enumerate(rows):
            target[n, : len(row)] = row
        yield {"image": images[image_index[idx]], "target_in": target[:, :-1]}, target[:, 1:]


def epoch_examples(split, examples, config, vocab, epoch):
    """`(images, examples)` an epoch trains on: the split itself, or with `fresh_scenes` (digit
    scenes, `vocab` given) new scenes for every epoch after the first, drawn from the seed and
    the epoch."""
    if epoch == 0 or vocab is None or not config.fresh_scenes or split.scenes is None:
        return split.images, examples
    fresh = _digit_split(
        "train", len(split), dataclasses.replace(config, seed=config.seed + 100_003 * epoch)
    )
    return fresh.images, encode_examples(fresh, vocab)


def make_dataset(split, examples, config, first_epoch=0, shuffle=True, vocab=None):
    """A repeating `tf.data.Dataset` of batches; each pass over it is the next epoch. Given the
    vocabulary, a digit-scene training split is redrawn each epoch (see `epoch_examples`)."""
    epoch = [first_epoch]
    size = split.images.shape[1:]

    def gen():
        images, (image_index, targets) = epoch_examples(split, examples, config, vocab, epoch[0])
        yield from batches(
            images, image_index, targets, config.batch_size, config.seed, epoch[0], shuffle
        )
        epoch[0] += 1

    spec = (
        {
            "image": tf.TensorSpec((None, *size), tf.uint8),
            "target_in": tf.TensorSpec((None, None), tf.int32),
        },
        tf.TensorSpec((None, None), tf.int32),
    )
    ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).repeat().prefetch(2)


def steps_for(examples, config) -> int:
    n, window = len(examples[1]), config.batch_size * 32
    return sum(-(-min(window, n - i) // config.batch_size) for i in range(0, n, window))


# -- model -----------------------------------------------------------------------------------


def build_model(config: CaptioningConfig, vocab_size: int) -> ImageCaptioner:
    model = ImageCaptioner(
        vocab_size,
        image_size=config.image_size,
        backbone=config.backbone,
        trainable_backbone=config.trainable_backbone,
        encoder_filters=config.encoder_filters,
        batch_norm=config.batch_norm,
        feature_dim=config.feature_dim,
        embedding_dim=config.embedding_dim,
        units=config.units,
        attention=config.attention,
        dropout=config.dropout,
        input_feeding=config.input_feeding,
        context_gate=config.context_gate,
        doubly_stochastic=config.doubly_stochastic,
        position_embedding=config.position_embedding,
        feature_norm=config.feature_norm,
    )
    model.build()
    if config.weights:
        # Same architecture, pretrained weights: the model itself is always built offline.
        pretrained = build_image_encoder(
            config.backbone,
            weights=config.weights,
            trainable=config.trainable_backbone,
            image_size=config.image_size,
            feature_dim=config.feature_dim,
            filters=config.encoder_filters,
            batch_norm=config.batch_norm,
        )
        model.encoder.set_weights(pretrained.get_weights())
    return model


def compile_model(model, config: CaptioningConfig, steps_per_epoch: int) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, clipnorm=config.clipnorm),
        loss=masked_token_losses,
        # The loss includes the attention regulariser; the cross-entropy alone is logged too.
        metrics=[masked_accuracy, masked_loss],
        jit_compile=config.jit_compile,
    )


# -- using a trained model -------------------------------------------------------------------


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
        run_dir = training.resolve_run(run_dir)
        config_path = os.path.join(run_dir, "config.json")
        if not os.path.exists(config_path):
            raise training.RunError(f"{run_dir} has no config.json; is it a captioning run folder?")
        with open(config_path, encoding="utf-8") as f:
            config = config_from_json(json.load(f))
        path = os.path.join(run_dir, weights)
        if not os.path.exists(path):
            raise training.RunError(
                f"{run_dir} has no {weights}: its training has not finished; re-run "
                "`python -m recipes train captioning` with the same arguments to finish it"
            )
        model = training.load_model_checked(path)
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
        steps = min(n + 1, out["attention"].shape[1])
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


# -- training --------------------------------------------------------------------------------


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


def train(config: CaptioningConfig, quiet: bool = False, evaluate_after: bool = True) -> str:
    """Trains (or resumes) the run for `config`, then evaluates it; returns its folder."""
    keras.utils.set_random_seed(config.seed)
    strategy = training.choose_strategy()
    chief = training.is_chief(strategy)
    run_dir = training.run_dir_for(NAME, run_id(config))
    os.makedirs(run_dir, exist_ok=True)
    state = training.load_state(run_dir)
    if state is not None:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            saved = json.load(f)
        now = _as_json(config)
        changed = sorted(k for k in set(saved) | set(now)
                         if saved.get(k) != now.get(k) and k not in CONTINUE_KEYS)
        if changed:
            raise training.RunError(
                f"{run_dir} was trained with a different config ({', '.join(changed)}); "
                "pick another run_id=... or delete the folder"
            )
        if state.get("finished") and (state["epoch"] >= config.epochs or state.get("stopped_early")):
            print(f"{run_dir} is already trained ({state['epoch']} epochs); nothing to do. "
                  "Delete it to train again, raise epochs=... to train it further, or run "
                  f"`python -m recipes evaluate captioning --run {run_dir}`.")
            if chief:
                training.point_latest(run_dir)
            return run_dir
        state["finished"] = False
    t0 = time.time()
    data = build_data(config, run_dir if state is not None else None)
    train_examples = encode_examples(data.train, data.vocab)
    val_examples = encode_examples(data.validation, data.vocab)
    print(f"data: {data.report}; {len(data.train)} train / {len(data.validation)} validation / "
          f"{len(data.test)} test images, {len(train_examples[1])} training captions; "
          f"vocabulary {len(data.vocab)} words ({time.time() - t0:.1f}s)")
    write_dir = run_dir if chief else training.scratch_dir(run_dir)
    if chief:
        write_json(os.path.join(run_dir, "config.json"), to_dict(config))
        if state is None:
            data.vocab.save(os.path.join(run_dir, "vocab.txt"))
    steps = steps_for(train_examples, config)
    with strategy.scope():
        if state is not None and os.path.exists(os.path.join(run_dir, "checkpoint.keras")):
            model = training.load_model_checked(
                os.path.join(run_dir, "checkpoint.keras"), "checkpoint"
            )
            print(f"resuming {run_dir} after epoch {state['epoch']}")
        else:
            state = training.new_state()
            model = build_model(config, len(data.vocab))
            compile_model(model, config, steps)
    callbacks = [
        training.RunCheckpoint(write_dir, state, config.patience),
        training.tensorboard_callback(write_dir),
    ]
    if chief:
        callbacks.append(CaptionImages(Captioner(model, data.vocab, config), data.validation,
                                       write_dir))
    if state["epoch"] < config.epochs and not state.get("stopped_early"):
        model.fit(
            make_dataset(data.train, train_examples, config, first_epoch=state["epoch"],
                         vocab=data.vocab),
            validation_data=make_dataset(data.validation, val_examples, config, shuffle=False),
            steps_per_epoch=steps,
            validation_steps=steps_for(val_examples, config),
            initial_epoch=state["epoch"],
            epochs=config.epochs,
            callbacks=callbacks,
            verbose=0 if quiet else "auto",
        )
    best = os.path.join(write_dir, "best.weights.h5")
    if os.path.exists(best):
        model.load_weights(best)
    state["finished"] = True
    if not chief:
        training.remove_scratch(write_dir)
        return run_dir
    training.save_model_atomic(model, os.path.join(run_dir, "model.keras"))
    write_json(os.path.join(run_dir, "train_state.json"), state)
    training.point_latest(run_dir)
    print(f"trained {run_dir} in {state.get('train_seconds', 0):.0f}s of training "
          f"(best epoch {state['best_epoch']}, val_loss {state['best_val_loss']:.4f})")
    if evaluate_after:
        evaluate(run_dir, quiet=quiet, test=data.test)
    return run_dir


# -- evaluation ------------------------------------------------------------------------------


def score_captions(results, split: CaptionSplit) -> dict:
    """BLEU-1..4, exact match and (for digit scenes) attention localisation of captions."""
    hypotheses = [r.tokens for r in results]
    report = {k: round(v, 4) for k, v in
              caption_metrics.corpus_bleu_n(hypotheses, split.references).items()}
    report["exact_match"] = round(
        float(np.mean([h in refs for h, refs in zip(hypotheses, split.references)])), 4
    )
    report["count"] = len(results)
    if split.scenes is not None and results and results[0].attention.size:
        hits = total = 0
        chance = 0.0
        shape = split.images.shape[1:3]
        for result, scene in zip(results, split.scenes):
            h, t, c = caption_metrics.localisation_counts(
                result.tokens, result.attention, scene.boxes, scene.digits,
                scene.digit_word_positions, shape,
            )
            hits, total, chance = hits + h, total + t, chance + c
        report["localisation"] = round(hits / max(total, 1), 4)
        report["localisation_chance"] = round(chance / max(total, 1), 4)
        report["digit_words"] = total
    else:
        report["localisation"] = None
    return report


def evaluate(run_dir: str, beam: int | None = None, split: str = "test", plots_count: int = 4,
             quiet: bool = False, test: CaptionSplit | None = None) -> dict:
    """Captions a split, scores it, adds the scores to metrics.json and writes overlay PNGs."""
    run_dir = training.resolve_run(run_dir)
    captioner = Captioner.from_run(run_dir)
    config = captioner.config
    beam = config.beam_size if beam is None else int(beam)
    if test is None or split != "test":
        test = dict(zip(("train", "validation", "test"), load_splits(config)[:3]))[split]
    t0 = time.time()
    bar = keras.utils.Progbar(len(test), unit_name="image", verbose=0 if quiet else 1)
    done = [0]

    def progress(n):
        done[0] += n
        bar.update(done[0])

    results = captioner.caption(test.images, beam=beam, batch_size=128, progress=progress)
    seconds = time.time() - t0
    report = score_captions(results, test)
    decoding_name = "greedy" if beam == 1 else f"beam {beam}"
    report.update(decoding=decoding_name, split=split, seconds=round(seconds, 2),
                  images_per_second=round(len(test) / max(seconds, 1e-9), 1))
    metrics_path = os.path.join(run_dir, "metrics.json")
    metrics = {}
    if os.path.exists(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
            metrics = json.load(f)
    metrics[f"{split}_{'greedy' if beam == 1 else f'beam{beam}'}"] = report
    write_json(metrics_path, metrics)
    for n in range(min(plots_count, len(results))):
        boxes = test.scenes[n].boxes if test.scenes else None
        if results[n].attention.size:
            plot_caption(test.images[n], results[n], os.path.join(run_dir, f"overlay-{n}.png"),
                         boxes)
    if not quiet:
        bleu = "  ".join(f"BLEU-{n} {report[f'bleu{n}']:.3f}" for n in range(1, 5))
        where = (f"  localisation {report['localisation']:.1%} (chance "
                 f"{report['localisation_chance']:.1%})" if report["localisation"] is not None
                 else "")
        print(f"{run_dir} — {split} split, {decoding_name}, {len(test)} images: {bleu}  "
              f"exact match {report['exact_match']:.1%}{where}  ({seconds:.0f}s)")
    return report


# -- hyperparameter search -------------------------------------------------------------------


def search_space(hp, config: CaptioningConfig) -> CaptioningConfig:
    """The captioning search space: `config` with values drawn from `hp` (a
    `kt.HyperParameters`), each named after the config field it sets (see `recipes.tuning`)."""
    # units stays fixed: the dot-product attentions need units == feature_dim.
    return dataclasses.replace(
        config,
        attention=hp.Choice("attention", list(ATTENTION_TYPES)),
        context_gate=hp.Boolean("context_gate"),
        input_feeding=hp.Boolean("input_feeding"),
        doubly_stochastic=hp.Choice("doubly_stochastic", [0.0, 0.01, 0.1]),
        embedding_dim=hp.Choice("embedding_dim", [32, 64, 128]),
        dropout=hp.Choice("dropout", [0.0, 0.1, 0.2]),
        learning_rate=hp.Choice("learning_rate", [1e-3, 3e-3, 1e-2]),
        beam_size=hp.Choice("beam_size", [1, 3]),
    )


class Trials(CachedTrialData):
    """Trains a captioning trial config for `recipes.tuning` and scores it: corpus BLEU-4 of the
    validation split captioned with the trial's `beam_size` (`val_bleu4`), or `val_loss`.

    The data is built once per process and shared by every trial with the same data fields;
    the search space only touches model and training fields.
    """

    objectives = {"val_bleu4": "max", "val_loss": "min"}  # the first is the default
    DATA_FIELDS = (
        "data", "coco_json", "image_dir", "train_size", "validation_size", "test_size",
        "max_digits", "image_size", "max_caption_length", "max_vocab_size", "min_count", "seed",
    )

    def load(self, config):
        data = build_data(config)
        train = encode_examples(data.train, data.vocab)
        validation = encode_examples(data.validation, data.vocab)
        summary = (f"{data.report}; {len(data.train)} train / {len(data.validation)} validation "
                   f"images; vocabulary {len(data.vocab)} words")
        return data, train, validation, summary

    def run(self, config, epochs, initial_epoch=0, weights_in=None, weights_out=None,
            strategy=None, seed=0, log=print) -> dict:
        data, train_examples, val_examples = self.data(config)
        strategy = strategy or tf.distribute.get_strategy()
        keras.utils.set_random_seed(seed)
        steps = steps_for(train_examples, config)
        with strategy.scope():
            model = build_model(config, len(data.vocab))
            compile_model(model, config, steps)
            if weights_in:  # Hyperband's continued trial: weights and Adam's moments
                model.optimizer.build(model.trainable_variables)
                model.load_weights(weights_in)
        history = model.fit(
            make_dataset(data.train, train_examples, config, first_epoch=initial_epoch,
                         vocab=data.vocab),
            validation_data=make_dataset(data.validation, val_examples, config, shuffle=False),
            steps_per_epoch=steps,
            validation_steps=steps_for(val_examples, config),
            initial_epoch=initial_epoch,
            epochs=epochs,
            verbose=2,
        )
        if weights_out:
            model.save_weights(weights_out)
        captioner = Captioner(model, data.vocab, config)
        results = captioner.caption(data.validation.images, beam=config.beam_size, batch_size=128)
        report = score_captions(results, data.validation)
        return {"val_bleu4": report["bleu4"], "val_loss": float(history.history["val_loss"][-1])}


def tune(config: CaptioningConfig, **settings) -> str:
    """Searches `search_space` around `config` with keras-tuner (see `recipes.tuning`)."""
    from recipes import tuning

    return tuning.tune(NAME, config, **settings)
