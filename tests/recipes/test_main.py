"""The command line's own help and its one-line answers to mistakes: `train RECIPE --help` lists
every config key (default and meaning, read from the config's comments), `config=` takes YAML,
`--epochs 3` says to write `epochs=3`, and a command a recipe lacks names the recipes that have it.
"""

import dataclasses
import inspect
import io
import os
import tokenize

import pytest

from recipes import COMMANDS, RECIPES, format_value, get_recipe
from recipes.__main__ import main
from recipes.base import Recipe
from recipes.captioning import CaptioningConfig
from recipes.config import ConfigError, from_words
from recipes.nmt import NmtConfig
from tests.helpers import run_python

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = {"nmt": NmtConfig, "captioning": CaptioningConfig}


def _help(capsys, argv, prog="python -m recipes") -> str:
    assert main(argv, prog=prog) == 0
    return capsys.readouterr().out


def _comments(cls) -> list[str]:
    """Every comment line in the class's source (the documentation of its fields)."""
    source = inspect.getsource(cls)
    return [
        tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


# -- --help lists the config ---------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["nmt", "captioning"])
@pytest.mark.parametrize("command", ["train", "tune"])
def test_help_lists_every_config_key_with_its_default(recipe, command, capsys):
    if command not in COMMANDS[recipe]:
        pytest.skip(f"{recipe} has no {command}")
    out = _help(capsys, [command, recipe, "--help"])
    fields = dataclasses.fields(CONFIGS[recipe])
    assert len(fields) > 20
    for field in fields:
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        assert f"\n  {field.name}={format_value(field.default)}  ({kind})\n" in out, field.name


@pytest.mark.parametrize("recipe", ["nmt", "captioning"])
def test_help_shows_every_comment_of_the_config_as_a_meaning(recipe, capsys):
    out = " ".join(_help(capsys, ["train", recipe, "--help"]).split())
    comments = _comments(CONFIGS[recipe])
    assert len(comments) > 10
    for comment in comments:
        assert comment in out or comment.rstrip(".") in out, comment


def test_help_puts_a_comment_under_its_field_and_shows_uncommented_fields(capsys):
    out = _help(capsys, ["train", "nmt", "--help"])
    # The comment right above max_source_length is its meaning, on the lines below it.
    assert "  max_source_length=100  (int)\n      Longer inputs are cut to this many tokens" in out
    # A field without a comment still shows its name, default and type, and no meaning.
    assert "\n  source_lang=en  (str)\n  target_lang=fr  (str)\n" in out
    # A heading comment ("# Model.") names a group instead of meaning its first field.
    assert "  -- Model\n  attention=luong_dot  (str)\n      Luong dot attention" in out


def test_config_keys_follow_a_config_imported_from_another_module(tmp_path, monkeypatch):
    """A recipe package whose `Config` comes from its config module (one folder per recipe)."""
    from recipes import config_keys

    package = tmp_path / "layoutcheck"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from layoutcheck.config import TaskConfig as Config\n", encoding="utf-8"
    )
    (package / "config.py").write_text(
        "import dataclasses\n\n\n@dataclasses.dataclass(frozen=True)\nclass TaskConfig:\n"
        "    # Training.\n    # Passes over the data.\n    epochs: int = 10\n"
        "    names: tuple[str, ...] = ('a', 'b')  # which ones\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = config_keys("layoutcheck")
    assert [(k.name, k.type, k.default, k.meaning, k.section) for k in keys] == [
        ("epochs", "int", 10, "Passes over the data.", "Training."),
        ("names", "tuple[str, ...]", ("a", "b"), "which ones", ""),
    ]


def test_tune_help_also_lists_the_search_settings(capsys):
    out = _help(capsys, ["tune", "nmt", "--help"])
    assert "tuning keys" in out and "\n  tuner=hyperband  (str)\n" in out
    assert "\n  max_trials=20  (int)\n" in out and "fixed=" not in out


def test_compare_attention_help_lists_the_nmt_config(capsys):
    out = _help(capsys, ["compare-attention", "nmt", "--help"])
    assert "\n  attention=luong_dot  (str)\n" in out


def test_help_for_a_command_the_recipe_lacks_says_so(capsys):
    out = _help(capsys, ["compare-attention", "captioning", "--help"])
    assert "note: recipe captioning has no compare-attention; recipes with it: nmt" in out


def test_help_without_a_recipe_lists_the_recipes(capsys):
    out = _help(capsys, ["train", "--help"])
    assert "give a recipe" in out
    for name, commands in COMMANDS.items():
        assert f"  {name:<12}{', '.join(commands)}" in out


def test_help_names_the_command_as_it_was_run(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"], prog="attention-zoo")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: attention-zoo ") and "attention-zoo train nmt" in out
    assert "python -m recipes" not in out and "export" in out
    assert _help(capsys, ["train", "nmt", "--help"], prog="attention-zoo").startswith(
        "usage: attention-zoo train "
    )
    assert _help(capsys, ["train", "nmt", "--help"]).startswith("usage: python -m recipes train ")
    with pytest.raises(SystemExit):
        main(["export", "--help"], prog="attention-zoo")
    assert capsys.readouterr().out.startswith("usage: attention-zoo export ")


def test_help_loads_no_tensorflow():
    """`--help` reads the config from its source file: instant, no TensorFlow."""
    code = (
        "import sys; from recipes.__main__ import main; main(['train', 'nmt', '--help']); "
        "print('loaded' if 'tensorflow' in sys.modules else 'not loaded')"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "epochs=10" in proc.stdout and proc.stdout.strip().endswith("not loaded")


def test_console_command_runs_the_same_main():
    """setup.cfg's `attention-zoo = recipes.__main__:cli`, as pip's launcher calls it."""
    code = (
        "import sys; sys.argv = ['attention-zoo', 'train', 'nmt', '--epochs', '3']; "
        "from recipes.__main__ import cli; sys.exit(cli())"
    )
    proc = run_python(code)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: write epochs=3 (config keys are key=value words, without dashes)\n"
    )


# -- --epochs 3 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["train", "nmt", "--epochs", "3"], "write epochs=3"),
        (["train", "nmt", "--epochs=3"], "write epochs=3"),
        (["train", "nmt", "attention=bahdanau", "--beam-size", "4"], "write beam_size=4"),
        (["tune", "nmt", "--max_trials", "5"], "write max_trials=5"),
        (["compare-attention", "nmt", "--epochs=2", "units=64"], "write epochs=2"),
        (["train", "captioning", "--fresh"], "write fresh=VALUE"),
    ],
)
def test_dashed_config_key_says_how_to_write_it(argv, hint, capsys):
    err = _one_line_error(capsys, argv)
    assert err == f"error: {hint} (config keys are key=value words, without dashes)"


