"""Config dataclasses from `key=value` words: typed, checked, saved with every run."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import typing

from zoo.errors import ConfigError  # noqa: F401 - the config's error, raised from here

# The runs root of every command (train, evaluate, translate, export, bench): $ZOO_RUNS or runs/.
# The one place it is decided; tests point it elsewhere.
RUNS_ROOT = os.environ.get("ZOO_RUNS", "runs")


def _convert(name: str, kind, text: str):
    kind_name = getattr(kind, "__name__", str(kind))
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={text!r}: expected true or false")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected {kind_name}, e.g. {name}=3") from None
        return _finite(name, value)
    if kind is str:
        return text
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin is typing.Union or str(origin) == "types.UnionType":
        if text.lower() in ("none", "null", ""):
            return None
        return _convert(name, args[0], text)
    if origin is tuple:
        return tuple(_convert(name, args[0], part) for part in text.split(",") if part)
    raise ConfigError(f"{name}: cannot parse values of type {kind_name}")


def _check_value(name: str, kind, value):
    """Type-checks a value from JSON (hp files) the same way words are."""
    if isinstance(value, str) and kind is not str:
        return _convert(name, kind, value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, bool, str) and not isinstance(value, kind):
        raise ConfigError(f"{name}={value!r}: expected {kind.__name__}")
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: expected int")
    if kind is float:
        return _finite(name, value)
    return value


def _finite(name: str, value):
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value}: expected a finite number")
    return value


def check_range(config, name: str, low=None, high=None, low_open=False, high_open=False) -> None:
    """A one-line error unless `low <= config.<name> <= high` (`low_open`/`high_open`: strict)."""
    value = getattr(config, name)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        parts = []
        if low is not None:
            parts.append(f"{'above' if low_open else 'at least'} {low}")
        if high is not None:
            parts.append(f"{'below' if high_open else 'at most'} {high}")
        raise ConfigError(f"{name}={value}: must be {' and '.join(parts)}")


def check_ranges(config, ranges: dict) -> None:
    """`check_range` for each `name: (low, high[, low_open[, high_open]])` of `ranges`."""
    for name, bounds in ranges.items():
        check_range(config, name, *bounds)


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_run_id(run_id: str) -> None:
    """A run id is a plain folder name: it never leaves the runs root, and is not `latest`."""
    if run_id and (not RUN_ID.fullmatch(run_id) or run_id == "latest" or ".." in run_id):
        raise ConfigError(
            f"run_id={run_id!r}: a run id is a plain name (letters, digits, '.', '_', '-', at most "
            "100 characters, not 'latest'); runs go under ZOO_RUNS (default runs/): set ZOO_RUNS "
            "to write elsewhere"
        )


def latest_run(recipe: str) -> str:
    """`<runs root>/<recipe>/latest`: where every command looks when no run is given."""
    return os.path.join(RUNS_ROOT, recipe, "latest")


def run_dir_for(recipe: str, run_id: str) -> str:
    """`<runs root>/<recipe>/<run_id>`; the id is a plain name, so the folder stays in the root."""
    check_run_id(run_id)
    return os.path.join(RUNS_ROOT, recipe, run_id)


def field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown_key(cls, key: str) -> ConfigError:
    valid = sorted(field_types(cls))
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return ConfigError(
        f"unknown config key {key!r} for {cls.__name__}.{hint} Valid keys: {', '.join(valid)}"
    )


def apply_overrides(config, overrides: dict):
    """A copy of `config` with `overrides` ({key: str or value}) applied and checked."""
    types = field_types(type(config))
    changes = {}
    for key, value in overrides.items():
        if key not in types:
            raise _unknown_key(type(config), key)
        if isinstance(value, str):
            changes[key] = _convert(key, types[key], value)
        else:
            changes[key] = _check_value(key, types[key], value)
    new = dataclasses.replace(config, **changes)
    validate = getattr(new, "validate", None)
    if validate is not None:
        validate()
    return new


def parse_words(words: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}`, with a clear error for anything else."""
    out = {}
    for word in words:
        if "=" not in word:
            raise ConfigError(f"expected key=value, got {word!r} (e.g. epochs=3)")
        key, value = word.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def load_hp_file(path: str) -> dict:
    """Hyperparameters saved by a tuning run (`best.json`): {key: value}."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"hp file {path} does not exist; `python -m recipes tune RECIPE` writes one"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read hp file {path}: {e}") from None
    values = data.get("hyperparameters", data) if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of hyperparameters")
    return values


def load_config_file(path: str) -> dict:
    """A saved configuration (`config=FILE`): a JSON object, or a YAML mapping (`.yaml`, `.yml`,
    read with PyYAML's `safe_load`: plain data only), of config keys and values."""
    is_yaml = path.lower().endswith((".yaml", ".yml"))
    kind = "YAML mapping" if is_yaml else "JSON object"
    try:
        with open(path, encoding="utf-8") as f:
            if is_yaml:
                try:
                    import yaml
                except ModuleNotFoundError:
                    raise ConfigError(
                        f"config file {path}: reading YAML needs PyYAML, which attention-zoo "
                        "installs: pip install pyyaml (or give a .json file)"
                    ) from None
                try:
                    values = yaml.safe_load(f)
                except yaml.YAMLError as e:
                    where = getattr(e, "problem_mark", None)
                    at = f" at line {where.line + 1}" if where is not None else ""
                    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                    raise ConfigError(
                        f"cannot read config file {path}: not valid YAML{at}: {problem}"
                    ) from None
            else:
                values = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path}: expected a {kind} of key: value, got "
            f"{'nothing' if values is None else type(values).__name__}"
        )
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"config file {path}: keys must be config key names, got {bad[0]!r}")
    # "//...": comments; a list is a tuple field's value (encoder_filters: [16, 32])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
            if not k.startswith("//")}


