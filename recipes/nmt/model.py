"""The nmt recipe's model: `zoo.seq2seq.Seq2Seq` built and compiled from a config, its output
bias started at the target unigram distribution, and the keras-tuner search space."""

from __future__ import annotations

import dataclasses

import numpy as np

from recipes import training
from recipes.nmt.config import NmtConfig
from zoo.layers import ATTENTION_TYPES
from zoo.losses import MaskedTokenLosses, masked_accuracy
from zoo.seq2seq import Seq2Seq


def init_output_bias(model: Seq2Seq, counts: np.ndarray) -> None:
    """Sets the output layer's bias to the log unigram distribution of the target tokens, so
    training starts from the frequency guess instead of a uniform one over a large vocabulary."""
    counts = counts.astype(np.float64) + 0.1
    model.decoder.output_projection.bias.assign(np.log(counts / counts.sum()).astype(np.float32))


def build_model(config: NmtConfig, source_vocab_size: int, target_vocab_size: int) -> Seq2Seq:
    model = Seq2Seq(
        source_vocab_size,
        target_vocab_size,
        embedding_dim=config.embedding_dim,
        units=config.units,
        attention=config.attention,
        dropout=config.dropout,
        input_feeding=config.input_feeding,
        variational_dropout=config.variational_dropout,
    )
    model.build()
    return model


def compile_model(model: Seq2Seq, config: NmtConfig, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=training.optimizer(config, steps_per_epoch),
        loss=MaskedTokenLosses(config.label_smoothing),
        metrics=[masked_accuracy],
        jit_compile=config.jit_compile,
    )


def search_space(hp, config: NmtConfig) -> NmtConfig:
    """The nmt search space: `config` with values drawn from `hp` (a `kt.HyperParameters`)."""
    return dataclasses.replace(
        config,
        attention=hp.Choice("attention", list(ATTENTION_TYPES)),
        units=hp.Choice("units", [64, 128, 256]),
        embedding_dim=hp.Choice("embedding_dim", [32, 64, 128]),
        dropout=hp.Choice("dropout", [0.0, 0.1, 0.2]),
        learning_rate=hp.Choice("learning_rate", [1e-3, 3e-3, 1e-2]),
        beam_size=hp.Choice("beam_size", [1, 4]),
    )
