"""The captioning recipe's model: `zoo.image_captioner.ImageCaptioner` built and compiled from a
config (optionally with pretrained backbone weights), and the keras-tuner search space."""

from __future__ import annotations

import dataclasses

from recipes import training
from recipes.captioning.config import CaptioningConfig
from zoo.image_captioner import ImageCaptioner
from zoo.image_encoders import build_image_encoder
from zoo.layers import ATTENTION_TYPES
from zoo.losses import masked_accuracy, masked_loss, masked_token_losses


def build_model(config: CaptioningConfig, vocab_size: int) -> ImageCaptioner:
    model = ImageCaptioner(
        vocab_size,
        image_size=config.image_size,
        backbone=config.backbone,
        trainable_backbone=config.trainable_backbone,
        encoder_filters=config.encoder_filters,
        batch_norm=config.batch_norm,
        feature_dim=config.feature_dim,
        embedding_dim=config.embedding_dim,
        units=config.units,
        attention=config.attention,
        dropout=config.dropout,
        input_feeding=config.input_feeding,
        context_gate=config.context_gate,
        doubly_stochastic=config.doubly_stochastic,
        position_embedding=config.position_embedding,
        feature_norm=config.feature_norm,
    )
    model.build()
    if config.weights:
        # Same architecture, pretrained weights: the model itself is always built offline.
        pretrained = build_image_encoder(
            config.backbone,
            weights=config.weights,
            trainable=config.trainable_backbone,
            image_size=config.image_size,
            feature_dim=config.feature_dim,
            filters=config.encoder_filters,
            batch_norm=config.batch_norm,
        )
        model.encoder.set_weights(pretrained.get_weights())
    return model


def compile_model(model, config: CaptioningConfig, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=training.optimizer(config, steps_per_epoch),
        loss=masked_token_losses,
        # The loss includes the attention regulariser; the cross-entropy alone is logged too.
        metrics=[masked_accuracy, masked_loss],
        jit_compile=config.jit_compile,
    )


def search_space(hp, config: CaptioningConfig) -> CaptioningConfig:
    """The captioning search space: `config` with values drawn from `hp` (a
    `kt.HyperParameters`), each named after the config field it sets (see `recipes.tuning`)."""
    # units stays fixed: the dot-product attentions need units == feature_dim.
    return dataclasses.replace(
        config,
        attention=hp.Choice("attention", list(ATTENTION_TYPES)),
        context_gate=hp.Boolean("context_gate"),
        input_feeding=hp.Boolean("input_feeding"),
        doubly_stochastic=hp.Choice("doubly_stochastic", [0.0, 0.01, 0.1]),
        embedding_dim=hp.Choice("embedding_dim", [32, 64, 128]),
        dropout=hp.Choice("dropout", [0.0, 0.1, 0.2]),
        learning_rate=hp.Choice("learning_rate", [1e-3, 3e-3, 1e-2]),
        beam_size=hp.Choice("beam_size", [1, 3]),
    )
