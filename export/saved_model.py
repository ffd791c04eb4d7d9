"""SavedModels for TF Serving: each recipe's signatures (the versioned layout is
`export.layout`).

Everything from the request to the answer is in the graph, written with TensorFlow ops and
tensorflow-text ops (which TF Serving links since 2.2), so a SavedModel loads in any process that
has `tensorflow` and `tensorflow_text` and none of this project's code.

nmt signatures:

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

nmt requests that are not ordinary sentences give outputs, never an error:

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

captioning signatures (`captioning_archive`): `serving_default` and `greedy` take `image` uint8
`[B, H, W, 3]`, `serving_bytes` takes `image_bytes` string `[B]` (encoded JPEG / PNG / GIF /
BMP); each returns `caption` string `[B]`, `tokens` string `[B, T_out]`, `attention` float32
`[B, T_out, h, w]` and `score` float32 `[B]`. Images of any other size are resized to the run's
`image_size` (bilinear, antialiased, aspect ratio not kept), as `Captioner.load_images` does,
from the uint8 pixels (only the resized image is ever float32); an image with no pixels is
captioned as a black image. `serving_bytes` judges each file by its header before decoding it
(`zoo.images`): bytes that are not a JPEG / PNG / GIF / BMP file (WebP, TIFF, text, empty), more
than `MAX_IMAGE_BYTES` (50 MiB) bytes or declaring more than `MAX_IMAGE_PIXELS` (25 million)
pixels fail that request with INVALID_ARGUMENT, naming the image (`image_bytes[i]`) and the
limit; so does a file that starts like an image but is corrupt. The server goes on. Grey or RGBA pixel arrays do not fit `[B, H, W, 3]`: TF Serving refuses them before
the model runs (send 3 channels, or the encoded file to `serving_bytes`).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from recipes.translator import MAX_REQUEST_SENTENCES, MAX_SENTENCE_BYTES
from zoo import decoding
from zoo import text as zoo_text
from zoo.subwords import SubwordTokenizer

# -- nmt in TensorFlow ops -------------------------------------------------------------------


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


def search(decoding_inputs, batch_size, max_length, beam_size: int, length_penalty=0.0,
           coverage_penalty=0.0):
    """Greedy (`beam_size == 1`) or beam search from a model's `decoding_inputs(...)`; returns
    the best hypothesis per example: tokens `[B, T]`, lengths `[B]`, attention `[B, T, S]` and
    score `[B]`, as `zoo.decoding.greedy_search` does."""
    step_fn, state, constants = decoding_inputs
    start = tf.fill([batch_size], zoo_text.START_ID)
    if beam_size == 1:
        return decoding.greedy_search(step_fn, state, constants, start, zoo_text.END_ID, max_length)
    out = decoding.beam_search(
        step_fn, state, constants, start, zoo_text.END_ID, max_length,
        beam_size=beam_size, length_penalty=length_penalty,
        coverage_penalty=coverage_penalty, n_best=1,
    )
    return {k: out[k][:, 0] for k in ("tokens", "lengths", "attention", "score")}


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


def unless_empty(batch_size, run, empty_outputs):
    """`run()` for a batch of one or more, else `empty_outputs()` without running the model.

    An empty batch is a valid request. On CPUs where TensorFlow turns its oneDNN graph rewrites on
    (the default on many Intel and AMD CPUs), the rewritten batch-normalised convolution fails on
    a zero-sized batch, so an empty batch must never reach the model; on other CPUs the model is
    simply skipped. Both branches return the same structure and dtypes.
    """
    return tf.cond(batch_size > 0, run, empty_outputs)


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


def trim(out):
    """Cuts a search's outputs to the rows that mean something: each output token's plus the
    end token's where it was emitted. Returns `(ids [B, T_out], lengths [B], attention
    [B, T_out, S])`; `ids[b, lengths[b]]` is the end id when it was emitted, later ids are 0."""
    tokens, lengths = out["tokens"], out["lengths"]
    rows = tf.minimum(lengths + 1, tf.shape(tokens)[1])
    width = tf.reduce_max(tf.concat([rows, [0]], 0))
    return tokens[:, :width], lengths, out["attention"][:, :width]


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
        return search(
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
        return unless_empty(tf.size(text), lambda: self._translate(text, beam_size), empty)

    def _translate(self, text, beam_size: int):
        source_tokens, source_ids, truncated = self.tokenize(text)
        source_lengths = tf.reduce_sum(tf.cast(source_ids != 0, tf.int32), 1)
        out = without_blank(self.decode(source_ids, beam_size), source_lengths > 0)
        target_ids, lengths, attention = trim(out)
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
    graph = NmtGraph(
        translator.model,
        translator.source_vocab,
        translator.target_vocab,
        translator.config,
        replace_unk=replace_unk,
        max_sentence_bytes=max_sentence_bytes,
        max_request_sentences=max_request_sentences,
    )
    archive = keras.export.ExportArchive()
    archive.track(translator.model)
    for trackable in graph.trackables():
        archive.track(trackable)
    spec = [tf.TensorSpec([None], tf.string, name="text")]
    beam_size = int(translator.config.beam_size)

    def serving_default(text):
        return graph.translate(text, beam_size)

    def greedy(text):
        return graph.translate(text, 1)

    archive.add_endpoint("serving_default", serving_default, input_signature=spec)
    archive.add_endpoint("greedy", greedy, input_signature=spec)
    return archive


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


# -- captioning in TensorFlow ops ------------------------------------------------------------

CAPTIONING_SIGNATURES = ("serving_default", "serving_bytes", "greedy")


def resize_images(images, size: int):
    """uint8 `[B, H, W, 3]` of any size -> uint8 `[B, size, size, 3]`, as
    `Captioner.load_images` resizes arrays: untouched when already `size x size`, else bilinear
    with antialiasing, rounded; an image with no pixels (`H` or `W` is 0) becomes black. The
    resize reads the uint8 pixels: only the resized images are ever float32."""
    from zoo.images import resize_uint8

    shape = tf.shape(images)

    def blank():
        return tf.zeros([shape[0], size, size, 3], tf.uint8)

    def same():
        return tf.ensure_shape(images, [None, size, size, 3])

    empty = tf.logical_or(shape[1] == 0, shape[2] == 0)
    is_size = tf.logical_and(shape[1] == size, shape[2] == size)
    return tf.cond(empty, blank, lambda: tf.cond(is_size, same, lambda: resize_uint8(images, size)))


def decode_images(image_bytes, size: int):
    """Encoded images `[B]` -> uint8 `[B, size, size, 3]` with `zoo.data.coco.decode_image` (as
    `Captioner.load_images` decodes bytes), one image at a time, so a request holds at most one
    full-size image. Each header is checked before its image is decoded: bytes that are not a
    JPEG, PNG, GIF or BMP file, more than `zoo.images.MAX_IMAGE_BYTES` bytes or declaring more
    than `zoo.images.MAX_IMAGE_PIXELS` pixels fail the request with INVALID_ARGUMENT, naming
    the image (`image_bytes[i]`) and the limit; so does a corrupt file."""
    from zoo.data import coco

    def one(args):
        index, data = args
        name = tf.strings.format("image_bytes[{}]", (index,))
        return coco.decode_image(data, size, name)

    indices = tf.range(tf.shape(image_bytes)[0])
    return tf.map_fn(one, (indices, image_bytes), parallel_iterations=1,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))


class CaptioningGraph:
    """The captioning model from images to captions, in TensorFlow ops.

    Args:
        captioner: a `recipes.captioning.Captioner` (model, vocabulary, config).
    """

    def __init__(self, captioner):
        self.model = captioner.model
        self.config = captioner.config
        self.image_size = int(captioner.image_size)
        self.strings = tf.constant(captioner.vocab.tokens)
        attended = self.model.decoder.attention is not None
        self.grid = tuple(captioner.grid_shape) if attended else (0, 0)

    def caption(self, images, beam_size: int):
        """uint8 `[B, image_size, image_size, 3]` -> caption, tokens, attention, score."""
        h, w = self.grid

        def empty():
            return {
                "caption": tf.zeros([0], tf.string),
                "attention": tf.zeros([0, 0, h, w], tf.float32),
                "tokens": tf.zeros([0, 0], tf.string),
                "score": tf.zeros([0], tf.float32),
            }

        return unless_empty(tf.shape(images)[0], lambda: self._caption(images, beam_size), empty)

    def _caption(self, images, beam_size: int):
        out = search(
            self.model.decoding_inputs(images),
            tf.shape(images)[0],
            int(self.config.max_caption_length) + 1,
            beam_size,
            self.config.length_penalty,
        )
        ids, lengths, attention = trim(out)
        words = tf.gather(self.strings, ids)
        h, w = self.grid
        caption = tf.strings.reduce_join(
            tf.RaggedTensor.from_tensor(words, lengths=tf.minimum(lengths, tf.shape(ids)[1])),
            axis=-1, separator=" ",
        )
        shape = tf.concat([tf.shape(attention)[:2], [h, w]], 0)
        return {
            "caption": caption,
            "attention": tf.reshape(attention, shape),
            "tokens": words,
            "score": out["score"],
        }


def captioning_archive(captioner) -> keras.export.ExportArchive:
    """A `keras.export.ExportArchive` with the captioning signatures:

    - `serving_default`: `image` uint8 `[B, H, W, 3]` (any `H`, `W`; resized in the graph),
      beam search with the run's `beam_size` and `length_penalty`.
    - `serving_bytes`: `image_bytes` string `[B]` (encoded JPEG / PNG / GIF / BMP; TF Serving's
      REST API takes them as `{"b64": ...}`), the same search.
    - `greedy`: `image` as `serving_default`, greedy search (what the TFLite model does).

    Each returns `caption` string `[B]` (the words joined by spaces), `tokens` string
    `[B, T_out]` (the words, then `"[END]"` where emitted, padded with `""`), `attention`
    float32 `[B, T_out, h, w]` (the feature grid each token looked at; 0 after the end token)
    and `score` float32 `[B]`.
    """
    graph = CaptioningGraph(captioner)
    size = graph.image_size
    beam_size = int(captioner.config.beam_size)
    archive = keras.export.ExportArchive()
    archive.track(captioner.model)

    def serving_default(image):
        return graph.caption(resize_images(image, size), beam_size)

    def serving_bytes(image_bytes):
        return graph.caption(decode_images(image_bytes, size), beam_size)

    def greedy(image):
        return graph.caption(resize_images(image, size), 1)

    pixels = [tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")]
    archive.add_endpoint("serving_default", serving_default, input_signature=pixels)
    archive.add_endpoint(
        "serving_bytes", serving_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    archive.add_endpoint("greedy", greedy, input_signature=pixels)
    return archive


def warmup_images(size: int):
    """A black image, a noise image and a noise image of another size, uint8 `[H, W, 3]`."""
    import numpy as np

    rng = np.random.default_rng(0)
    return [
        np.zeros((size, size, 3), np.uint8),
        rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        rng.integers(0, 256, (size * 2, size, 3), dtype=np.uint8),
    ]


def save_captioning(captioner, folder: str, model_name: str = "captioning") -> None:
    """Writes the captioning SavedModel (with its warmup requests) into `folder`."""
    from export import warmup

    captioning_archive(captioner).write_out(folder, verbose=False)
    size = int(captioner.image_size)
    images = warmup_images(size)
    png = [tf.io.encode_png(image).numpy() for image in images]
    warmup.write_requests(
        folder,
        [
            warmup.predict_request(model_name, "serving_default", {"image": images[:2]}),
            warmup.predict_request(model_name, "serving_default", {"image": images[2:]}),
            warmup.predict_request(model_name, "serving_bytes", {"image_bytes": png}),
            warmup.predict_request(model_name, "greedy", {"image": images[:1]}),
        ],
    )
