"""Export: a finished run -> a SavedModel for TF Serving and a TFLite model for LiteRT.

    python -m export nmt [--run runs/nmt/latest] [--out exports]    # or: make export RECIPE=nmt
    >>> from export import export
    >>> export("nmt", "runs/nmt/latest", "exports")["saved_model"]
    'exports/nmt/1'

Every recipe in `EXPORTERS` has an export module, `export/<recipe>.py`, and one exporter body
here serves them all: it checks the run (`check_run`), reads it through the module's loader and
writes the two artifacts with the shared pieces: `layout.write_version` (TF Serving's versioned
layout, temporary folder then rename) around the module's SavedModel, `layout.write_models_config`
and the module's TFLite files (`export.tflite`: conversion with builtin ops only, files written
whole). An export module defines:

- `NAME`: the model's name (its folder under the exports root, its TFLite files' stem).
- `OPTIONS`: the caps of `export` it takes (`max_sentence_bytes`, ...); others are refused.
- `run_files(config)`: the files a finished run keeps besides `config.json` and `model.keras`
  (its vocabularies), given the run's config.
- `load(run_dir)`: the loaded run (model, vocabularies, config), through the recipe's own
  loader (`recipes.runner.load_run`: a RunError names a run of another recipe).
- `save_saved_model(loaded, folder, **options)`: writes the SavedModel (and its warmup
  requests) into a version's folder.
- `write_tflite(loaded, exports_root, quantize, **options)`: writes the TFLite files; returns
  their paths.

Adding a recipe means one export module and one entry in `EXPORTERS`.

Nothing here imports TensorFlow until an export module is needed, so `python -m export --help`,
an unknown recipe and a missing run folder (or its `config.json`) fail at once; checking a cap or
a run's files against the recipe's export module loads TensorFlow first.
"""

from __future__ import annotations

import importlib
import json
import os

from export import layout  # no TensorFlow
from zoo.errors import ExportError  # noqa: F401 - raised here, caught as export.ExportError

# The recipes with an export module, `export/<recipe>.py`.
EXPORTERS = ("nmt", "captioning")
DEFAULT_EXPORTS = "exports"
# cap -> its smallest value: the text caps of `export`, each passed to the modules whose
# `OPTIONS` name it (only nmt's).
CAPS = {"max_sentence_bytes": 16, "max_request_sentences": 1}


def check_recipe(recipe: str) -> None:
    """An ExportError unless `recipe` is in `EXPORTERS`."""
    if recipe not in EXPORTERS:
        raise ExportError(
            f"no exporter for recipe {recipe!r}; known: {', '.join(sorted(EXPORTERS))}"
        )


def exporter(recipe: str):
    """The export module of `recipe`, `export/<recipe>.py` (imported on first use: it loads
    TensorFlow)."""
    check_recipe(recipe)
    return importlib.import_module(f"export.{recipe}")


def default_run(recipe: str) -> str:
    """`runs/<recipe>/latest` under the runs root (`recipes.config`, free of TensorFlow, so
    that a bad run fails fast)."""
    from recipes.config import latest_run  # the recipes package loads only when asked

    return latest_run(recipe)


def check_run(recipe: str, run_dir: str) -> None:
    """Fails fast, before the model is built, on a run folder that cannot be exported: a missing
    folder or `config.json` before TensorFlow loads, then the files the recipe's export module
    names (`run_files`), then `model.keras`."""
    if not os.path.isdir(run_dir):
        raise ExportError(
            f"no {recipe} run at {run_dir}; `make train RECIPE={recipe}` (or `python -m recipes "
            f"train {recipe}`) creates one, or pass an existing run folder with --run"
        )
    not_this_recipe = f"is it a {recipe} run folder?"
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        raise ExportError(f"{run_dir} has no config.json: {not_this_recipe}")
    try:  # an unreadable config.json is the loader's to report
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    files = exporter(recipe).run_files(config if isinstance(config, dict) else {})
    for name, fix in (
        *((name, not_this_recipe) for name in files),
        ("model.keras", f"its training has not finished; re-run `make train RECIPE={recipe}` "
                        "with the same arguments to finish it"),
    ):
        if not os.path.exists(os.path.join(run_dir, name)):
            raise ExportError(f"{run_dir} has no {name}: {fix}")


def export(recipe: str, run_dir: str | None = None, exports_root: str = DEFAULT_EXPORTS,
           tflite: bool = True, quantize: bool = False, base_path: str = "/models",
           max_sentence_bytes: int | None = None, max_request_sentences: int | None = None) -> dict:
    """Exports a finished run of `recipe`; returns the paths written.

    Args:
        recipe: a name in `EXPORTERS`.
        run_dir: the run folder. Defaults to `runs/<recipe>/latest`.
        exports_root: where `<recipe>/<version>/`, `models.config` and `tflite/` go.
        tflite: also write the TFLite model. Defaults to `True`.
        quantize: also write a dynamic-range quantised TFLite model. Defaults to `False`.
        base_path: where `exports_root` is mounted in the TF Serving container, for
            `models.config`. Defaults to `"/models"`.
        max_sentence_bytes: nmt only: each sentence is cut to this many bytes before it is
            tokenised (SavedModel and TFLite host). Defaults to
            `recipes.nmt.inference.MAX_SENTENCE_BYTES` (8,192).
        max_request_sentences: nmt only: the SavedModel refuses a request of more sentences
            (INVALID_ARGUMENT). Defaults to `recipes.nmt.inference.MAX_REQUEST_SENTENCES` (256).

    Returns:
        dict with `"saved_model"` (the new version's folder), `"models_config"` and `"tflite"`
        (a list of files).

    Raises:
        ExportError: unknown recipe, a run folder of another recipe, or a cap that is not
            a whole number in range (or given for a recipe without text input).
        zoo.errors.RunError: no run there, its training has not finished, or it is a run of
            another recipe.
    """
    check_recipe(recipe)
    caps = {k: v for k, v in (("max_sentence_bytes", max_sentence_bytes),
                              ("max_request_sentences", max_request_sentences)) if v is not None}
    refused = [k for k in caps if k not in exporter(recipe).OPTIONS] if caps else []
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise ExportError(f"{flags}: only the nmt export takes text; drop it for {recipe}")
    for name, value in caps.items():
        smallest = CAPS[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            raise ExportError(f"--{name.replace('_', '-')} {value}: must be a whole number of at "
                              f"least {smallest}")
    run_dir = run_dir or default_run(recipe)
    check_run(recipe, run_dir)
    module = exporter(recipe)
    loaded = module.load(run_dir)
    folder = layout.write_version(exports_root, module.NAME,
                                  lambda tmp: module.save_saved_model(loaded, tmp, **caps))
    config_path = layout.write_models_config(exports_root, base_path)
    files = module.write_tflite(loaded, exports_root, quantize, **caps) if tflite else []
    return {"saved_model": folder, "models_config": config_path, "tflite": files}
