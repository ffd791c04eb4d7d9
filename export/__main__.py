"""Command line: `python -m export RECIPE [--run DIR] [--out exports]` (`make export RECIPE=nmt`)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXAMPLES = """examples:
  python -m export nmt                              # runs/nmt/latest -> exports/
  python -m export nmt --run runs/nmt/bahdanau-1a2b --out exports --quantize
  python -m export nmt --max-sentence-bytes 16384 --max-request-sentences 64
  python -m export captioning                       # runs/captioning/latest -> exports/
  docker run -p 8501:8501 -v $PWD/exports:/models tensorflow/serving \\
      --model_config_file=/models/models.config
"""


def _parser(prog: str = "python -m export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Export a trained run: a SavedModel for TF Serving (exports/RECIPE/VERSION/, "
        "exports/models.config) and a TFLite model for LiteRT (exports/tflite/).",
        epilog=EXAMPLES.replace("python -m export", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="nmt or captioning")
    p.add_argument("--run", default=None, help="run folder (default runs/RECIPE/latest)")
    p.add_argument("--out", default="exports", help="exports root (default exports)")
    p.add_argument("--no-tflite", action="store_true", help="write the SavedModel only")
    p.add_argument("--quantize", action="store_true",
                   help="also write a dynamic-range quantised TFLite model")
    p.add_argument("--base-path", default="/models",
                   help="where the exports root is mounted in the server, for models.config "
                        "(default /models)")
    p.add_argument("--max-sentence-bytes", type=int, default=None, metavar="N",
                   help="nmt: cut each sentence to N bytes (UTF-8) before tokenising it; the "
                        "output `truncated` says when (default 8192)")
    p.add_argument("--max-request-sentences", type=int, default=None, metavar="N",
                   help="nmt: the SavedModel refuses (INVALID_ARGUMENT) a request of more than "
                        "N sentences (default 256)")
    return p


def _size(path: str) -> str:
    if os.path.isdir(path):
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    else:
        total = os.path.getsize(path)
    return f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"


def main(argv=None, prog: str = "python -m export") -> int:
    """`prog`: how the help names the command (`attention-zoo export` from the console command)."""
    args = _parser(prog).parse_args(argv)
    import export

    if args.recipe not in export.EXPORTERS:
        print(f"error: no exporter for recipe {args.recipe!r}; known: "
              f"{', '.join(sorted(export.EXPORTERS))}", file=sys.stderr)
        return 2
    # The [export] extra, checked before TensorFlow loads and the model is built.
    if importlib.util.find_spec("tensorflow_serving") is None:
        from zoo.errors import missing_extra

        error = ModuleNotFoundError("tensorflow_serving", name="tensorflow_serving")
        print(f"error: {missing_extra(error)}", file=sys.stderr)
        return 1
    try:
        paths = export.export(args.recipe, args.run, args.out, tflite=not args.no_tflite,
                              quantize=args.quantize, base_path=args.base_path,
                              max_sentence_bytes=args.max_sentence_bytes,
                              max_request_sentences=args.max_request_sentences)
    except Exception as e:  # noqa: BLE001 - one line for every failure; ZOO_DEBUG=1 for the rest
        if os.environ.get("ZOO_DEBUG"):
            raise  # the full traceback, for a bug report
        from zoo.errors import describe

        print(f"error: {describe(e)}", file=sys.stderr)
        return 1
    print(f"SavedModel  {paths['saved_model']}  ({_size(paths['saved_model'])})")
    print(f"config      {paths['models_config']}")
    for path in paths["tflite"]:
        print(f"TFLite      {path}  ({_size(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