def from_words(cls, words: list[str], hp_keys=None):
    """Builds `cls()` from `key=value` words: `config=FILE` (a JSON or YAML config) applies
    first, then `hp=FILE` (a tuning result), then the other words.

    An hp file may set only `hp_keys` (the recipe's searched hyperparameters): a tuning result
    can come from another machine's oracle, so it never names run ids, data or paths. `None`:
    the search space of the recipe whose config `cls` is.
    """
    overrides = parse_words(words)
    config = cls()
    path = overrides.pop("config", None)
    if path:
        config = apply_overrides(config, load_config_file(path))
    hp = overrides.pop("hp", None)
    if hp:
        values = load_hp_file(hp)
        if hp_keys is None:
            from recipes import search_keys  # recipes imports this module: imported on use

            hp_keys = search_keys(cls)
        other = sorted(set(values) - set(hp_keys))
        if other:
            raise ConfigError(
                f"hp file {hp} sets {', '.join(other)}, which the search does not tune; an hp "
                f"file may set only {', '.join(sorted(hp_keys)) or 'searched hyperparameters'} "
                "(give other keys as key=value words)"
            )
        config = apply_overrides(config, values)
    return apply_overrides(config, overrides)


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def fingerprint(config, ignore=()) -> str:
    """A short hash of the config: the same command gives the same run folder (resume)."""
    items = {k: v for k, v in to_dict(config).items() if k not in ignore}
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:8]


def fsync_dir(path: str) -> None:
    """Makes a rename in `path` durable (the folder entry, not only the file's bytes)."""
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp: str, path: str) -> None:
    """fsync `tmp`, rename it over `path`, fsync the folder; `tmp` is removed on any failure."""
    try:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(os.path.dirname(path))


def write_json(path: str, data) -> None:
    """Writes JSON atomically and durably (a temp file, fsynced, renamed over the target, its
    folder fsynced); a failed write leaves no temp file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, ensure_ascii=False)
            f.write("\n")
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    commit_file(tmp, path)
