"""The nmt export: the SavedModel's signatures (raw strings in, translations out), the TFLite
model (ids in, ids and attention out) and `TFLiteTranslator`, the host side an app runs around it.

`export.export("nmt", ...)` uses this module's hooks: `NAME`, `OPTIONS` (the caps
below), `run_files`, `load`, `save_saved_model` and `write_tflite` (see `export/__init__.py`).

Files written under an exports root (default `exports/`), beside `export.layout`'s versions:

    exports/nmt/<version>/assets.extra/nmt.json   the caps and settings fixed at export
    exports/tflite/
      nmt.tflite                 the model (float32)
      nmt.source_vocab.txt       one token per line, line number = id (line 0 is padding "")
      nmt.target_vocab.txt
      nmt.source.spm.model       with SentencePiece subwords: the tokenizers an app encodes
      nmt.target.spm.model       and decodes with
      nmt.json                   shapes, special ids, tokenisation rules: what an app needs

## SavedModel

Everything from the request to the answer is in the SavedModel's graph, written with TensorFlow
ops and tensorflow-text ops (which TF Serving links since 2.2), so a SavedModel loads in any
process that has `tensorflow` and `tensorflow_text` and none of this project's code. Beside the
model's weights it stores the decoder's `input_table()` (up to `MAX_INPUT_TABLE_BYTES`), from
which its decoding steps gather each token's LSTM input share: the same search as
`Translator`'s, up to float rounding, and faster for one-sentence requests.

Signatures (`nmt_archive`):

- `serving_default`: beam search with the run's `beam_size`, `length_penalty` and
  `coverage_penalty` (greedy when `beam_size` is 1).
- `greedy`: greedy search.

Both take `text`: string `[B]`, at most `max_request_sentences` of them, and return

- `translation`: string `[B]`, the detokenised translation.
- `source_tokens`: string `[B, T_in]`, the normalised source tokens the model saw (after
  truncation), padded with `""`.
- `truncated`: bool `[B]`: the sentence was cut before translation, to `max_sentence_bytes`
  bytes or to the run's `max_source_length` tokens (`source_tokens` shows what was kept).
- `target_tokens`: string `[B, T_out]`, the output tokens, then `"[END]"` where the model emitted
  it, padded with `""`.
- `attention`: float32 `[B, T_out, T_in]`: `attention[b, t, s]` is the weight output token
  `target_tokens[b, t]` put on `source_tokens[b, s]`. Each row of a real output token sums to 1
  over the real source tokens; padding rows and columns are 0.
- `score`: float32 `[B]`: the hypothesis score (beam search: GNMT's penalised score; greedy: the
  sum of the token log-probabilities, the end token included).

Caps, fixed at export (`python -m export nmt --max-sentence-bytes N --max-request-sentences N`;
defaults `recipes.nmt.inference.MAX_SENTENCE_BYTES` and `MAX_REQUEST_SENTENCES`) and recorded in
`<version>/assets.extra/nmt.json` with the signatures' other settings:

- A request of more than `max_request_sentences` sentences fails (INVALID_ARGUMENT, the message
  names the limit and the flag), before any sentence is read; send smaller batches.
- A sentence longer than `max_sentence_bytes` bytes is cut to that many (at a UTF-8 character
  boundary, as `recipes.nmt.inference.cut_utf8`) BEFORE it is normalised and tokenised, so a huge
  string costs no more than a long sentence; its `truncated` is true.

Requests that are not ordinary sentences give outputs, never an error:

- Empty, whitespace-only or any string without source tokens: an empty translation, without a
  made-up sentence: `translation` `""`, `target_tokens` all `""` (no `[END]`), `attention` all
  0, `score` 0; the other sentences of the batch are translated as if it were not there.
  Its `source_tokens` row is all `""`.
- Longer than the run's `max_source_length` tokens: only the first `max_source_length` tokens
  are translated (the rest are dropped, as in training); `source_tokens` shows what was kept,
  `truncated` is true. A translation has at most
  `min(2 * source tokens + 10, max_target_length + 1)` tokens, the end token included, the
  source count being the longest in the batch.
- Invalid UTF-8: each bad byte becomes U+FFFD, as do control characters (`zoo.text.normalize`).
- Unknown words: looked up as `[UNK]`; when the run's `replace_unk` setting is on (`true`, or
  `auto` with a TSV corpus), each output `[UNK]` is replaced by the source token its attention
  peaks on, as `recipes.nmt.inference.Translator.translate` does.
- An empty batch (`[0]` strings): empty outputs of the shapes above.

## TFLite

The TFLite model (`tflite_archive`) is the encoder plus the whole greedy search loop
(`zoo.decoding.greedy_search`) in one graph, converted with TFLite builtin ops only
(`export.tflite`), so the standalone `ai_edge_litert.interpreter.Interpreter` runs it. Its one
signature, `serving_default`, has a fixed shape:

- input `source_ids`: int32 `[1, max_source_length]`, the source token ids padded with 0 at the
  end (longer sentences must be cut to `max_source_length` tokens first), each below the source
  vocabulary's size. The graph encodes the ids up to the last non-zero one, so its cost follows
  the sentence's length, not `max_source_length`. Ids that break these rules are not an error in
  the graph (it cannot raise one) but are made harmless: an id out of range reads as `[UNK]`, a 0
  between ids (a hole, or left padding) as a masked padding position; no id is ever dropped.
  `TFLiteTranslator.decode_ids` refuses them with a ValueError instead.
- No source ids at all (all 0: an empty or blank sentence): an empty translation, `length` 0,
  `tokens`, `attention` and `score` all 0, as the SavedModel answers it.
- output `tokens`: int32 `[1, max_target_length + 1]`, the output ids, then the end id (3)
  where the model emitted it, then 0.
- output `length`: int32 `[1]`, the number of output tokens before the end token.
- output `attention`: float32 `[1, max_target_length + 1, max_source_length]`: row `t` is where
  output token `t` looked (the row after the last token is the end token's); 0 elsewhere.
- output `score`: float32 `[1]`, the sum of the emitted tokens' log-probabilities.

It decodes as the SavedModel's `greedy` signature does, up to float rounding (same step limit:
`min(2 * source tokens + 10, max_target_length + 1)`); it has no input table, so the file stays
small for a phone. Tokenisation stays outside: ids come from
the vocabulary files; `tokenize` below is a pure-Python version of `zoo.text.tokenize` for apps
and tests. `TFLiteTranslator` is the small host-side wrapper: it cuts a sentence to the
metadata's `max_sentence_bytes` bytes before tokenising it (as the SavedModel does), reports
`truncated`, checks ids before they reach the model, and may be called from several threads
(one interpreter per thread).
"""

