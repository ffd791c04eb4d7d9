"""Command line: `attention-zoo train|evaluate|compare-attention|tune|translate|caption|export ...`
(the console command `pip install` makes), or `python -m recipes ...` from a checkout.

Its imports wait inside the functions that need them: `--help`, a mistyped word or an unknown
recipe answer at once, without loading TensorFlow (tests/recipes/test_main.py checks)."""

from __future__ import annotations

import argparse
import os
import sys

from zoo.errors import describe  # no TensorFlow: `--help` and errors stay instant

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

USAGE_EXAMPLES = """examples:
  {prog} train nmt attention=luong_general epochs=3
  {prog} train nmt --help   # every config key with its default and meaning
  {prog} train nmt config=configs/nmt-real-text.json   # or a .yaml file
  {prog} evaluate nmt --run runs/nmt/latest --beam 4
  {prog} evaluate nmt --test my_test.tsv
  {prog} compare-attention nmt
  {prog} tune nmt tuner=hyperband max_trials=20
  {prog} translate nmt "three hundred forty-two" --beam 4 --n-best 2
  {prog} caption captioning scene.png --plot plots/
  {prog} export nmt --quantize   # = {export_prog} nmt --quantize
"""

# Commands that take a recipe's config as key=value words, and what each runs in the recipe.
CONFIG_COMMANDS = {
    "train": "train a recipe (re-running the same command resumes the run)",
    "tune": "search hyperparameters with keras-tuner",
    "compare-attention": "train with and without attention; quality by source length",
}


def _recipes_text() -> str:
    from recipes import COMMANDS

    return "recipes:\n" + "\n".join(
        f"  {name:<12}{', '.join(commands)}" for name, commands in COMMANDS.items()
    )


def _config_help(command: str, recipe: str | None) -> str:
    """The key=value words `command` takes for `recipe`, read from the config's source."""
    from recipes import RECIPES, check_command, config_help

    if recipe not in RECIPES:
        return (f"give a recipe to list its config keys ({command} RECIPE --help)\n\n"
                + _recipes_text())
    text = config_help(RECIPES[recipe], title=f"{recipe} config keys")
    try:
        check_command(command, recipe)
    except ValueError as e:  # `compare-attention captioning --help`: say so first
        text = f"note: {e}\n\n{text}"
    text += ("\n  config=FILE  (a .json, .yaml or .yml file of key: value, applied first)"
             "\n  hp=FILE  (a tuning result, best.json: sets the searched hyperparameters)")
    if command == "tune":
        text += "\n\n" + config_help("recipes.tuning", "TuneSettings", title="tuning keys",
                                      skip=("fixed",))
    return text


def _parser(prog: str = "python -m recipes") -> argparse.ArgumentParser:
    export_prog = f"{prog} export" if prog != "python -m recipes" else "python -m export"
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train, evaluate, tune, use and export the attention zoo's recipes.",
        epilog=USAGE_EXAMPLES.format(prog=prog, export_prog=export_prog) + "\n" + _recipes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p.config_parsers = {}
    for name, help_text in CONFIG_COMMANDS.items():
        # --help is ours: it lists the recipe's config keys, read from its source.
        s = sub.add_parser(name, help=help_text, description=help_text, add_help=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("-h", "--help", action="store_true",
                       help="list the recipe's config keys with their defaults and meanings")
        s.add_argument("recipe", nargs="?", help="nmt or captioning")
        s.add_argument("overrides", nargs="*", metavar="key=value")
        p.config_parsers[name] = s
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
    # Parsed by export's own command line (`export --help`); listed here for the overview.
    sub.add_parser("export", add_help=False,
                   help=f"export a trained run for TF Serving and LiteRT (same as {export_prog})")
    return p


def _dash_hint(extra: list[str]) -> str:
    """`--epochs 3` / `--epochs=3` -> `write epochs=3 (...)`: config keys take no dashes."""
    first = next(i for i, word in enumerate(extra) if word.startswith("-"))
    key, eq, value = extra[first].lstrip("-").partition("=")
    if not eq:
        following = extra[first + 1] if first + 1 < len(extra) else ""
        value = following if following and not following.startswith("-") else "VALUE"
    return f"write {key.replace('-', '_')}={value} (config keys are key=value words, without dashes)"


def main(argv=None, prog: str = "python -m recipes") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        # The command line fronts all three stages: this is the one place in recipes that
        # reaches export (the recipes library never does; tests/test_packaging.py checks).
        from export.__main__ import main as export_main

        export_prog = f"{prog} export" if prog != "python -m recipes" else "python -m export"
        return export_main(argv[1:], prog=export_prog)
    parser = _parser(prog)
    args, extra = parser.parse_known_args(argv)
    if args.command in CONFIG_COMMANDS:
        if args.help:
            print(parser.config_parsers[args.command].format_help())
            print(_config_help(args.command, args.recipe))
            return 0
        if any(e.startswith("-") for e in extra):
            print(f"error: {_dash_hint(extra)}", file=sys.stderr)
            return 2
        args.overrides.extend(extra)  # words after an unknown one land in `extra`
        extra = []
        if args.recipe is None:
            print(f"error: {args.command} needs a recipe: {prog} {args.command} RECIPE "
                  f"[key=value ...] ({' or '.join(_recipe_names())})", file=sys.stderr)
            return 2
    # Sentences and image files may also follow the options: `translate nmt --beam 4 "..."`.
    if extra and args.command in ("translate", "caption") and not any(
        e.startswith("-") for e in extra
    ):
        getattr(args, "texts" if args.command == "translate" else "images").extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if os.environ.get("ZOO_DEBUG"):
        import keras

        keras.config.disable_traceback_filtering()
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for every failure; ZOO_DEBUG=1 for the rest
        if os.environ.get("ZOO_DEBUG"):
            raise  # the full traceback, for a bug report
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2


def _run(args) -> int:
    """Runs a parsed command through the recipe's interface (`recipes.base.Recipe`); a command
    the recipe lacks is a one-line error (`recipes.COMMANDS`) before anything loads."""
    from recipes import check_command, get_recipe
    from recipes.config import from_words, latest_run

    check_command(args.command, args.recipe)
    if args.command == "evaluate" and args.test:
        check_command("evaluate --test", args.recipe)
    recipe = get_recipe(args.recipe)
    if args.command in ("translate", "caption"):
        return recipe.use(args)
    if args.command == "tune":
        from recipes.tuning import split_tuning_words

        # tuner=, max_trials=, ... configure the search, the rest the base config.
        settings, words = split_tuning_words(args.overrides)
        recipe.tune(from_words(recipe.Config, words), **settings)
    elif args.command == "train":
        recipe.train(from_words(recipe.Config, args.overrides))
    elif args.command == "compare-attention":
        recipe.compare_attention(from_words(recipe.Config, args.overrides))
    elif args.command == "evaluate":
        extra = {"test_file": args.test} if args.test else {}
        recipe.evaluate(args.run or latest_run(args.recipe), beam=args.beam, **extra)
    return 0


def _recipe_names():
    from recipes import RECIPES

    return list(RECIPES)


def cli() -> int:
    """The `attention-zoo` console command (setup.cfg): `python -m recipes` and `export`."""
    try:
        return main(prog="attention-zoo")
    except BrokenPipeError:  # `attention-zoo train nmt --help | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
