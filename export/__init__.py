"""Export: a finished run -> a SavedModel for TF Serving and a TFLite model for LiteRT.

    python -m export nmt [--run runs/nmt/latest] [--out exports]    # or: make export RECIPE=nmt
    >>> from export import export
    >>> export("nmt", "runs/nmt/latest", "exports")["saved_model"]
    'exports/nmt/1'

An exporter per recipe (`EXPORTERS`) reads a run folder through the recipe's own loader and
writes the two artifacts with the shared pieces: `layout.write_version` (TF Serving's
versioned layout, temporary folder then rename), `warmup.write_requests`,
`layout.write_models_config` and `tflite.write` (builtin ops only). Adding a recipe means
one `export/<recipe>.py` (its `save_saved_model` and `write_tflite`) and one entry here.

Nothing here imports TensorFlow until an export runs, so `python -m export --help` and argument
errors are instant.
"""

from __future__ import annotations

import json
import os

# recipe -> the name of its exporter function in this module
EXPORTERS = {"nmt": "export_nmt", "captioning": "export_captioning"}
DEFAULT_EXPORTS = "exports"


class ExportError(RuntimeError):
    """The run cannot be exported as asked; the message says why and what to do."""


def default_run(recipe: str) -> str:
    """`runs/<recipe>/latest`, under `$ZOO_RUNS` when set: `recipes.training.latest_run`'s rule,
    read here without importing TensorFlow so that a bad run fails fast."""
    return os.path.join(os.environ.get("ZOO_RUNS", "runs"), recipe, "latest")


def check_run(recipe: str, run_dir: str) -> None:
    """Fails fast, before TensorFlow loads, on a run folder that cannot be exported."""
    if not os.path.isdir(run_dir):
        raise ExportError(
            f"no {recipe} run at {run_dir}; `make train RECIPE={recipe}` (or `python -m recipes "
            f"train {recipe}`) creates one, or pass an existing run folder with --run"
        )
    vocabularies = {"nmt": ("source_vocab.txt", "target_vocab.txt"), "captioning": ("vocab.txt",)}
    try:  # an nmt run with SentencePiece subwords keeps its tokenizer models instead
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            if recipe == "nmt" and json.load(f).get("tokenizer") == "sentencepiece":
                vocabularies["nmt"] = ("source.spm.model", "target.spm.model")
    except (OSError, ValueError, AttributeError):
        pass  # reported below as a missing or unreadable config.json
    for name, fix in (
        ("config.json", f"is it a {recipe} run folder?"),
        *((vocab, f"is it a {recipe} run folder?") for vocab in vocabularies.get(recipe, ())),
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
            `recipes.translator.MAX_SENTENCE_BYTES` (8,192).
        max_request_sentences: nmt only: the SavedModel refuses a request of more sentences
            (INVALID_ARGUMENT). Defaults to `recipes.translator.MAX_REQUEST_SENTENCES` (256).

    Returns:
        dict with `"saved_model"` (the new version's folder), `"models_config"` and `"tflite"`
        (a list of files).

    Raises:
        ExportError: unknown recipe, a run folder of another recipe, or a cap that is not
            a whole number in range (or given for a recipe without text input).
        recipes.training.RunError: no run there, or its training has not finished.
    """
    if recipe not in EXPORTERS:
        raise ExportError(
            f"no exporter for recipe {recipe!r}; known: {', '.join(sorted(EXPORTERS))}"
        )
    caps = {k: v for k, v in (("max_sentence_bytes", max_sentence_bytes),
                              ("max_request_sentences", max_request_sentences)) if v is not None}
    if caps and recipe != "nmt":
        flags = ", ".join("--" + k.replace("_", "-") for k in caps)
        raise ExportError(f"{flags}: only the nmt export takes text; drop it for {recipe}")
    for name, value in caps.items():
        smallest = 16 if name == "max_sentence_bytes" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            raise ExportError(f"--{name.replace('_', '-')} {value}: must be a whole number of at "
                              f"least {smallest}")
    run_dir = run_dir or default_run(recipe)
    check_run(recipe, run_dir)
    exporter = globals()[EXPORTERS[recipe]]
    return exporter(run_dir, exports_root, tflite=tflite,
                    quantize=quantize, base_path=base_path, **caps)


def export_nmt(run_dir: str, exports_root: str = DEFAULT_EXPORTS, tflite: bool = True,
               quantize: bool = False, base_path: str = "/models", replace_unk=None,
               max_sentence_bytes: int | None = None,
               max_request_sentences: int | None = None) -> dict:
    """The nmt exporter: see `export`; `replace_unk` overrides the run's setting."""
    from export import layout, nmt
    from recipes.translator import MAX_REQUEST_SENTENCES, MAX_SENTENCE_BYTES, Translator

    if max_sentence_bytes is None:
        max_sentence_bytes = MAX_SENTENCE_BYTES
    if max_request_sentences is None:
        max_request_sentences = MAX_REQUEST_SENTENCES

    try:
        translator = Translator.from_run(run_dir)
    except TypeError as e:  # config.json has keys NmtConfig does not know
        raise ExportError(
            f"{run_dir} is not an nmt run ({e}); pass an nmt run with --run"
        ) from None
    folder = layout.write_version(
        exports_root,
        "nmt",
        lambda tmp: nmt.save_saved_model(translator, tmp, "nmt", replace_unk=replace_unk,
                                         max_sentence_bytes=max_sentence_bytes,
                                         max_request_sentences=max_request_sentences),
    )
    config_path = layout.write_models_config(exports_root, base_path)
    files = (nmt.write_tflite(translator, exports_root, quantize,
                              max_sentence_bytes=max_sentence_bytes) if tflite else [])
    return {"saved_model": folder, "models_config": config_path, "tflite": files}


def export_captioning(run_dir: str, exports_root: str = DEFAULT_EXPORTS, tflite: bool = True,
                      quantize: bool = False, base_path: str = "/models") -> dict:
    """The captioning exporter: see `export`."""
    from export import captioning, layout
    from recipes.captioning import Captioner

    try:
        captioner = Captioner.from_run(run_dir)
    except TypeError as e:  # config.json has keys CaptioningConfig does not know
        raise ExportError(
            f"{run_dir} is not a captioning run ({e}); pass a captioning run with --run"
        ) from None
    folder = layout.write_version(
        exports_root, "captioning",
        lambda tmp: captioning.save_saved_model(captioner, tmp, "captioning"),
    )
    config_path = layout.write_models_config(exports_root, base_path)
    files = captioning.write_tflite(captioner, exports_root, quantize) if tflite else []
    return {"saved_model": folder, "models_config": config_path, "tflite": files}
