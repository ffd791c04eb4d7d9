"""What `pip install attention-zoo` promises: a layers-only install needs no tuning, export or data
packages (extras bring them, and a missing one is a one-line error naming its extra), the console
command, one version, one license, one linter config, and no import cycles between modules.
"""

import ast
import configparser
import os
import re
import subprocess
import sys

import pytest

import zoo
from tests.helpers import run_python
from zoo.errors import EXTRAS, describe, missing_extra

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("zoo", "recipes", "export")
# Import name -> the distribution that brings it (numpy comes with tensorflow).
DISTRIBUTIONS = {
    "tensorflow": "tensorflow",
    "tensorflow_text": "tensorflow-text",
    "keras": "keras",
    "sentencepiece": "sentencepiece",
    "sacrebleu": "sacrebleu",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "yaml": "pyyaml",
    "numpy": "tensorflow",
    "keras_tuner": "keras-tuner",
    "tensorboard": "tensorboard",
    "ai_edge_litert": "ai-edge-litert",
    "tensorflow_serving": "tensorflow-serving-api",
    "num2words": "num2words",
    "sklearn": "scikit-learn",
}


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"), encoding="utf-8")
    return cfg


def _names(requirements: str) -> set[str]:
    return {
        re.split(r"[<>=!~;\[ ]", line.strip())[0].lower()
        for line in requirements.splitlines()
        if line.strip()
    }


def _modules() -> dict[str, str]:
    """Every module of the three packages: dotted name -> file."""
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), REPO)[:-3]
                    dotted = rel.replace(os.sep, ".")
                    out[dotted.removesuffix(".__init__")] = os.path.join(folder, name)
    return out


def _imports(path: str, top_level_only: bool):
    """(node, imported name or names) for each import statement; top level = what runs when
    the module is imported (module and class bodies, if/try blocks), not function bodies."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    stack = [(node, []) for node in tree.body]
    while stack:
        node, parents = stack.pop()
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, parents
        stack.extend((child, [*parents, node]) for child in ast.iter_child_nodes(node))


def _targets(module: str, node, modules) -> set[str]:
    """The project modules an import statement runs (with the packages above them)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert not node.level, f"{module}: relative import (the project uses absolute ones)"
        names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    # The packages a name passes through run too, save the importing module's own packages
    # (already running: Python imports them before the module). A package named as the
    # import's source (`from zoo.layers import X` inside zoo.layers.y) counts all the same.
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    out = set()
    for name in names:
        parts = name.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        found = [p for p in prefixes if p in modules]
        out.update(p for p in found[:-1] if p not in ancestors and p != module)
        if found and found[-1] != module:
            out.add(found[-1])
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        graph[module] = set()
        for node, _ in _imports(path, top_level_only):
            graph[module] |= _targets(module, node, modules)
    return graph


def _cycles(graph) -> list[list[str]]:
    """The cycles of the graph, one per strongly connected group (Tarjan)."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


# -- dependencies and extras ---------------------------------------------------------------------


def test_layers_only_install_needs_no_optional_package():
    cfg = _setup_cfg()
    core = _names(cfg["options"]["install_requires"])
    extras = {name: _names(text) for name, text in cfg["options.extras_require"].items()}
    # tensorboard: training's TensorBoard callback fails without it (tf.summary)
    assert {"tensorflow", "keras", "pyyaml", "tensorboard"} <= core
    optional = {
        "keras-tuner",
        "ai-edge-litert",
        "tensorflow-serving-api",
        "scikit-learn",
        "num2words",
    }
    assert not core & optional
    assert extras["tune"] == {"keras-tuner"}
    assert extras["export"] == {"ai-edge-litert", "tensorflow-serving-api"}
    assert extras["data"] == {"num2words", "scikit-learn"}
    assert extras["all"] == extras["tune"] | extras["export"] | extras["data"]
    assert {"pytest", "ruff"} <= extras["dev"]
    # Every optional import name is mapped to the extra that lists its distribution.
    for module, (distribution, extra) in EXTRAS.items():
        assert DISTRIBUTIONS[module] == distribution and distribution in extras[extra], module


def test_makefile_installs_every_extra():
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        assert "pip install --quiet -e '.[all,dev]'" in f.read()


def test_every_third_party_import_is_a_dependency():
    """A top-level import of a package outside install_requires must be an extra's, guarded."""
    cfg = _setup_cfg()
    core = _names(cfg["options"]["install_requires"])
    first_party = set(PACKAGES) | {"bench", "tests"}
    unguarded = []
    for module, path in _modules().items():
        for node, parents in _imports(path, top_level_only=True):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in first_party or top == "__future__":
                    continue
                assert top in DISTRIBUTIONS, f"{module} imports {top}: add it to setup.cfg"
                if DISTRIBUTIONS[top] in core:
                    continue
                guarded = any(
                    isinstance(p, ast.Try)
                    and any(
                        isinstance(h.type, ast.Name)
                        and h.type.id in ("ImportError", "ModuleNotFoundError")
                        for h in p.handlers
                    )
                    for p in parents
                )
                if not guarded:
                    unguarded.append(f"{module}: import {name}")
    assert not unguarded, "an extra's package imported when the module loads, unguarded: " + (
        "; ".join(unguarded)
    )


