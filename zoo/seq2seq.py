"""The attentive sequence-to-sequence translator: `Seq2Seq` (bidirectional LSTM encoder + attentive
LSTM decoder)."""

from __future__ import annotations

import keras
from keras import ops

from zoo.distribute import MultiWorkerFitMixin
from zoo.layers import make_attention
from zoo.layers.decoders import AttentiveLSTMDecoder
from zoo.layers.encoders import BidirectionalLSTMEncoder


@keras.saving.register_keras_serializable(package="zoo")
class Seq2Seq(MultiWorkerFitMixin, keras.Model):
    """Bidirectional LSTM encoder + attentive LSTM decoder (Luong et al., 2015).

    Args:
        source_vocab_size, target_vocab_size: vocabulary sizes (id 0 is padding).
        embedding_dim: token embedding size on both sides.
        units: decoder LSTM units; the encoder has `units // 2` per direction, so its outputs
            and final state (both directions concatenated) have `units` features.
        attention: a name from `ATTENTION_TYPES`; `"none"` is the bottleneck baseline.
        dropout: dropout rate in training.
        input_feeding: Luong's input feeding (the previous attentional vector is fed back).
        variational_dropout: one dropout mask per sentence, shared by its positions, in the
            encoder and the decoder (see `BidirectionalLSTMEncoder`). Defaults to `False`.

    Call arguments:
        inputs: dict with `"source"` int `(batch_size, Tv)` and `"target_in"` int
            `(batch_size, T)` (START then the target, teacher forcing).

    Returns:
        float32 logits `(batch_size, T, target_vocab_size)`.
    """

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        embedding_dim=128,
        units=256,
        attention="bahdanau",
        dropout=0.1,
        input_feeding=True,
        variational_dropout=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units % 2:
            raise ValueError(f"units must be even (split over two directions), got {units}")
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.attention_type = attention
        self.dropout = dropout
        self.input_feeding = input_feeding
        self.variational_dropout = bool(variational_dropout)
        self.encoder = BidirectionalLSTMEncoder(
            source_vocab_size, embedding_dim, units // 2, dropout, variational_dropout,
            name="encoder",
        )
        self.decoder = AttentiveLSTMDecoder(
            target_vocab_size,
            units,
            embedding_dim,
            make_attention(attention, units),
            dropout,
            input_feeding,
            variational_dropout=variational_dropout,
            name="decoder",
        )

    def build(self, input_shape=None):
        self.encoder.build((None, None))
        self.decoder.build((None, None), (None, None, self.units))
        self.built = True

    def encode(self, source, training=False, padded=True):
        """`(memory, mask, (h, c))` for int source ids `(batch_size, Tv)`. `padded=False`: every
        id is a real token (see `BidirectionalLSTMEncoder`); the mask is then all true."""
        mask = ops.not_equal(source, 0) if padded else ops.ones(ops.shape(source), "bool")
        memory, state = self.encoder(source, mask=mask, training=training, padded=padded)
        return memory, mask, state

    def call(self, inputs, training=None):
        logits, _ = self.forward(inputs["source"], inputs["target_in"], training=training)
        return logits

    def forward(self, source, target_in, training=None):
        """Teacher-forced logits and attention weights `(batch_size, T, Tv)`."""
        memory, mask, state = self.encode(source, training=training)
        return self.decoder(target_in, memory, mask, initial_state=state, training=training)

    def decoding_inputs(self, source, input_table=None, grouped=False, padded=True):
        """`(step_fn, initial_state, constants)` for `zoo.decoding.greedy_search/beam_search`.

        The step never proposes padding (id 0) or the start token (id 2): an undertrained model
        can score them highest, and a 0 inside an output would end it early for anything that
        counts non-padding ids. `input_table`: the decoder's `input_table()`, computed once
        (an export stores it), for steps that gather their tokens' LSTM input share from it.
        `grouped`: a step for `beam_search` that reads each sentence's memory once for its
        whole beam (`zoo.decoding`'s grouped steps); greedy search decodes with either.
        `padded=False`: every id of `source` is a real token (a sentence tokenised alone), so
        the encoder skips its masking; the same numbers as with it.
        """
        memory, mask, (h, c) = self.encode(source, padded=padded)
        constants = self.decoder.prepare_memory(memory, mask)
        never = [-1e9 if i in (0, 2) else 0.0 for i in range(self.target_vocab_size)]
        step = self.decoder.inference_step(logit_bias=ops.convert_to_tensor(never, "float32"),
                                           input_table=input_table, grouped=grouped)
        return step, self.decoder.initial_state(h, c), constants

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention": self.attention_type,
            "dropout": self.dropout,
            "input_feeding": self.input_feeding,
            "variational_dropout": self.variational_dropout,
        }
