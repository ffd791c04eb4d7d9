"""Recipe `nmt`: neural machine translation with attention (Luong et al., 2015).

Bidirectional LSTM encoder, attentive LSTM decoder (input feeding off by default), teacher
forcing with a masked loss, greedy and beam search. Data: number sentences generated with
`num2words` (English -> French, no download) by default; `data=pairs.tsv` (split automatically)
or `train= valid= test=` split files (streamed from disk) for a real corpus, with whole-word or
SentencePiece subword vocabularies.

    python -m recipes train nmt attention=luong_general epochs=3
    python -m recipes train nmt config=configs/nmt-real-text.json
    python -m recipes evaluate nmt
    >>> from recipes import nmt
    >>> run_dir = nmt.train(nmt.NmtConfig(epochs=3))

Its rooms: `config` (NmtConfig), `data`, `model`, `inference` (Translator, the translate
command), `evaluate` (scores, compare_attention); `RECIPE` is its `recipes.base.Recipe`.
"""

from __future__ import annotations

import tensorflow as tf

from recipes import training
from recipes.base import Recipe
from recipes.nmt.config import RANGES, SUBWORD_MODELS, TOKENIZERS, NmtConfig, run_id
from recipes.nmt.data import (
    NAME,
    STREAM_BUCKETS,
    VOCAB_FILES,
    NmtData,
    batches,
    build_data,
    build_vocabularies,
    datasets,
    encode_pairs,
    load_pairs,
    load_vocabularies,
    make_dataset,
    most_frequent_token_rate,
    save_vocabularies,
    steps_for,
    stream_dataset,
    stream_steps,
    target_token_counts,
    train_pairs,
    unknown_rate,
)
from recipes.nmt.evaluate import compare_attention as _compare_attention
from recipes.nmt.evaluate import evaluate as _evaluate
from recipes.nmt.inference import (
    AttentionImages,
    SavedModelTranslator,
    Translation,
    Translator,
    plot_translation,
    translate_command,
)
from recipes.nmt.model import build_model, compile_model, init_output_bias, search_space
from zoo.translation_metrics import sacrebleu_scores

Config = NmtConfig


class Nmt(Recipe):
    name = NAME
    Config = NmtConfig
    objectives = {"val_bleu": "max", "val_loss": "min"}
    data_fields = (
        "data", "source_lang", "target_lang", "train_size", "validation_size", "test_size",
        "max_digits", "max_items", "max_source_length", "max_target_length", "max_vocab_size",
        "min_count", "seed", "train", "valid", "test", "tokenizer", "vocab_size", "joint_vocab",
        "subword_model",
    )
    use_command = "translate"

    def run_id(self, config):
        return run_id(config)

    def build_data(self, config, vocab_dir=None):
        return build_data(config, vocab_dir)

    def datasets(self, data, config, first_epoch=0):
        return datasets(data, config, first_epoch=first_epoch)

    def describe_data(self, data, config):
        sources = [s for s, _ in data.validation]
        targets = [t for _, t in data.validation]
        unknown = {"source": unknown_rate(data.source_vocab, sources),
                   "target": unknown_rate(data.target_vocab, targets)}
        summary = (f"{data.report}; {len(data.train) or 'streamed'} train / "
                   f"{len(data.validation)} validation / {len(data.test)} test pairs; "
                   f"{config.tokenizer} vocabularies {len(data.source_vocab)} / "
                   f"{len(data.target_vocab)} tokens, [UNK] on validation {unknown['source']}% / "
                   f"{unknown['target']}% of tokens")
        return summary, {"report": data.report, "unknown_rate_validation": unknown,
                         "vocabulary_sizes": [len(data.source_vocab), len(data.target_vocab)]}

    def save_vocabularies(self, run_dir, data, config):
        save_vocabularies(run_dir, data, config)

    def build_model(self, config, data, initialise=True):
        model = build_model(config, len(data.source_vocab), len(data.target_vocab))
        if initialise and config.output_bias_init == "unigram":
            init_output_bias(model, target_token_counts(config, data))
        return model

    def compile_model(self, model, config, steps_per_epoch):
        compile_model(model, config, steps_per_epoch)

    def search_space(self, hp, config):
        return search_space(hp, config)

    def callbacks(self, model, data, config, write_dir, chief):
        targets = data.target_vocab.encode(tf.constant([t for _, t in data.validation]), True,
                                           config.max_target_length).to_list()
        check = training.LearningCheck(most_frequent_token_rate(targets), "val_masked_accuracy")
        return [check] + ([AttentionImages(model, data, config, write_dir)] if chief else [])

    def load(self, run_dir):
        return Translator.from_run(run_dir)

    def load_saved_model(self, path):
        return SavedModelTranslator(path)

    def plot(self, result, path, title=None, image=None):
        return plot_translation(result, path, title=title)

    def evaluate(self, run_dir, beam=None, **kwargs):
        return _evaluate(run_dir, beam=beam, **kwargs)

    def score_trial(self, model, data, config):
        translator = Translator(model, data.source_vocab, data.target_vocab, config)
        sources = [s for s, _ in data.validation]
        results = translator.translate(sources, beam=config.beam_size, batch_size=128)
        references = [t for _, t in data.validation]
        return {"val_bleu": sacrebleu_scores([r.text for r in results], references)["bleu"]}

    def use(self, args):
        return translate_command(args, self)

    def compare_attention(self, config, baseline="none"):
        return _compare_attention(self, config, baseline)


RECIPE = Nmt()


# The module-level API (`nmt.train(config)`, ...): the recipe's commands.
def train(config: NmtConfig, quiet: bool = False) -> str:
    """Trains (or resumes) the run for `config`; returns its folder."""
    return RECIPE.train(config, quiet=quiet)


def evaluate(run_dir: str, beam: int | None = None, **kwargs) -> dict:
    """Scores a run: see `recipes.nmt.evaluate.evaluate`."""
    return RECIPE.evaluate(run_dir, beam=beam, **kwargs)


def tune(config: NmtConfig, **settings) -> str:
    """Searches `search_space` around `config` with keras-tuner (see `recipes.tuning`)."""
    return RECIPE.tune(config, **settings)


def compare_attention(config: NmtConfig, baseline: str = "none") -> dict:
    """The same config trained with and without attention: see `recipes.nmt.evaluate`."""
    return RECIPE.compare_attention(config, baseline)


__all__ = [
    "NAME", "RANGES", "RECIPE", "STREAM_BUCKETS", "SUBWORD_MODELS", "TOKENIZERS", "VOCAB_FILES",
    "AttentionImages", "Config", "Nmt", "NmtConfig", "NmtData", "SavedModelTranslator",
    "Translation", "Translator", "batches", "build_data", "build_model",
    "build_vocabularies", "compare_attention", "compile_model", "datasets", "encode_pairs",
    "evaluate", "init_output_bias", "load_pairs", "load_vocabularies", "make_dataset",
    "most_frequent_token_rate", "run_id", "save_vocabularies", "search_space", "steps_for",
    "stream_dataset", "stream_steps", "target_token_counts", "train", "train_pairs", "tune",
    "unknown_rate",
]
