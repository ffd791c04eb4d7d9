"""The recipe interface: what a recipe supplies and what the shared runner does with it.

A recipe is a folder with the same rooms (`recipes/nmt/` and `recipes/captioning/` alike):

    config.py     its config dataclass (every key with its default and meaning), RANGES, run_id
    data.py       loading, vocabularies, `tf.data` pipelines
    model.py      build_model, compile_model, search_space (keras-tuner)
    inference.py  the trained model behind a Python API, plots, its command-line use
    evaluate.py   scoring a run (and any comparison of its own)

and its `__init__.py` defines a `Recipe` subclass that names those pieces (the hooks below) and
one instance, `RECIPE`. `recipes.runner` owns what every recipe shares: train / resume / fit,
the tuning trial, loading a run, evaluation bookkeeping; `recipes.tuning` searches any recipe
through this interface and imports none. Export is one module per recipe (`export/<name>.py`).
A new recipe is one such folder, one line in `recipes.RECIPES` and `recipes.COMMANDS`, and one
export module.
"""

from __future__ import annotations

from zoo.errors import ConfigError


class Recipe:
    """A recipe's hooks. Subclasses set the class attributes and implement the methods marked
    "required"; the rest have defaults."""

    name: str = ""
    Config: type = object  # the config dataclass
    # Config keys a re-run may change without starting over (more epochs extend a finished run).
    continue_keys: tuple[str, ...] = ()
    # Tuning: objective name -> "max" | "min" (the first is the default), and the config fields
    # that decide the data (trials with the same values share it, built once per process).
    objectives: dict = {}
    data_fields: tuple[str, ...] = ()
    # The command that uses a trained model from the shell (`translate`, `caption`).
    use_command: str = ""

    # -- config ----------------------------------------------------------------------------

    def run_id(self, config) -> str:
        """The run's folder name under `runs/<name>/` (required)."""
        raise NotImplementedError

    # -- data ------------------------------------------------------------------------------

    def build_data(self, config, vocab_dir: str | None = None):
        """The recipe's data (splits and vocabularies); `vocab_dir`: reuse a run's saved
        vocabularies instead of building them (required)."""
        raise NotImplementedError

    def datasets(self, data, config, first_epoch: int = 0):
        """(train dataset, steps an epoch, validation dataset, validation steps) (required)."""
        raise NotImplementedError

    def describe_data(self, data, config) -> tuple[str, dict | None]:
        """A one-line summary for the log, and facts saved as the run's `data.json` (or None)."""
        return data.report, None

    def save_vocabularies(self, run_dir: str, data, config) -> None:
        """Writes the vocabularies a run needs to be used again (required)."""
        raise NotImplementedError

    # -- model -----------------------------------------------------------------------------

    def build_model(self, config, data, initialise: bool = True):
        """A built model for `data`'s vocabularies (required); `initialise`: also set any
        data-dependent initial values (weights about to be loaded need none)."""
        raise NotImplementedError

    def compile_model(self, model, config, steps_per_epoch: int) -> None:
        raise NotImplementedError

    def search_space(self, hp, config):
        """`config` with values drawn from `hp` (a `kt.HyperParameters`), each named after the
        config field it sets (required to tune)."""
        raise ConfigError(f"recipe {self.name} has no search space to tune")

    def callbacks(self, model, data, config, write_dir: str, chief: bool) -> list:
        """Extra training callbacks (attention plots, a learning check)."""
        return []

    # -- using and scoring a run -----------------------------------------------------------

    def load(self, run_dir: str):
        """The trained model of a run folder behind the recipe's Python API (required)."""
        raise NotImplementedError

    def load_saved_model(self, path: str):
        """An exported SavedModel behind the same API (required for `--model`)."""
        raise NotImplementedError

    def evaluate(self, run_dir: str, beam: int | None = None, **kwargs) -> dict:
        raise NotImplementedError

    def score_trial(self, model, data, config) -> dict:
        """The tuning objectives other than `val_loss`, for a trial's trained model."""
        raise NotImplementedError

    def plot(self, result, path: str | None, title: str | None = None, image=None):
        """The picture of where the model looked for one `load(...)` result (required)."""
        raise NotImplementedError

    def after_training(self, run_dir: str, data, quiet: bool) -> None:
        """Runs on the chief once a run has finished training (e.g. evaluate it)."""

    def use(self, args) -> int:
        """The `use_command` command line (`python -m recipes translate nmt ...`)."""
        raise ConfigError(f"recipe {self.name} has no command-line use")

    # -- the commands ----------------------------------------------------------------------

    def train(self, config, quiet: bool = False, **kwargs) -> str:
        """Trains (or resumes) the run for `config`; returns its folder."""
        from recipes import runner  # keeps `python -m recipes --help` free of TensorFlow

        return runner.train(self, config, quiet=quiet, **kwargs)

    def tune(self, config, **settings) -> str:
        """Searches `search_space` around `config` with keras-tuner (see `recipes.tuning`)."""
        from recipes import tuning  # keras-tuner is the [tune] extra: loaded on use only

        return tuning.tune(self, config, **settings)

    def compare_attention(self, config, baseline: str = "none") -> dict:
        raise ConfigError(f"recipe {self.name} has no compare-attention")

    def __repr__(self) -> str:
        return f"<recipe {self.name}>"
