"""Command line: `python -m recipes train|evaluate|compare-attention|tune|translate|caption ...`."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

USAGE_EXAMPLES = """examples:
  python -m recipes train nmt attention=luong_general epochs=3
  python -m recipes evaluate nmt --run runs/nmt/latest --beam 4
  python -m recipes evaluate nmt --test my_test.tsv
  python -m recipes compare-attention nmt
  python -m recipes tune nmt tuner=hyperband max_trials=20
  python -m recipes translate nmt "three hundred forty-two" --beam 4 --n-best 2
  python -m recipes caption captioning scene.png --plot plots/
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m recipes",
        description="Train, evaluate, tune and use the attention zoo's recipes.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("train", "train a recipe (re-running the same command resumes the run)"),
        ("tune", "search hyperparameters with keras-tuner"),
        ("compare-attention", "train with and without attention; quality by source length"),
    ):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("recipe")
        s.add_argument("overrides", nargs="*", metavar="key=value")
    s = sub.add_parser("evaluate", help="score a trained run on its test split")
    s.add_argument("recipe")
    s.add_argument("--run", default=None, help="run folder (default runs/RECIPE/latest)")
    s.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy)")
    s.add_argument("--test", default=None, metavar="FILE",
                   help="nmt: score your own test file instead (a .tsv, or SOURCE,TARGET text files)")
    s = sub.add_parser("translate", help="translate sentences with a trained nmt model")
    s.add_argument("recipe")
    s.add_argument("texts", nargs="*")
    s.add_argument("--run", default=None, help="run folder (default runs/RECIPE/latest)")
    s.add_argument("--model", default=None, help="an exported SavedModel folder instead of a run")
    s.add_argument("--beam", type=int, default=None)
    s.add_argument("--n-best", type=int, default=1)
    s.add_argument("--plot", default=None, metavar="DIR", help="write one heatmap PNG per sentence")
    s.add_argument("--input", default=None, metavar="FILE", help="translate a file ('-': stdin)")
    s.add_argument("--output", default=None, metavar="FILE", help="write translations ('-': stdout)")
    s.add_argument("--batch-size", type=int, default=64)
    s = sub.add_parser("caption", help="caption images with a trained captioning model")
    s.add_argument("recipe")
    s.add_argument("images", nargs="*")
    s.add_argument("--run", default=None)
    s.add_argument("--model", default=None)
    s.add_argument("--beam", type=int, default=None)
    s.add_argument("--plot", default=None, metavar="DIR")
    return p


def main(argv=None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Sentences and image files may also follow the options: `translate nmt --beam 4 "..."`.
    if extra and args.command in ("translate", "caption") and not any(
        e.startswith("-") for e in extra
    ):
        getattr(args, "texts" if args.command == "translate" else "images").extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from recipes import get_recipe
    from recipes.config import ConfigError
    from zoo.errors import describe

    if os.environ.get("ZOO_DEBUG"):
        import keras

        keras.config.disable_traceback_filtering()
    try:
        recipe = get_recipe(args.recipe)
        if args.command == "tune":
            from recipes.config import from_words
            from recipes.tuning import split_tuning_words

            # tuner=, max_trials=, ... configure the search, the rest the base config.
            settings, words = split_tuning_words(args.overrides)
            recipe.tune(from_words(recipe.Config, words), **settings)
        elif args.command in ("train", "compare-attention"):
            from recipes.config import from_words

            config = from_words(recipe.Config, args.overrides)
            func = {"train": "train", "tune": "tune", "compare-attention": "compare_attention"}
            getattr(recipe, func[args.command])(config)
        elif args.command == "evaluate":
            extra = {"test_file": args.test} if args.test else {}
            if args.test and args.recipe != "nmt":
                raise ConfigError(f"--test is for nmt; {args.recipe} evaluates its own test split")
            from recipes import training

            run = args.run or training.latest_run(args.recipe)
            recipe.evaluate(run, beam=args.beam, **extra)
        elif args.command == "translate":
            from recipes import cli_use

            return cli_use.translate(args)
        elif args.command == "caption":
            from recipes import cli_use

            return cli_use.caption(args)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for every failure; ZOO_DEBUG=1 for the rest
        if os.environ.get("ZOO_DEBUG"):
            raise  # the full traceback, for a bug report
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
