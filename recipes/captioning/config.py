"""The captioning recipe's config: every key with its default and meaning (`python -m recipes
train captioning --help` lists them from this source), the range of each number, and the run's
folder name."""

from __future__ import annotations

import dataclasses
import os

from recipes.config import ConfigError, check_ranges, check_run_id, fingerprint
from zoo.image_encoders import BACKBONES
from zoo.layers import ATTENTION_TYPES


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
    # Four blocks (48x48 -> 3x3): with three (a 6x6 grid) a digit spreads over several cells and
    # the attention stays diffuse (docs/results.md, "what was tried", has the measurements).
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