# -- config=FILE.yaml ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_yaml_config_file(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    path.write_text(
        "# a saved run\nattention: bahdanau\nepochs: 2\nlearning_rate: 0.001\njoint_vocab: false\n",
        encoding="utf-8",
    )
    config = from_words(NmtConfig, [f"config={path}", "epochs=4"])
    assert (config.attention, config.epochs, config.learning_rate, config.joint_vocab) == (
        "bahdanau",
        4,
        0.001,
        False,
    )


def test_yaml_config_file_sets_tuples(tmp_path):
    path = tmp_path / "captioning.yaml"
    path.write_text("encoder_filters: [8, 16]\nimage_size: 32\n", encoding="utf-8")
    assert from_words(CaptioningConfig, [f"config={path}"]).encoder_filters == (8, 16)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- epochs\n- 3\n", "expected a YAML mapping of key: value, got list"),
        ("just words\n", "expected a YAML mapping of key: value, got str"),
        ("", "expected a YAML mapping of key: value, got nothing"),
        ("epochs: [1\n", "not valid YAML"),
        # safe_load only: a tag that would run code is refused, not executed
        ("!!python/object/apply:os.system ['echo unsafe']\n", "not valid YAML"),
        ("1: 3\n", "keys must be config key names, got 1"),
    ],
)
def test_bad_yaml_config_is_one_line(tmp_path, text, message, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="config file") as error:
        from_words(NmtConfig, [f"config={path}"])
    assert message in str(error.value) and "\n" not in str(error.value)
    err = _one_line_error(capsys, ["train", "nmt", f"config={path}"])
    assert message in err


def test_yaml_config_with_an_unknown_key_names_it(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("epoch: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown config key 'epoch'.*Did you mean 'epochs'"):
        from_words(NmtConfig, [f"config={path}"])


# -- commands per recipe ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["compare-attention", "captioning"],
            "recipe captioning has no compare-attention; recipes with it: nmt",
        ),
        (
            ["evaluate", "captioning", "--test", "mine.tsv"],
            "recipe captioning has no evaluate --test; recipes with it: nmt",
        ),
        (["translate", "captioning", "x"], "recipe captioning has no translate; recipes with it: nmt"),
        (["caption", "nmt", "x.png"], "recipe nmt has no caption; recipes with it: captioning"),
        (["compare-attention", "nope"], "unknown recipe 'nope'; known recipes: nmt, captioning"),
    ],
)
def test_command_a_recipe_lacks_is_one_line(argv, message, capsys):
    assert message in _one_line_error(capsys, argv)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_commands_table_matches_the_recipe_interface(recipe):
    """Every command the table gives a recipe is one its `Recipe` implements, and no more."""
    implementation = get_recipe(recipe)
    assert isinstance(implementation, Recipe) and implementation.name == recipe

    def overrides(method):
        return getattr(type(implementation), method) is not getattr(Recipe, method)

    has = {
        "train": overrides("build_model") and overrides("datasets"),
        "evaluate": overrides("evaluate"),
        "tune": overrides("search_space") and overrides("score_trial"),
        "compare-attention": overrides("compare_attention"),
        "translate": implementation.use_command == "translate" and overrides("use"),
        "caption": implementation.use_command == "caption" and overrides("use"),
    }
    for command, implemented in has.items():
        assert (command in COMMANDS[recipe]) == implemented, command