from __future__ import annotations

import json
import os
import re
import threading
import unicodedata

import keras
import numpy as np
import tensorflow as tf

from export import graph, tflite, warmup
from recipes.nmt.inference import (
    MAX_REQUEST_SENTENCES,
    MAX_SENTENCE_BYTES,
    METADATA_FILE,
    Translator,
    cut_utf8,
    utf8,
)
from zoo import text as zoo_text
from zoo.subwords import SubwordTokenizer

# -- the exporter's hooks (export/__init__.py) -----------------------------------------------

NAME = "nmt"
OPTIONS = ("max_sentence_bytes", "max_request_sentences")  # the caps `export.export` passes on
# The SavedModel stores the decoder's `input_table()` (each target token's LSTM input share) when
# it is at most this big: 16 MB for a 4,000-subword vocabulary and 256 units, about 14% off a
# one-sentence request. A larger vocabulary decodes without it.
MAX_INPUT_TABLE_BYTES = 64 * 2**20


def run_files(config: dict) -> tuple[str, ...]:
    """The vocabularies a finished nmt run keeps beside `config.json` and `model.keras`: its
    SentencePiece models with subwords (`"tokenizer": "sentencepiece"`), else its word lists."""
    if config.get("tokenizer") == "sentencepiece":
        return ("source.spm.model", "target.spm.model")
    return ("source_vocab.txt", "target_vocab.txt")


def load(run_dir: str) -> Translator:
    """The run's `recipes.nmt.inference.Translator` (model, vocabularies, config); a RunError
    for a run of another recipe."""
    return Translator.from_run(run_dir)


