"""TFLite models for LiteRT: token ids in, token ids and attention out, builtin ops only.

Layout written under an exports root (default `exports/`):

    exports/tflite/
      nmt.tflite                 the model (float32)
      nmt.source_vocab.txt       one token per line, line number = id (line 0 is padding "")
      nmt.target_vocab.txt
      nmt.json                   shapes, special ids, tokenisation rules: what an app needs
      captioning.tflite          pixels in (see `write_captioning`), ids and attention maps out
      captioning.vocab.txt
      captioning.json

The nmt model is the encoder plus the whole greedy search loop (`zoo.decoding.greedy_search`)
in one graph, converted with TFLite builtin ops only (no Flex delegate, no custom ops), so the
standalone `ai_edge_litert.interpreter.Interpreter` runs it. Its one signature,
`serving_default`, has a fixed shape:

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

It decodes exactly as the SavedModel's `greedy` signature (same step limit:
`min(2 * source tokens + 10, max_target_length + 1)`). Tokenisation stays outside: ids come from
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
import tempfile
import threading
import unicodedata

import keras
import numpy as np
import tensorflow as tf

from recipes.translator import MAX_SENTENCE_BYTES, cut_utf8, utf8
from zoo import decoding
from zoo import text as zoo_text
from zoo.subwords import SubwordTokenizer

TFLITE_DIR = "tflite"


def nmt_archive(translator) -> keras.export.ExportArchive:
    """The fixed-shape greedy translator (ids in, ids and attention out) as an ExportArchive."""
    from export.nmt import without_blank

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
        step_fn, state, constants = model.decoding_inputs(source_ids)
        start = tf.fill([1], zoo_text.START_ID)
        out = decoding.greedy_search(step_fn, state, constants, start, zoo_text.END_ID, max_length)
        # No source ids: no translation, as the SavedModel answers an empty sentence.
        out = without_blank(out, tf.reshape(tokens_in > 0, [1]))
        missing = out_length - tf.shape(out["tokens"])[1]
        tokens = tf.pad(out["tokens"], [[0, 0], [0, missing]])
        attention = out["attention"]
        depth_missing = source_length - tf.shape(attention)[2]  # back to source_length columns
        attention = tf.pad(attention, [[0, 0], [0, missing], [0, depth_missing]])
        return {
            "tokens": tf.reshape(tokens, [1, out_length]),
            "length": tf.reshape(out["lengths"], [1]),
            "attention": tf.reshape(attention, [1, out_length, source_length]),
            "score": tf.reshape(out["score"], [1]),
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        serving_default,
        input_signature=[tf.TensorSpec([1, source_length], tf.int32, name="source_ids")],
    )
    return archive


def convert(archive: keras.export.ExportArchive, quantize: bool = False) -> bytes:
    """Converts an archive's `serving_default` to a TFLite flatbuffer, builtin ops only.

    `quantize=True` gives dynamic-range quantisation (int8 weights, float activations).
    """
    with tempfile.TemporaryDirectory(prefix="zoo-tflite-") as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def _write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_nmt(translator, exports_root: str, name: str = "nmt", quantize: bool = False,
              max_sentence_bytes: int = MAX_SENTENCE_BYTES) -> list[str]:
    """Writes `exports_root/tflite/<name>.tflite` and its vocabulary and metadata files.

    With `quantize=True` also `<name>.dynamic_range.tflite`. Each file is written to a
    temporary name and renamed. `max_sentence_bytes` goes into the metadata: an app cuts each
    sentence to that many bytes before tokenising it. Returns the paths written.
    """
    folder = os.path.join(exports_root, TFLITE_DIR)
    os.makedirs(folder, exist_ok=True)
    archive = nmt_archive(translator)
    config = translator.config
    paths = []
    model_path = os.path.join(folder, f"{name}.tflite")
    _write_bytes(model_path, convert(archive))
    paths.append(model_path)
    if quantize:
        quantized_path = os.path.join(folder, f"{name}.dynamic_range.tflite")
        _write_bytes(quantized_path, convert(archive, quantize=True))
        paths.append(quantized_path)
    subwords = isinstance(translator.target_vocab, SubwordTokenizer)
    for side, vocab in (("source", translator.source_vocab), ("target", translator.target_vocab)):
        path = os.path.join(folder, f"{name}.{side}_vocab.txt")
        _write_bytes(path, ("\n".join(vocab.tokens) + "\n").encode("utf-8"))
        paths.append(path)
        if subwords:  # the SentencePiece model an app encodes and decodes with
            path = os.path.join(folder, f"{name}.{side}.spm.model")
            _write_bytes(path, vocab.model_proto)
            paths.append(path)
    meta = {
        "model": f"{name}.tflite",
        "source_vocab": f"{name}.source_vocab.txt",
        "target_vocab": f"{name}.target_vocab.txt",
        "inputs": {"source_ids": ["int32", [1, config.max_source_length]]},
        "outputs": {
            "tokens": ["int32", [1, config.max_target_length + 1]],
            "length": ["int32", [1]],
            "attention": ["float32", [1, config.max_target_length + 1, config.max_source_length]],
            "score": ["float32", [1]],
        },
        "max_source_length": config.max_source_length,
        "max_target_length": config.max_target_length,
        "max_sentence_bytes": int(max_sentence_bytes),
        "source_vocab_size": len(translator.source_vocab),
        "special_ids": {"pad": zoo_text.PAD_ID, "unk": zoo_text.UNK_ID,
                        "start": zoo_text.START_ID, "end": zoo_text.END_ID},
        "source_ids": "right-padded with 0, no 0 between ids, each < source_vocab_size; "
                      "all 0 (no tokens) gives an empty translation",
        "tokenization": "UTF-8 cut to max_sentence_bytes bytes at a character boundary "
                        "(recipes.translator.cut_utf8), then lower-case, NFKC, punctuation split "
                        "off, whitespace split (export.tflite.tokenize); unknown words -> unk id",
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
                "(recipes.translator.cut_utf8), invalid UTF-8 -> U+FFFD and control characters "
                "-> spaces, then "
                "source_ids = SentencePieceProcessor(source_tokenizer).encode(text), cut to "
                "max_source_length; the model's NFKC rule is inside the .spm.model file. Output: "
                "target decode(tokens[:length]). Case, punctuation and accents are kept."
            ),
        )
    meta_path = os.path.join(folder, f"{name}.json")
    _write_bytes(meta_path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    paths.append(meta_path)
    return paths


def captioning_archive(captioner) -> keras.export.ExportArchive:
    """The fixed-shape greedy captioner (pixels in, ids and attention maps out)."""
    model, config = captioner.model, captioner.config
    size = int(captioner.image_size)
    out_length = int(config.max_caption_length) + 1
    h, w = captioner.grid_shape if model.decoder.attention is not None else (0, 0)

    def serving_default(image):
        step_fn, state, constants = model.decoding_inputs(image)
        start = tf.fill([1], zoo_text.START_ID)
        out = decoding.greedy_search(step_fn, state, constants, start, zoo_text.END_ID, out_length)
        missing = out_length - tf.shape(out["tokens"])[1]
        return {
            "tokens": tf.reshape(tf.pad(out["tokens"], [[0, 0], [0, missing]]), [1, out_length]),
            "length": tf.reshape(out["lengths"], [1]),
            "attention": tf.reshape(
                tf.pad(out["attention"], [[0, 0], [0, missing], [0, 0]]), [1, out_length, h, w]
            ),
            "score": tf.reshape(out["score"], [1]),
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        serving_default,
        input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8, name="image")],
    )
    return archive


def write_captioning(captioner, exports_root: str, name: str = "captioning",
                     quantize: bool = False) -> list[str]:
    """Writes `exports_root/tflite/<name>.tflite`, `<name>.vocab.txt` and `<name>.json`.

    The model: input `image` uint8 `[1, image_size, image_size, 3]` (resize first); outputs
    `tokens` int32 `[1, max_caption_length + 1]`, `length` int32 `[1]`, `attention` float32
    `[1, max_caption_length + 1, h, w]` (the feature grid each token looked at) and `score`;
    greedy search, as the SavedModel's `greedy` signature.
    """
    folder = os.path.join(exports_root, TFLITE_DIR)
    os.makedirs(folder, exist_ok=True)
    archive = captioning_archive(captioner)
    config = captioner.config
    size, out_length = int(captioner.image_size), int(config.max_caption_length) + 1
    h, w = captioner.grid_shape if captioner.model.decoder.attention is not None else (0, 0)
    paths = [os.path.join(folder, f"{name}.tflite")]
    _write_bytes(paths[0], convert(archive))
    if quantize:
        paths.append(os.path.join(folder, f"{name}.dynamic_range.tflite"))
        _write_bytes(paths[-1], convert(archive, quantize=True))
    paths.append(os.path.join(folder, f"{name}.vocab.txt"))
    _write_bytes(paths[-1], ("\n".join(captioner.vocab.tokens) + "\n").encode("utf-8"))
    meta = {
        "model": f"{name}.tflite",
        "vocab": f"{name}.vocab.txt",
        "inputs": {"image": ["uint8", [1, size, size, 3]]},
        "outputs": {
            "tokens": ["int32", [1, out_length]],
            "length": ["int32", [1]],
            "attention": ["float32", [1, out_length, h, w]],
            "score": ["float32", [1]],
        },
        "image_size": size,
        "max_caption_length": config.max_caption_length,
        "special_ids": {"pad": zoo_text.PAD_ID, "unk": zoo_text.UNK_ID,
                        "start": zoo_text.START_ID, "end": zoo_text.END_ID},
        "preprocessing": "RGB uint8, resized to image_size x image_size (bilinear, antialiased)",
        "decoding": "greedy",
    }
    paths.append(os.path.join(folder, f"{name}.json"))
    _write_bytes(paths[-1], (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return paths


# -- host side: what an app does around the model --------------------------------------------

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
