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
