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

Its rooms: `config` (CaptioningConfig), `data`, `model`, `inference` (Captioner, the caption
command), `evaluate` (BLEU, attention localisation); `RECIPE` is its `recipes.base.Recipe`.
"""

from __future__ import annotations

import os

import tensorflow as tf

from recipes.base import Recipe
from recipes.captioning.config import (
    CONTINUE_KEYS,
    RANGES,
    CaptioningConfig,
    config_from_json,
    run_id,
)
from recipes.captioning.data import (
    CaptionData,
    CaptionSplit,
    batches,
    build_data,
    encode_examples,
    epoch_examples,
    load_splits,
    make_dataset,
    steps_for,
)
from recipes.captioning.evaluate import evaluate as _evaluate
from recipes.captioning.evaluate import score_captions
from recipes.captioning.inference import (
    Caption,
    Captioner,
    CaptionImages,
    SavedModelCaptioner,
    caption_command,
    plot_caption,
)
from recipes.captioning.model import build_model, compile_model, search_space

NAME = "captioning"
Config = CaptioningConfig


class Captioning(Recipe):
    name = NAME
    Config = CaptioningConfig
    continue_keys = CONTINUE_KEYS
    objectives = {"val_bleu4": "max", "val_loss": "min"}
    data_fields = (
        "data", "coco_json", "image_dir", "train_size", "validation_size", "test_size",
        "max_digits", "image_size", "max_caption_length", "max_vocab_size", "min_count", "seed",
    )
    use_command = "caption"

    def run_id(self, config):
        return run_id(config)

    def build_data(self, config, vocab_dir=None):
        data = build_data(config, vocab_dir)
        # Captions as id arrays, once: every epoch's batches are drawn from them.
        data.examples = (encode_examples(data.train, data.vocab),
                         encode_examples(data.validation, data.vocab))
        return data

    def datasets(self, data, config, first_epoch=0):
        train, validation = data.examples
        return (
            make_dataset(data.train, train, config, first_epoch=first_epoch, vocab=data.vocab),
            steps_for(train, config),
            make_dataset(data.validation, validation, config, shuffle=False),
            steps_for(validation, config),
        )

    def describe_data(self, data, config):
        return (f"{data.report}; {len(data.train)} train / {len(data.validation)} validation / "
                f"{len(data.test)} test images, {len(data.examples[0][1])} training captions; "
                f"vocabulary {len(data.vocab)} words"), None

    def save_vocabularies(self, run_dir, data, config):
        data.vocab.save(os.path.join(run_dir, "vocab.txt"))

    def build_model(self, config, data, initialise=True):
        return build_model(config, len(data.vocab))

    def compile_model(self, model, config, steps_per_epoch):
        compile_model(model, config, steps_per_epoch)

    def search_space(self, hp, config):
        return search_space(hp, config)

    def callbacks(self, model, data, config, write_dir, chief):
        if not chief:
            return []
        return [CaptionImages(Captioner(model, data.vocab, config), data.validation, write_dir)]

    def load(self, run_dir):
        return Captioner.from_run(run_dir)

    def load_saved_model(self, path):
        return SavedModelCaptioner(path)

    def plot(self, result, path, title=None, image=None):
        if image is None:
            raise ValueError("plot_attention(caption, path, image=...): a caption's overlays "
                             "need the image it describes (a path, bytes or an array)")
        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                image = f.read()
        if isinstance(image, (bytes, bytearray)):  # an encoded JPEG, PNG, ...: shown full size
            image = tf.io.decode_image(bytes(image), channels=3, expand_animations=False).numpy()
        return plot_caption(image, result, path)

    def evaluate(self, run_dir, beam=None, **kwargs):
        return _evaluate(run_dir, beam=beam, **kwargs)

    def score_trial(self, model, data, config):
        captioner = Captioner(model, data.vocab, config)
        results = captioner.caption(data.validation.images, beam=config.beam_size, batch_size=128)
        return {"val_bleu4": score_captions(results, data.validation)["bleu4"]}

    def after_training(self, run_dir, data, quiet):
        _evaluate(run_dir, quiet=quiet, test=data.test)

    def use(self, args):
        return caption_command(args, self)


RECIPE = Captioning()


# The module-level API (`captioning.train(config)`, ...): the recipe's commands.
def train(config: CaptioningConfig, quiet: bool = False, evaluate_after: bool = True) -> str:
    """Trains (or resumes) the run for `config`, then evaluates it; returns its folder."""
    return RECIPE.train(config, quiet=quiet, evaluate_after=evaluate_after)


def evaluate(run_dir: str, beam: int | None = None, **kwargs) -> dict:
    """Scores a run: see `recipes.captioning.evaluate.evaluate`."""
    return RECIPE.evaluate(run_dir, beam=beam, **kwargs)


def tune(config: CaptioningConfig, **settings) -> str:
    """Searches `search_space` around `config` with keras-tuner (see `recipes.tuning`)."""
    return RECIPE.tune(config, **settings)


__all__ = [
    "CONTINUE_KEYS", "NAME", "RANGES", "RECIPE", "Caption", "CaptionData", "CaptionImages",
    "CaptionSplit", "Captioner", "Captioning", "CaptioningConfig", "Config", "SavedModelCaptioner",
    "batches", "build_data", "build_model", "compile_model", "config_from_json",
    "encode_examples", "epoch_examples", "evaluate", "load_splits", "make_dataset",
    "plot_caption", "run_id", "score_captions", "search_space", "steps_for", "train", "tune",
]
