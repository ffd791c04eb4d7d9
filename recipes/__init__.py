"""Recipes: one module per task, registered by name.

    python -m recipes train nmt key=value ...      # or: make train RECIPE=nmt
    python -m recipes evaluate nmt
    >>> from recipes import load
    >>> model = load("runs/nmt/latest")
"""

from __future__ import annotations

import importlib
import os

RECIPES = {"nmt": "recipes.nmt", "captioning": "recipes.captioning"}


def get_recipe(name: str):
    """The recipe module for `name`; an unknown name lists the known ones."""
    from recipes.config import ConfigError

    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[name])


def search_keys(config_cls) -> list[str]:
    """The hyperparameters the search of the recipe configured by `config_cls` tunes."""
    import keras_tuner as kt

    for module in RECIPES.values():
        recipe = importlib.import_module(module)
        if getattr(recipe, "Config", None) is config_cls and hasattr(recipe, "search_space"):
            probe = kt.HyperParameters()
            recipe.search_space(probe, config_cls())
            return [p.name for p in probe.space]
    return []


def load(path: str):
    """A trained model ready to use, from a run folder or an exported SavedModel folder.

    Returns a `recipes.translator.Translator` (nmt) or a `recipes.captioning.Captioner`.
    """
    from recipes import training

    if os.path.exists(os.path.join(path, "saved_model.pb")):
        from recipes.translator import SavedModelTranslator

        return SavedModelTranslator(path)
    run_dir = training.resolve_run(path)
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        raise training.RunError(f"{path} has no config.json: not a run folder")
    if "captioning" in os.path.abspath(run_dir).split(os.sep)[-2:]:
        return get_recipe("captioning").Captioner.from_run(run_dir)
    from recipes.translator import Translator

    return Translator.from_run(run_dir)


def plot_attention(result, path, title=None, image=None):
    """Writes the picture of where a model looked; returns the matplotlib figure.

    A `Translation` gives a heatmap (source tokens across, output tokens down); a `Caption`
    gives the image and one attention overlay per word, and needs the `image` it describes.

    >>> result = load("runs/nmt/latest").translate(["three hundred forty-two"])[0]
    >>> plot_attention(result, "alignment.png")
    """
    if hasattr(result, "source_tokens"):
        from recipes.translator import plot_translation

        return plot_translation(result, path, title=title)
    if image is None:
        raise ValueError("plot_attention(caption, path, image=...): a caption's overlays need "
                         "the image it describes (a path, bytes or an array)")
    from recipes.captioning import plot_caption

    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            image = f.read()
    if isinstance(image, (bytes, bytearray)):  # an encoded JPEG, PNG, ...: shown full size
        import tensorflow as tf

        image = tf.io.decode_image(bytes(image), channels=3, expand_animations=False).numpy()
    return plot_caption(image, result, path)
