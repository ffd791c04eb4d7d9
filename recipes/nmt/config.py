"""The nmt recipe's config: every key with its default and meaning (`python -m recipes train nmt
--help` lists them from this source), the range of each number, and the run's folder name."""

from __future__ import annotations

import dataclasses
import os

from recipes.config import ConfigError, check_ranges, check_run_id, fingerprint
from zoo.data import parallel
from zoo.errors import DataError
from zoo.layers import ATTENTION_TYPES

TOKENIZERS = ("word", "sentencepiece")


SUBWORD_MODELS = ("unigram", "bpe")


@dataclasses.dataclass(frozen=True)
class NmtConfig:
    # Data: "num2words" (generated, no download) or the path of a source<TAB>target file.
    data: str = "num2words"
    source_lang: str = "en"
    target_lang: str = "fr"
    train_size: int = 40000
    validation_size: int = 1000
    test_size: int = 2000
    # The generated corpus (data=num2words): numbers of up to max_digits digits (10: up to
    # 9,999,999,999), lists of 2 to max_items of them; see zoo.data.num2words_corpus.make_corpus.
    max_digits: int = 10
    max_items: int = 7
    # Longer inputs are cut to this many tokens (in training, evaluation and export alike).
    max_source_length: int = 100
    max_target_length: int = 100
    # Split files instead of data= (each a .tsv, or SOURCE,TARGET plain-text files with one
    # sentence per line); the training split is streamed from disk, never held in memory.
    train: str = ""
    valid: str = ""
    test: str = ""
    # "word": whole words, lower-cased, up to max_vocab_size per side (min_count times or more).
    # "sentencepiece": subwords trained on the training split (vocab_size pieces, joint or per
    # side, subword_model unigram or bpe); case, punctuation and accents kept.
    tokenizer: str = "word"
    max_vocab_size: int = 32000
    min_count: int = 1
    vocab_size: int = 8000
    joint_vocab: bool = True
    subword_model: str = "unigram"
    # Model.
    # Luong dot attention without input feeding: the decoder's LSTM and its attention each run
    # over the whole target at once (docs/results.md has the measured comparison).
    attention: str = "luong_dot"
    embedding_dim: int = 64
    units: int = 128
    dropout: float = 0.1
    input_feeding: bool = False
    # One dropout mask per sentence, shared by its positions (see BidirectionalLSTMEncoder).
    variational_dropout: bool = True
    # Training.
    batch_size: int = 128
    # The output layer's bias starts at the log frequency of each target token in the training
    # split ("unigram"), or at 0 ("zeros"): with a large vocabulary a zero bias left runs stuck
    # at predicting the most frequent token.
    output_bias_init: str = "unigram"
    # Batch by tokens instead: about this many source + target tokens per batch (0: off).
    batch_tokens: int = 0
    label_smoothing: float = 0.0
    epochs: int = 10
    learning_rate: float = 0.003
    clipnorm: float = 1.0
    patience: int = 3
    # XLA compiles once per batch shape: worth it on a GPU, not with this CPU's varied lengths.
    jit_compile: bool = False
    mixed_precision: bool = False
    seed: int = 0
    # Decoding (evaluation, translate, export).
    beam_size: int = 4
    length_penalty: float = 0.6
    coverage_penalty: float = 0.0
    replace_unk: str = "auto"
    # Run folder name under runs/nmt/; empty: "<attention>-<config hash>", so re-running the
    # same command resumes the same run.
    run_id: str = ""

    def split_files(self) -> dict | None:
        """`{"train", "valid", "test": spec}` when the data comes in split files (train= valid=
        test=, or data=FOLDER holding train.tsv, valid.tsv and test.tsv), else None."""
        if self.train or self.valid or self.test:
            return {"train": self.train, "valid": self.valid, "test": self.test}
        if self.data != "num2words" and os.path.isdir(self.data):
            return {k: os.path.join(self.data, f"{k}.tsv") for k in ("train", "valid", "test")}
        return None

    def validate(self):
        if self.attention not in ATTENTION_TYPES:
            raise ConfigError(
                f"attention={self.attention!r} is not a known attention; choose one of: "
                f"{', '.join(ATTENTION_TYPES)}"
            )
        if self.replace_unk not in ("auto", "true", "false"):
            raise ConfigError(f"replace_unk={self.replace_unk!r}: expected auto, true or false")
        check_ranges(self, RANGES)
        check_run_id(self.run_id)
        if self.units % 2:
            raise ConfigError(f"units={self.units}: must be even (split over two directions)")
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"tokenizer={self.tokenizer!r}: choose one of {', '.join(TOKENIZERS)}")
        if self.subword_model not in SUBWORD_MODELS:
            raise ConfigError(
                f"subword_model={self.subword_model!r}: choose one of {', '.join(SUBWORD_MODELS)}"
            )
        if self.output_bias_init not in ("unigram", "zeros"):
            raise ConfigError(
                f"output_bias_init={self.output_bias_init!r}: choose unigram or zeros"
            )
        splits = self.split_files()
        if splits:
            missing = [k for k, v in splits.items() if not v]
            if missing:
                raise ConfigError(
                    f"split files need all three of train=, valid=, test=; missing: "
                    f"{', '.join(m + '=' for m in missing)} (or give one file with data=FILE, "
                    "which is split automatically, or data=FOLDER with train.tsv, valid.tsv, test.tsv)"
                )
            if self.train and self.data != "num2words":
                raise ConfigError(
                    f"data={self.data} and train=/valid=/test= both given; give one or the other"
                )
            try:
                for name, spec in splits.items():
                    parallel.check_split(parallel.parse_split(name, spec))
            except DataError as e:
                hint = ""
                if "does not exist" in str(e) and "bible-" in str(e):
                    hint = " (the Bible corpora are built with `make data CORPUS=bible-en-fr`)"
                raise ConfigError(f"{e}{hint}") from None
        elif self.data != "num2words" and not os.path.exists(self.data):
            raise ConfigError(
                f"data={self.data}: no such file; give a source<TAB>target .tsv file, split "
                "files with train= valid= test=, or data=num2words for the generated corpus"
            )
        elif self.data != "num2words" and not os.path.isfile(self.data):
            raise ConfigError(
                f"data={self.data} is not a regular file (a FIFO, socket or device?); save the "
                "pairs to a .tsv file and give its path"
            )


# The range of every numeric field: name -> (low, high[, low_open[, high_open]]).
RANGES = {
    **{key: (1, None) for key in (
        "train_size", "validation_size", "test_size", "max_digits", "max_items",
        "max_source_length", "max_target_length", "max_vocab_size", "min_count", "embedding_dim",
        "units", "batch_size", "epochs", "patience", "beam_size",
    )},
    "vocab_size": (16, None),
    "batch_tokens": (0, None),  # 0: off
    "dropout": (0.0, 1.0, False, True),
    "label_smoothing": (0.0, 1.0, False, True),
    "learning_rate": (0.0, 1.0, True),
    "clipnorm": (0.0, None, True),
    "seed": (0, None),
    "length_penalty": (0.0, None),
    "coverage_penalty": (0.0, None),
}


def run_id(config: NmtConfig) -> str:
    return config.run_id or f"{config.attention}-{fingerprint(config, ignore=('run_id',))}"
