"""Recipes: one folder per task (`recipes/nmt/`, `recipes/captioning/`), registered by name.

    python -m recipes train nmt key=value ...      # or: make train RECIPE=nmt
    python -m recipes evaluate nmt
    >>> from recipes import get_recipe, load
    >>> get_recipe("nmt").train(get_recipe("nmt").Config(epochs=3))
    >>> model = load("runs/nmt/latest")

Each folder has the same rooms and one `recipes.base.Recipe`, its `RECIPE`; `recipes.runner`
runs any of them. This module imports no recipe until one is asked for, so the command line's
`--help` and its errors need no TensorFlow.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import io
import os
import textwrap
import tokenize

from zoo.errors import ConfigError, missing_extra

RECIPES = {"nmt": "recipes.nmt", "captioning": "recipes.captioning"}

# The command-line commands each recipe has (`python -m recipes COMMAND RECIPE`): the command
# line dispatches through this table, so a command a recipe lacks is a one-line error naming the
# recipes that have it. "evaluate --test" is `evaluate` on a test file of the user's own.
COMMANDS = {
    "nmt": ("train", "evaluate", "evaluate --test", "compare-attention", "tune", "translate",
            "export"),
    "captioning": ("train", "evaluate", "tune", "caption", "export"),
}


def get_recipe(name: str):
    """The `recipes.base.Recipe` of `name` (its folder's `RECIPE`); an unknown name lists the
    known ones."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[name]).RECIPE


def check_command(command: str, name: str) -> None:
    """A one-line error unless recipe `name` has `command` (a key of `COMMANDS`' tuples)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    if command not in COMMANDS[name]:
        having = [r for r, commands in COMMANDS.items() if command in commands]
        raise ConfigError(
            f"recipe {name} has no {command}; "
            + (f"recipes with it: {', '.join(having)}" if having else "no recipe has it")
            + f" ({name} has: {', '.join(COMMANDS[name])})"
        )


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    """One field of a config dataclass, as its source declares it (for `--help`)."""

    name: str
    type: str
    default: object  # the value, or the default's source text when it is not a literal
    meaning: str  # the comment lines above the field (and a comment after it), joined
    section: str  # the heading ("Model.", "Training.") of the group the field starts, or ""


def _is_heading(line: str) -> bool:
    """`# Model.`, `# Training.`, `# Decoding (evaluation, translate, export).`: a heading."""
    return line.endswith(".") and len(line.split()) <= 4 and ":" not in line


def _module_file(module: str) -> str:
    """The source file of `module`, found without importing it or the packages above it
    (`importlib.util.find_spec("recipes.nmt.config")` would import `recipes.nmt`: TensorFlow)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.origin:
        raise ImportError(f"no module {module}")
    path = spec.origin
    for part in rest:
        folder = os.path.join(os.path.dirname(path), part)
        path = (os.path.join(folder, "__init__.py") if os.path.isdir(folder)
                else folder + ".py")
    if not os.path.isfile(path):
        raise ImportError(f"no module {module}")
    return path


def _find_class(module: str, class_name: str | None, depth: int = 0):
    """(source, syntax tree, class name) of the module that defines the config class: the
    module itself, or the one its `Config` is imported from (`from x.config import A as Config`)."""
    with open(_module_file(module), encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source)
    wanted = class_name
    if wanted is None:  # what `Config` names: `Config = NmtConfig`, or a class of that name
        wanted = "Config"
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "Config"
                    and isinstance(node.value, ast.Name)):
                wanted = node.value.id
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == wanted:
            return source, tree, wanted
    for node in tree.body:  # imported: `from recipes.nmt.config import NmtConfig [as Config]`
        if isinstance(node, ast.ImportFrom) and node.module and not node.level and depth < 3:
            for alias in node.names:
                if (alias.asname or alias.name) == wanted:
                    return _find_class(node.module, alias.name, depth + 1)
    raise LookupError(f"{module} defines no config class {wanted}")