@pytest.mark.parametrize(
    "module, distribution, extra", [(m, d, e) for m, (d, e) in sorted(EXTRAS.items())]
)
def test_missing_extra_is_one_line_naming_it(module, distribution, extra):
    error = ModuleNotFoundError(f"No module named '{module}'", name=module)
    line = describe(error)
    what = module if module == distribution else f"{module} ({distribution})"
    assert line == (
        f"{what} is not installed: pip install 'attention-zoo[{extra}]' (or 'attention-zoo[all]')"
    )
    assert describe(missing_extra(error)) == line


@pytest.mark.parametrize(
    "blocked, argv, extra",
    [
        ("keras_tuner (keras-tuner)", ["tune", "nmt", "epochs=1"], "tune"),
        ("num2words", ["train", "nmt", "epochs=1"], "data"),
    ],
)
def test_command_without_its_extra_says_which_to_install(blocked, argv, extra):
    """The package is made unimportable (None in sys.modules, as Python does for a missing one)."""
    module = blocked.split()[0]
    code = (
        f"import sys; sys.modules[{module!r}] = None; from recipes.__main__ import main; "
        f"sys.exit(main({argv!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: {blocked} is not installed: pip install 'attention-zoo[{extra}]' "
        "(or 'attention-zoo[all]')"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("blocked", ["num2words", "sklearn", "keras_tuner"])
def test_recipes_import_without_the_data_and_tune_extras(blocked):
    """A user training on their own corpus needs no generated-data or tuning package: the recipe
    packages import without them (only the default data and `tune` ask for them, in one line)."""
    proc = run_python(
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import recipes.nmt, recipes.captioning, recipes.runner\n"
        "print(recipes.nmt.RECIPE, recipes.captioning.RECIPE)",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("<recipe nmt> <recipe captioning>")


def test_export_without_its_extra_says_so_before_loading_tensorflow(tmp_path):
    code = (
        "import sys; sys.modules['tensorflow_serving'] = None; from export.__main__ import main; "
        "code = main(['nmt', '--run', sys.argv[1]]); "
        "print('tensorflow' in sys.modules); sys.exit(code)"
    )
    proc = run_python(code, str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: tensorflow_serving (tensorflow-serving-api) is not installed: "
        "pip install 'attention-zoo[export]' (or 'attention-zoo[all]')\n"
    )
    assert proc.stdout.strip() == "False"


# -- console command, version, license, linter ---------------------------------------------------


def test_console_command_points_at_the_command_line():
    cfg = _setup_cfg()
    scripts = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    assert scripts == ["attention-zoo = recipes.__main__:cli"]
    import recipes.__main__

    assert callable(recipes.__main__.cli)


def test_one_version():
    cfg = _setup_cfg()
    assert cfg["metadata"]["version"] == "attr: zoo.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", zoo.__version__)


def test_license_file_matches_the_metadata():
    cfg = _setup_cfg()
    assert cfg["metadata"]["license"] == "Apache-2.0"
    assert cfg["metadata"]["license_files"].strip() == "LICENSE"
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_one_linter_and_formatter_config():
    import tomllib

    assert "flake8" not in _setup_cfg()
    with open(os.path.join(REPO, "ruff.toml"), "rb") as f:
        ruff = tomllib.load(f)
    assert ruff["line-length"] == 100 and "format" in ruff and "lint" in ruff
    for name in ("setup.cfg", "pyproject.toml"):
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            text = f.read()
        assert "[tool.black]" not in text and "[isort]" not in text and "[flake8]" not in text


# -- imports: no cycles, one-way layers ------------------------------------------------------------


def test_module_top_level_imports_have_no_cycle():
    """Modules' top-level imports (what runs on `import`) form no cycle: each imports alone."""
    assert _cycles(_graph(top_level_only=True)) == []


def test_all_imports_have_no_cycle_function_local_ones_included():
    """The whole import graph, imports inside functions included, is acyclic: no module reaches
    back to one that reaches it (a function-local import only delays loading, for start-up)."""
    assert _cycles(_graph(top_level_only=False)) == []


def test_tuning_and_the_runner_import_no_recipe():
    """The shared pieces reach recipes only through `recipes.base.Recipe` objects."""
    graph = _graph(top_level_only=False)
    recipe_packages = {m for m in graph if m.startswith(("recipes.nmt", "recipes.captioning"))}
    for shared in ("recipes.tuning", "recipes.runner", "recipes.training", "recipes.base",
                   "recipes.commands", "recipes.config"):
        assert not graph[shared] & recipe_packages, shared


def test_layers_import_one_way():
    """zoo imports neither recipes nor export; recipes never imports export, save the command
    line (recipes/__main__.py), which fronts all three stages as `attention-zoo`."""
    graph = _graph(top_level_only=False)
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            top, dest = module.split(".")[0], target.split(".")[0]
            if top == "zoo" and dest in ("recipes", "export"):
                wrong.append(f"{module} -> {target}")
            if top == "recipes" and dest == "export" and module != "recipes.__main__":
                wrong.append(f"{module} -> {target}")
    assert not wrong


def test_import_graph_sees_the_imports():
    """The graph the two tests above check is the real one (not empty by a parsing slip)."""
    graph = _graph(top_level_only=True)
    assert "recipes.config" in graph["recipes.nmt.data"] and "zoo.seq2seq" in graph["recipes.nmt.model"]
    assert "recipes.nmt.config" in graph["recipes.nmt"] and "recipes.runner" in graph["recipes.tuning"]
    assert "zoo.layers.base_attention" in graph["zoo.layers.bahdanau_attention"]
    assert "recipes.nmt.inference" in graph["export.nmt"]
    assert "recipes.nmt" not in graph["recipes"]  # get_recipe imports it on use only
    assert graph["zoo.layers"] >= {"zoo.layers.bahdanau_attention", "zoo.layers.base_attention"}
    assert "zoo.layers" not in graph["zoo.layers.bahdanau_attention"]  # its own package
    assert "zoo.layers" in graph["zoo.seq2seq"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Imported once by the parent of `test_every_module_imports_alone...`, before it forks a child per
# module: the third-party packages are what makes a fresh interpreter slow to import, and a
# project module cannot lean on them being loaded (its own names come from its own imports).
_FORK_IMPORTS = r"""
import importlib, json, os, sys
import numpy, tensorflow, keras  # noqa: F401  (third party only; no project module)
assert not [m for m in sys.modules if m.split(".")[0] in ("zoo", "recipes", "export")]
failures = []
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: this module is the first project module it imports
        os.close(read)
        try:
            importlib.import_module(module)
            message = b""
        except BaseException as error:
            message = f"{module}: {type(error).__name__}: {error}".encode()
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if message or status:
        failures.append(message or f"{module}: child exited with status {status}")
print(json.dumps(failures))
"""


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each module of zoo/, recipes/, export/ imported before any other project module: one
    interpreter loads the third-party packages, then forks a child per module (a subprocess
    each took a minute of the suite, nearly all of it importing TensorFlow again)."""
    import json

    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    modules = sorted(m for m in _modules() if not m.endswith("__main__"))
    proc = subprocess.run([sys.executable, "-c", _FORK_IMPORTS, *modules], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failures, failures
