"""The nmt export's SavedModel for TF Serving: its signatures, raw strings in, translations out
(the versioned layout is `export.layout`; the TFLite model is still `export.tflite`).

Everything from the request to the answer is in the SavedModel's graph, written with TensorFlow
ops and tensorflow-text ops (which TF Serving links since 2.2), so a SavedModel loads in any
process that has `tensorflow` and `tensorflow_text` and none of this project's code.

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
defaults `recipes.translator.MAX_SENTENCE_BYTES` and `MAX_REQUEST_SENTENCES`) and recorded in
`<version>/assets.extra/nmt.json` with the signatures' other settings:

- A request of more than `max_request_sentences` sentences fails (INVALID_ARGUMENT, the message
  names the limit and the flag), before any sentence is read; send smaller batches.
- A sentence longer than `max_sentence_bytes` bytes is cut to that many (at a UTF-8 character
  boundary, as `recipes.translator.cut_utf8`) BEFORE it is normalised and tokenised, so a huge
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
  peaks on, as `recipes.translator.Translator.translate` does.
- An empty batch (`[0]` strings): empty outputs of the shapes above.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from export import graph
from recipes.translator import MAX_REQUEST_SENTENCES, MAX_SENTENCE_BYTES
from zoo import text as zoo_text
from zoo.subwords import SubwordTokenizer

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
    """The step limit for a batch, as `Translator.max_decode_length` computes it: twice the
    longest source plus 10, at most `max_target_length + 1` (the end token included)."""
    longest = tf.reduce_max(tf.concat([source_lengths, [0]], 0))
    return tf.minimum(2 * longest + 10, max_target_length + 1)


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

    The rule of `recipes.translator.cut_utf8`, in TensorFlow ops: a string longer than `limit`
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

    def trackables(self) -> list:
        """What an ExportArchive must track for this graph (lookup tables, tokenizers)."""
        if self.subwords:
            return [self.source_vocab] + ([] if self.target_vocab is self.source_vocab
                                          else [self.target_vocab])
        return [self.source_table]

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
        source_lengths = tf.reduce_sum(tf.cast(source_ids != 0, tf.int32), 1)
        return graph.search(
            self.model.decoding_inputs(source_ids),
            tf.shape(source_ids)[0],
            max_decode_length(source_lengths, config.max_target_length),
            beam_size,
            config.length_penalty,
            config.coverage_penalty,
        )

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
        translator: a `recipes.translator.Translator` (model, vocabularies, config).
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


def save_nmt(translator, folder: str, model_name: str = "nmt", replace_unk=None,
             max_sentence_bytes: int = MAX_SENTENCE_BYTES,
             max_request_sentences: int = MAX_REQUEST_SENTENCES) -> None:
    """Writes the nmt SavedModel (with its warmup requests and `assets.extra/nmt.json`) into
    `folder`."""
    from export import warmup
    from recipes.translator import METADATA_FILE

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
        [warmup.predict_request(model_name, "serving_default", {"text": texts[i : i + size]})
         for i in range(0, len(texts), size)]
        + [warmup.predict_request(model_name, "greedy", {"text": texts[:min(2, size)]})],
    )