def config_keys(module: str, class_name: str | None = None) -> list[ConfigKey]:
    """The fields of the config dataclass of `module` (`class_name`, default what its `Config`
    names), read from the source without importing it (no TensorFlow for `--help`).

    The comments in the source are the documentation: the comment lines right above a field
    (up to a blank or code line) are its meaning, and a short first line ending in a full stop
    (`# Model.`) is the heading of the group the field starts.
    """
    source, tree, class_name = _find_class(module, class_name)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    own_line, trailing = {}, {}  # line number -> comment text (a line of its own / after code)
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            row, col = tok.start
            (own_line if not lines[row - 1][:col].strip() else trailing)[row] = text
    keys = []
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        block, row = [], node.lineno - 1
        while row in own_line:
            block.insert(0, own_line[row])
            row -= 1
        section = ""
        if block and _is_heading(block[0]):
            section = block.pop(0)
        if node.lineno in trailing:
            block.append(trailing[node.lineno])
        default = dataclasses.MISSING
        if node.value is not None:
            try:
                default = ast.literal_eval(node.value)
            except ValueError:
                default = ast.unparse(node.value)
        keys.append(ConfigKey(node.target.id, ast.unparse(node.annotation), default,
                              " ".join(block), section))
    return keys


def format_value(value) -> str:
    """A default as the command line writes it: `epochs=10`, `joint_vocab=true`, `a=1,2`."""
    if value is dataclasses.MISSING:
        return "(required)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if value == "":
        return '""'
    return str(value)


def config_help(module: str, class_name: str | None = None, title: str = "config keys",
                skip=(), width: int = 100) -> str:
    """The `--help` text listing every field of a config: `key=default  (type)` and its meaning."""
    out = [f"{title} (key=value words; shown with their defaults):"]
    for key in config_keys(module, class_name):
        if key.name in skip:
            continue
        if key.section:
            out.append(f"  -- {key.section.rstrip('.')}")
        out.append(f"  {key.name}={format_value(key.default)}  ({key.type})")
        if key.meaning:
            out.extend(textwrap.wrap(key.meaning, width, initial_indent=" " * 6,
                                     subsequent_indent=" " * 6))
    return "\n".join(out)


def search_keys(config_cls) -> list[str]:
    """The hyperparameters the search of the recipe configured by `config_cls` tunes."""
    try:
        import keras_tuner as kt
    except ModuleNotFoundError as e:  # an extra: pip install 'attention-zoo[tune]'
        raise missing_extra(e) from None

    for name in RECIPES:
        recipe = get_recipe(name)
        if recipe.Config is config_cls:
            probe = kt.HyperParameters()
            recipe.search_space(probe, config_cls())
            return [p.name for p in probe.space]
    return []


def load(path: str):
    """A trained model ready to use, from a run folder or an exported SavedModel folder.

    Returns a `recipes.nmt.Translator` or a `recipes.captioning.Captioner` (for a run), a
    `SavedModelTranslator` or `SavedModelCaptioner` (for an export): the recipe is the one whose
    name is in the path (`runs/<recipe>/...`, `exports/<recipe>/...`), nmt otherwise.
    """
    parts = os.path.abspath(path).split(os.sep)
    recipe = get_recipe(next((n for n in reversed(parts) if n in RECIPES), "nmt"))
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return recipe.load_saved_model(path)
    return recipe.load(path)


def plot_attention(result, path, title=None, image=None):
    """Writes the picture of where a model looked; returns the matplotlib figure.

    A `Translation` gives a heatmap (source tokens across, output tokens down); a `Caption`
    gives the image and one attention overlay per word, and needs the `image` it describes
    (a path, encoded bytes or an array).

    >>> result = load("runs/nmt/latest").translate(["three hundred forty-two"])[0]
    >>> plot_attention(result, "alignment.png")
    """
    recipe = get_recipe("nmt" if hasattr(result, "source_tokens") else "captioning")
    return recipe.plot(result, path, title=title, image=image)