def save_saved_model(translator, folder: str, name: str = NAME, replace_unk=None,
                     max_sentence_bytes: int = MAX_SENTENCE_BYTES,
                     max_request_sentences: int = MAX_REQUEST_SENTENCES) -> None:
    """Writes the nmt SavedModel (with its warmup requests and `assets.extra/nmt.json`) into
    `folder`; `name` is the model's name in TF Serving (the warmup requests carry it)."""
    nmt_archive(translator, replace_unk=replace_unk, max_sentence_bytes=max_sentence_bytes,
                max_request_sentences=max_request_sentences).write_out(folder, verbose=False)
    meta = nmt_metadata(translator, max_sentence_bytes, max_request_sentences)
    extra = os.path.join(folder, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    texts = warmup_texts(translator.source_vocab.tokens)
    # Each request within the cap: a warmup request the model refuses stops TF Serving loading it.
    size = max_request_sentences
    warmup.write_requests(
        folder,
        [warmup.predict_request(name, "serving_default", {"text": texts[i : i + size]})
         for i in range(0, len(texts), size)]
        + [warmup.predict_request(name, "greedy", {"text": texts[:min(2, size)]})],
    )


def write_tflite(translator, exports_root: str, quantize: bool = False, name: str = NAME,
                 max_sentence_bytes: int = MAX_SENTENCE_BYTES,
                 max_request_sentences: int | None = None) -> list[str]:
    """Writes `exports_root/tflite/<name>.tflite` and its vocabulary and metadata files.

    With `quantize=True` also `<name>.dynamic_range.tflite`. Each file is written to a
    temporary name and renamed. `max_sentence_bytes` goes into the metadata: an app cuts each
    sentence to that many bytes before tokenising it. `max_request_sentences` is the
    SavedModel's cap; the TFLite model takes one sentence a call, so it is not used. Returns
    the paths written.
    """
    config = translator.config
    out_length = config.max_target_length + 1
    subwords = isinstance(translator.target_vocab, SubwordTokenizer)
    files = {}
    for side, vocab in (("source", translator.source_vocab), ("target", translator.target_vocab)):
        files[f"{name}.{side}_vocab.txt"] = tflite.vocabulary_file(vocab.tokens)
        if subwords:  # the SentencePiece model an app encodes and decodes with
            files[f"{name}.{side}.spm.model"] = vocab.model_proto
    meta = {
        "model": f"{name}.tflite",
        "source_vocab": f"{name}.source_vocab.txt",
        "target_vocab": f"{name}.target_vocab.txt",
        "inputs": {"source_ids": ["int32", [1, config.max_source_length]]},
        "outputs": tflite.outputs_metadata(out_length, [config.max_source_length]),
        "max_source_length": config.max_source_length,
        "max_target_length": config.max_target_length,
        "max_sentence_bytes": int(max_sentence_bytes),
        "source_vocab_size": len(translator.source_vocab),
        "special_ids": tflite.SPECIAL_IDS,
        "source_ids": "right-padded with 0, no 0 between ids, each < source_vocab_size; "
                      "all 0 (no tokens) gives an empty translation",
        "tokenization": "UTF-8 cut to max_sentence_bytes bytes at a character boundary "
                        "(recipes.nmt.inference.cut_utf8), then lower-case, NFKC, punctuation split "
                        "off, whitespace split (export.nmt.tokenize); unknown words -> unk id",
        "decoding": "greedy",
    }
    if subwords:
        meta.update(
            tokenizer="sentencepiece",
            source_tokenizer=f"{name}.source.spm.model",
            target_tokenizer=f"{name}.target.spm.model",
            tokenization=(
                "SentencePiece (the sentencepiece package, or the SentencePiece library in an "
                "app): UTF-8 cut to max_sentence_bytes bytes at a character boundary "
                "(recipes.nmt.inference.cut_utf8), invalid UTF-8 -> U+FFFD and control characters "
                "-> spaces, then "
                "source_ids = SentencePieceProcessor(source_tokenizer).encode(text), cut to "
                "max_source_length; the model's NFKC rule is inside the .spm.model file. Output: "
                "target decode(tokens[:length]). Case, punctuation and accents are kept."
            ),
        )
    return tflite.write(tflite_archive(translator), exports_root, name, quantize, files, meta)


# -- the SavedModel's graph, in TensorFlow ops ---------------------------------------------


def check_caps(max_sentence_bytes, max_request_sentences) -> None:
    """A one-line ValueError for caps no request could live with."""
    if not isinstance(max_sentence_bytes, int) or max_sentence_bytes < 16:
        raise ValueError(f"max_sentence_bytes={max_sentence_bytes!r}: must be an integer of at "
                         f"least 16 (default {MAX_SENTENCE_BYTES})")
    if not isinstance(max_request_sentences, int) or max_request_sentences < 1:
        raise ValueError(f"max_request_sentences={max_request_sentences!r}: must be an integer "
                         f"of at least 1 (default {MAX_REQUEST_SENTENCES})")


def vocabulary_table(tokens: list[str]) -> tf.lookup.StaticHashTable:
    """token -> id as `zoo.text.Vocabulary.ids` does: unknown tokens give `[UNK]`'s id.

    Built from constants, so the table lives in the SavedModel's graph with no asset file.
    """
    keys = tf.constant(tokens[1:])  # the empty padding token is never looked up
    values = tf.range(1, len(tokens), dtype=tf.int64)
    init = tf.lookup.KeyValueTensorInitializer(keys, values)
    return tf.lookup.StaticHashTable(init, default_value=zoo_text.UNK_ID)


def _pad_to_width(x, width, value):
    """Pads the last axis of `x` `[B, T]` (or `[B, T, S]` along T's axis) up to `width`."""
    missing = tf.maximum(width - tf.shape(x)[1], 0)
    paddings = tf.concat([[[0, 0], [0, missing]], tf.zeros([tf.rank(x) - 2, 2], tf.int32)], 0)
    return tf.pad(x, paddings, constant_values=value)


def max_decode_length(source_lengths, max_target_length: int):
    """Each sentence's step limit, as `Translator.max_decode_length` computes it: twice its
    source length plus 10, at most `max_target_length + 1` (the end token included). Per
    sentence, so that a sentence translates the same alone and in any batch."""
    return tf.minimum(2 * source_lengths + 10, max_target_length + 1)


def replace_unknown(words, target_ids, lengths, source_tokens, source_lengths, attention):
    """Replaces each output `[UNK]` by the source token its attention row peaks on.

    Args:
        words: string `[B, T]` output tokens; `target_ids`: their int ids `[B, T]`.
        lengths: int `[B]`, the number of real output tokens (later positions are left alone).
        source_tokens: string `[B, S]`; `source_lengths`: int `[B]` (a sentence without source
            tokens keeps its `[UNK]`s).
        attention: float `[B, T, S]`.
    """
    positions = tf.range(tf.shape(words)[1])[None, :]
    peak = tf.argmax(attention, axis=-1, output_type=tf.int32)
    peak_token = tf.gather(source_tokens, peak, batch_dims=1)
    replace = (
        tf.equal(target_ids, zoo_text.UNK_ID)
        & (positions < lengths[:, None])
        & (source_lengths[:, None] > 0)
    )
    return tf.where(replace, peak_token, words)


def cut_bytes(text, limit: int):
    """`[B]` strings -> (`[B]` strings of at most `limit` bytes, bool `[B]`: was it cut).

    The rule of `recipes.nmt.inference.cut_utf8`, in TensorFlow ops: a string longer than `limit`
    bytes is cut at byte `limit`, or up to 3 bytes earlier at the start of the UTF-8 character
    that byte continues. Only the kept bytes are copied; `limit` must be at least 4.
    """
    length = tf.strings.length(text)  # bytes
    over = length > limit
    # The bytes limit-3 .. limit of the strings that are too long (zeros for the others).
    pos = tf.where(over, limit - 3, 0)
    tail = tf.io.decode_raw(tf.strings.substr(text, pos, tf.fill(tf.shape(pos), 4)), tf.uint8,
                            fixed_length=4)
    starts = tf.not_equal(tf.bitwise.bitwise_and(tail, 0xC0), 0x80)  # not a continuation byte
    back = tf.where(starts[:, 3], 0, tf.where(starts[:, 2], 1, tf.where(
        starts[:, 1], 2, tf.where(starts[:, 0], 3, 0))))
    cut = tf.where(over, limit - back, length)
    return tf.strings.substr(text, tf.zeros_like(cut), cut), over


def check_request_size(text, limit: int):
    """`text` `[B]` itself, once it is known to hold at most `limit` strings; else the call
    fails with InvalidArgumentError (TF Serving: INVALID_ARGUMENT) naming the limit and the
    export flag that raises it. Nothing reads the strings before the check."""
    n = tf.size(text)
    message = tf.strings.format(
        "this request has {} sentences; the nmt model takes at most " + str(int(limit))
        + " per request: send smaller batches, or re-export with "
        "`python -m export nmt --max-request-sentences N`", [n])
    with tf.control_dependencies([tf.debugging.Assert(n <= limit, [message])]):
        return tf.identity(text)


def without_blank(out, has_source):
    """A search's outputs with the rows of sentences without source tokens (`has_source` bool
    `[B]` false) emptied: no tokens (not even the end token), attention 0, score 0. Rows are
    independent in both searches, so the other sentences are untouched."""
    keep = has_source[:, None]
    return {
        **out,
        "tokens": tf.where(keep, out["tokens"], tf.zeros_like(out["tokens"])),
        "lengths": tf.where(has_source, out["lengths"], tf.zeros_like(out["lengths"])),
        "attention": tf.where(keep[:, :, None], out["attention"], tf.zeros_like(out["attention"])),
        "score": tf.where(has_source, out["score"], tf.zeros_like(out["score"])),
    }


class NmtGraph:
    """The nmt model from raw strings to translations, in TensorFlow ops.

    Args:
        model: a built `zoo.seq2seq.Seq2Seq`.
        source_vocab, target_vocab: the run's vocabularies (`zoo.text.Vocabulary` or
            `zoo.subwords.SubwordTokenizer`).
        config: the run's `NmtConfig` (max lengths, beam settings, `replace_unk`).
        replace_unk: overrides the run's setting; `None` follows it as `Translator` does.
        max_sentence_bytes: each sentence is cut to that many bytes before it is tokenised.
        max_request_sentences: a request of more sentences fails (INVALID_ARGUMENT).
    """

    def __init__(self, model, source_vocab, target_vocab, config, replace_unk=None,
                 max_sentence_bytes: int = MAX_SENTENCE_BYTES,
                 max_request_sentences: int = MAX_REQUEST_SENTENCES):
        check_caps(max_sentence_bytes, max_request_sentences)
        self.model = model
        self.config = config
        self.max_sentence_bytes = int(max_sentence_bytes)
        self.max_request_sentences = int(max_request_sentences)
        # SentencePiece subwords or whole words (zoo.text.Vocabulary).
        self.subwords = isinstance(target_vocab, SubwordTokenizer)
        self.source_vocab, self.target_vocab = source_vocab, target_vocab
        self.source_table = None if self.subwords else vocabulary_table(source_vocab.tokens)
        self.target_strings = tf.constant(target_vocab.tokens)
        if replace_unk is None:
            setting = config.replace_unk
            replace_unk = setting == "true" or (setting == "auto" and (config.data != "num2words" or bool(config.train)))
        # Without attention there is nothing to point at; subwords spell rare words out.
        self.replace_unk = (bool(replace_unk) and model.decoder.attention is not None
                            and not self.subwords)
        decoder = model.decoder
        table_bytes = (decoder.vocab_size * 4 * decoder.units
                       * tf.as_dtype(decoder.compute_dtype).size)
        self.input_table = None
        if table_bytes <= MAX_INPUT_TABLE_BYTES:
            self.input_table = tf.Variable(decoder.input_table(), trainable=False,
                                           name="decoder_input_table")

    def trackables(self) -> list:
        """What an ExportArchive must track for this graph (lookup tables, tokenizers, the
        decoder's input table)."""
        table = [] if self.input_table is None else [self.input_table]
        if self.subwords:
            return [self.source_vocab] + ([] if self.target_vocab is self.source_vocab
                                          else [self.target_vocab]) + table
        return [self.source_table] + table

    def tokenize(self, text):
        """`[B]` strings -> (string tokens `[B, T_in]`, int32 ids `[B, T_in]`, bool
        `truncated` `[B]`), `T_in >= 1`: each string cut to `max_sentence_bytes` bytes, then
        tokenised, then cut to `max_source_length` tokens, as `Translator.source` does."""
        text, truncated = cut_bytes(text, self.max_sentence_bytes)
        limit = self.config.max_source_length
        if self.subwords:
            ids = self.source_vocab.encode(text)
            truncated |= ids.row_lengths() > limit
            ids = ids[:, :limit]
            tokens = self.source_vocab.strings(ids)
            return (_pad_to_width(tokens.to_tensor(""), 1, ""),
                    _pad_to_width(tf.cast(ids, tf.int32).to_tensor(0), 1, 0), truncated)
        tokens = zoo_text.tokenize(text)
        truncated |= tokens.row_lengths() > limit
        tokens = tokens[:, :limit]
        ids = tf.cast(tokens.with_flat_values(self.source_table.lookup(tokens.flat_values)), tf.int32)
        # Width at least 1, as Translator pads: an all-empty batch still has a source position.
        return (_pad_to_width(tokens.to_tensor(""), 1, ""), _pad_to_width(ids.to_tensor(0), 1, 0),
                truncated)

    def decode(self, source_ids, beam_size: int):
        """int32 `[B, S]` ids -> dict of tokens `[B, T]`, lengths `[B]`, attention `[B, T, S']`,
        score `[B]`, from greedy (`beam_size == 1`) or beam search; `S'` is 0 without attention."""
        config = self.config

        def run(ids, padded=True):
            source_lengths = tf.reduce_sum(tf.cast(ids != 0, tf.int32), 1)
            return graph.search(
                self.model.decoding_inputs(ids, input_table=self.input_table,
                                           grouped=beam_size > 1, padded=padded),
                tf.shape(ids)[0],
                max_decode_length(source_lengths, config.max_target_length),
                beam_size,
                config.length_penalty,
                config.coverage_penalty,
            )

        if beam_size > 1 or source_ids.shape[0] is not None:
            return run(source_ids)
        # A batch of one sentence (a latency-bound request) gets its own loop, traced with a
        # static batch of 1, where the attention skips the batched matmuls' fixed cost. Its ids
        # are its own tokens, without padding (an empty sentence's one pad id gives an output
        # that `without_blank` drops), so the encoder skips its masking.
        return tf.cond(tf.shape(source_ids)[0] == 1,
                       lambda: run(tf.ensure_shape(source_ids, [1, None]), padded=False),
                       lambda: run(source_ids))

    def translate(self, text, beam_size: int):
        """The signature body: `[B]` strings -> the six outputs in the module docstring."""

        def empty():
            return {
                "translation": tf.zeros([0], tf.string),
                "attention": tf.zeros([0, 0, 1], tf.float32),
                "source_tokens": tf.zeros([0, 1], tf.string),
                "target_tokens": tf.zeros([0, 0], tf.string),
                "score": tf.zeros([0], tf.float32),
                "truncated": tf.zeros([0], tf.bool),
            }

        text = check_request_size(text, self.max_request_sentences)
        return graph.unless_empty(tf.size(text), lambda: self._translate(text, beam_size), empty)

    def _translate(self, text, beam_size: int):
        source_tokens, source_ids, truncated = self.tokenize(text)
        source_lengths = tf.reduce_sum(tf.cast(source_ids != 0, tf.int32), 1)
        out = without_blank(self.decode(source_ids, beam_size), source_lengths > 0)
        target_ids, lengths, attention = graph.trim(out)
        width = tf.shape(target_ids)[1]
        # A model without attention has depth 0: give it the source's width, all zeros.
        depth_missing = tf.shape(source_ids)[1] - tf.shape(attention)[2]
        attention = tf.pad(attention, [[0, 0], [0, 0], [0, depth_missing]])
        words = tf.gather(self.target_strings, target_ids)
        if self.replace_unk:
            words = replace_unknown(
                words, target_ids, lengths, source_tokens, source_lengths, attention
            )
        if self.subwords:
            translation = self.target_vocab.detokenize(
                tf.RaggedTensor.from_tensor(target_ids, lengths=tf.minimum(lengths, width))
            )
        else:
            translation = zoo_text.detokenize(
                tf.RaggedTensor.from_tensor(words, lengths=tf.minimum(lengths, width))
            )
        return {
            "translation": translation,
            "attention": attention,
            "source_tokens": source_tokens,
            "target_tokens": words,
            "score": out["score"],
            "truncated": truncated,
        }


NMT_SIGNATURES = ("serving_default", "greedy")


def nmt_archive(translator, replace_unk=None, max_sentence_bytes: int = MAX_SENTENCE_BYTES,
                max_request_sentences: int = MAX_REQUEST_SENTENCES) -> keras.export.ExportArchive:
    """A `keras.export.ExportArchive` with the nmt signatures, ready for `write_out`.

    Args:
        translator: a `recipes.nmt.inference.Translator` (model, vocabularies, config).
        replace_unk: overrides the run's `replace_unk` setting when not `None`.
        max_sentence_bytes, max_request_sentences: the caps (see the module docstring).
    """
    nmt = NmtGraph(
        translator.model,
        translator.source_vocab,
        translator.target_vocab,
        translator.config,
        replace_unk=replace_unk,
        max_sentence_bytes=max_sentence_bytes,
        max_request_sentences=max_request_sentences,
    )
    spec = [tf.TensorSpec([None], tf.string, name="text")]
    beam_size = int(translator.config.beam_size)

    def serving_default(text):
        return nmt.translate(text, beam_size)

    def greedy(text):
        return nmt.translate(text, 1)

    return graph.archive(translator.model,
                         {"serving_default": (serving_default, spec), "greedy": (greedy, spec)},
                         trackables=nmt.trackables())


def warmup_texts(source_tokens: list[str]) -> list[str]:
    """A few sentences of different lengths made of the source vocabulary's commonest words,
    plus an empty string: requests any nmt model accepts, for the warmup file and the tests."""
    # SentencePiece pieces mark a word's start with U+2581; the sentences are plain words.
    words = [w.replace("\u2581", "") for w in source_tokens[len(zoo_text.SPECIAL_TOKENS):]]
    words = [w for w in words if w.strip()] or ["a"]
    pick = lambda n: " ".join(words[i % len(words)] for i in range(n))  # noqa: E731
    return [pick(1), pick(4), pick(12), ""]


def nmt_metadata(translator, max_sentence_bytes: int, max_request_sentences: int) -> dict:
    """What `assets.extra/nmt.json` records: the caps and the settings fixed at export."""
    config = translator.config
    return {
        "signatures": list(NMT_SIGNATURES),
        "inputs": {"text": ["string", [-1]]},
        "outputs": {"translation": ["string", [-1]], "attention": ["float32", [-1, -1, -1]],
                    "source_tokens": ["string", [-1, -1]], "target_tokens": ["string", [-1, -1]],
                    "score": ["float32", [-1]], "truncated": ["bool", [-1]]},
        "max_sentence_bytes": int(max_sentence_bytes),
        "max_request_sentences": int(max_request_sentences),
        "max_source_length": int(config.max_source_length),
        "max_target_length": int(config.max_target_length),
        "beam_size": int(config.beam_size),
        "tokenizer": "sentencepiece" if isinstance(translator.target_vocab, SubwordTokenizer)
        else "words",
    }


# -- the TFLite model ------------------------------------------------------------------------


def tflite_archive(translator) -> keras.export.ExportArchive:
    """The fixed-shape greedy translator (ids in, ids and attention out), for `tflite.convert`."""
    model, config = translator.model, translator.config
    source_length = int(config.max_source_length)
    out_length = int(config.max_target_length) + 1
    vocab_size = len(translator.source_vocab)

    def serving_default(source_ids):
        # Out-of-range ids would read outside the embedding table: they read as [UNK].
        source_ids = tf.where((source_ids < 0) | (source_ids >= vocab_size),
                              zoo_text.UNK_ID, source_ids)
        real = source_ids != 0
        tokens_in = tf.reduce_max(tf.reduce_sum(tf.cast(real, tf.int32), 1))
        max_length = tf.minimum(2 * tokens_in + 10, out_length)
        # The encoder's loops run over the sentence's tokens, not all `source_length`
        # positions: its padding would not change the result, only cost (2.5x the latency).
        # Up to the last non-zero id, so a hole (a 0 between ids) never drops a token.
        positions = tf.range(1, source_length + 1)[None, :]
        width = tf.reduce_max(tf.where(real, positions, 0))
        source_ids = source_ids[:, : tf.maximum(width, 1)]
        out = graph.search(model.decoding_inputs(source_ids), 1, max_length, beam_size=1)
        # No source ids: no translation, as the SavedModel answers an empty sentence.
        out = without_blank(out, tf.reshape(tokens_in > 0, [1]))
        return tflite.fixed_outputs(out, out_length, [source_length])

    spec = [tf.TensorSpec([1, source_length], tf.int32, name="source_ids")]
    return graph.archive(model, {"serving_default": (serving_default, spec)})


# -- host side: what an app does around the TFLite model ---------------------------------

_PUNCTUATION = re.compile(r"""([.,!?;:¿¡"()\[\]«»…])""")
_SPACE_BEFORE_PUNCT = re.compile(r""" ([.,!?;:…)\]»])""")


def tokenize(sentence) -> list[str]:
    """Pure-Python `zoo.text.tokenize` for one sentence (str, or bytes decoded leniently).

    Invalid UTF-8 becomes U+FFFD and control characters spaces, then NFKC, lower case, punctuation split
    off, whitespace split. Matches the graph tokenizer on ordinary text (Python's and ICU's
    lower-casing can differ on a few special letters).
    """
    if isinstance(sentence, bytes):
        sentence = sentence.decode("utf-8", errors="replace")
    sentence = "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in sentence)
    sentence = unicodedata.normalize("NFKC", sentence).lower()
    return _PUNCTUATION.sub(r" \1 ", sentence).split()


def clean_text(sentence) -> str:
    """What an app does to text before SentencePiece: invalid UTF-8 -> U+FFFD, control
    characters -> spaces (the model file holds the rest of the normalisation)."""
    if isinstance(sentence, bytes):
        sentence = sentence.decode("utf-8", errors="replace")
    return "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in sentence)


def detokenize(tokens: list[str]) -> str:
    """Pure-Python `zoo.text.detokenize`: joined by spaces, none before closing punctuation."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(tokens))


def read_vocabulary(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


class TFLiteTranslator:
    """Runs an exported `<name>.tflite` with the standalone LiteRT interpreter.

    Safe to call from several threads: each thread gets its own interpreter (a LiteRT
    interpreter is not thread-safe), made on its first call.

    >>> model = TFLiteTranslator("exports/tflite/nmt.tflite")
    >>> model.translate("three hundred forty-two")["translation"]
    'trois cent quarante-deux'
    """

    def __init__(self, path: str):
        stem = path[: -len(".tflite")]
        if stem.endswith(".dynamic_range"):
            stem = stem[: -len(".dynamic_range")]
        with open(f"{stem}.json", encoding="utf-8") as f:
            self.meta = json.load(f)
        folder = os.path.dirname(path)
        self.source_tokens = read_vocabulary(os.path.join(folder, self.meta["source_vocab"]))
        self.target_tokens = read_vocabulary(os.path.join(folder, self.meta["target_vocab"]))
        self.subwords = self.meta.get("tokenizer") == "sentencepiece"
        if self.subwords:  # as an app does it: the sentencepiece library and the shipped models
            import sentencepiece

            self.source_spm, self.target_spm = (
                sentencepiece.SentencePieceProcessor(
                    model_file=os.path.join(folder, self.meta[f"{side}_tokenizer"]))
                for side in ("source", "target")
            )
        self.source_ids_of = {t: i for i, t in enumerate(self.source_tokens) if i}
        self.max_source_length = int(self.meta["max_source_length"])
        # An export older than the byte cap has none in its metadata: the default applies.
        self.max_sentence_bytes = int(self.meta.get("max_sentence_bytes", MAX_SENTENCE_BYTES))
        self.path = path
        self._local = threading.local()
        self._thread_state()  # a file LiteRT cannot read fails here, not on the first call

    def _thread_state(self):
        if getattr(self._local, "interpreter", None) is None:
            from ai_edge_litert.interpreter import Interpreter

            self._local.interpreter = Interpreter(model_path=self.path)
            self._local.runner = self._local.interpreter.get_signature_runner("serving_default")
        return self._local

    @property
    def interpreter(self):
        """This thread's LiteRT interpreter."""
        return self._thread_state().interpreter

    @property
    def runner(self):
        """This thread's `serving_default` signature runner."""
        return self._thread_state().runner

    def check_ids(self, source_ids) -> np.ndarray:
        """`source_ids` as int32 `[1, max_source_length]`, or a one-line ValueError naming what
        is wrong: shape, type, an id outside the source vocabulary, or a 0 before an id (left
        padding or a hole: the ids must come first, padding with 0 only after them)."""
        ids = np.asarray(source_ids)
        shape = (1, self.max_source_length)
        if ids.shape != shape:
            raise ValueError(f"source_ids has shape {list(ids.shape)}; the model takes "
                             f"{list(shape)}: one sentence's ids, padded with 0 at the end")
        if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"source_ids has dtype {ids.dtype}; the model takes integer ids "
                             "(int32)")
        row = ids[0]
        size = len(self.source_tokens)
        bad = np.flatnonzero((row < 0) | (row >= size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"source_ids[0, {i}] = {int(row[i])} is not a source id: ids go "
                             f"from 0 to {size - 1} ({self.meta['source_vocab']})")
        zeros, real = np.flatnonzero(row == 0), np.flatnonzero(row)
        if zeros.size and real.size and zeros[0] < real[-1]:
            where = "left padding" if zeros[0] == 0 else "a hole"
            raise ValueError(f"source_ids[0, {int(zeros[0])}] is 0 before the id at position "
                             f"{int(real[-1])} ({where}): put the ids first and pad with 0 only "
                             "at the end")
        return ids.astype(np.int32)

    def encode(self, tokens: list[str]) -> np.ndarray:
        """Source tokens -> int32 `[1, max_source_length]` ids (cut to fit, padded with 0)."""
        ids = np.zeros((1, self.max_source_length), np.int32)
        for i, token in enumerate(tokens[: self.max_source_length]):
            ids[0, i] = self.source_ids_of.get(token, zoo_text.UNK_ID)
        return ids

    def decode_ids(self, source_ids: np.ndarray) -> dict:
        """int32 `[1, max_source_length]` -> tokens, length, attention, score (numpy), after
        `check_ids` (a ValueError for ids the model would misread)."""
        return self.runner(source_ids=self.check_ids(source_ids))

    def translate(self, sentence) -> dict:
        """One sentence (str or UTF-8 bytes) -> translation, tokens (with `[END]` when
        emitted), attention `[len(tokens), len(source_tokens)]`, score and `truncated` (cut to
        `max_sentence_bytes` bytes or `max_source_length` tokens first). A sentence without
        tokens gets an empty translation, no tokens and score 0."""
        raw = utf8(sentence)
        cut = cut_utf8(raw, self.max_sentence_bytes)
        if self.subwords:
            source_ids = self.source_spm.encode(clean_text(cut))
            truncated = len(source_ids) > self.max_source_length
            source_ids = source_ids[: self.max_source_length]
            source = [self.source_tokens[i] for i in source_ids]
            encoded = np.zeros((1, self.max_source_length), np.int32)
            encoded[0, : len(source_ids)] = source_ids
        else:
            source = tokenize(cut)
            truncated = len(source) > self.max_source_length
            source = source[: self.max_source_length]
            encoded = self.encode(source)
        truncated = truncated or len(cut) < len(raw)
        out = self.decode_ids(encoded)
        n = int(out["length"][0])
        ids = out["tokens"][0]
        rows = n + 1 if n < len(ids) and ids[n] == zoo_text.END_ID else n
        tokens = [self.target_tokens[i] for i in ids[:rows]]
        if self.subwords:
            translation = self.target_spm.decode([int(i) for i in ids[:n]])
        else:
            translation = detokenize(tokens[:n])
        return {
            "translation": translation,
            "source_tokens": source,
            "target_tokens": tokens,
            "attention": out["attention"][0, :rows, : len(source)],
            "score": float(out["score"][0]),
            "truncated": bool(truncated),
        }
