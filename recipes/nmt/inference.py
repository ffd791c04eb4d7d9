"""Using a trained nmt run: translate text, n-best lists, attention plots; the same API over an
exported SavedModel; and the `translate` command line.

    >>> from recipes import load
    >>> model = load("runs/nmt/latest")
    >>> [t.text for t in model.translate(["three hundred forty-two"], beam=4)]
    ['trois cent quarante-deux']
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from recipes import runner
from recipes.commands import (
    Output,
    check_counts,
    decode_lines,
    open_model,
    read_input,
    saved_model_folder,
    signature_inputs,
    split_lines,
)
from recipes.nmt.config import NmtConfig
from recipes.nmt.data import load_vocabularies
from zoo import decoding, plots, text
from zoo.errors import RunError
from zoo.subwords import SubwordTokenizer

# What one sentence and one request may cost. A sentence longer than MAX_SENTENCE_BYTES bytes
# (UTF-8) is cut to that many, at a character boundary, BEFORE it is normalised and tokenised,
# so a huge string costs no more than a long sentence; then to `max_source_length` tokens. Far
# above what `max_source_length` tokens of ordinary text take (100 tokens are ~600 bytes of
# English, ~1,500 of Chinese). The exported SavedModel also refuses a request of more than
# MAX_REQUEST_SENTENCES sentences (INVALID_ARGUMENT). Both are the export defaults:
# `python -m export nmt --max-sentence-bytes N --max-request-sentences N` changes them, and the
# artifact's metadata (`assets.extra/nmt.json`, `tflite/nmt.json`) records what it was given.
MAX_SENTENCE_BYTES = 8192


MAX_REQUEST_SENTENCES = 256


def utf8(sentence) -> bytes:
    """A sentence as the bytes a model gets: `str` encoded as UTF-8 (a lone surrogate gives
    bytes that are not UTF-8, which normalisation turns into U+FFFD), `bytes` as they are."""
    if isinstance(sentence, bytes):
        return sentence
    return sentence.encode("utf-8", "surrogatepass")


def cut_utf8(data: bytes, limit: int) -> bytes:
    """`data` cut to at most `limit` bytes, never inside a UTF-8 character.

    When `data` is longer, the cut goes at byte `limit` unless that byte continues a character
    (`0b10xxxxxx`); then it moves back to the start of that character (at most 3 bytes back;
    invalid UTF-8 with no start in reach is cut at `limit`). `export.nmt.cut_bytes` is
    the same rule in TensorFlow ops.
    """
    if len(data) <= limit:
        return data
    for back in range(4):
        if limit - back >= 0 and data[limit - back] & 0xC0 != 0x80:
            return data[: limit - back]
    return data[:limit]


@dataclasses.dataclass
class Translation:
    """One translation: its text, tokens, score and `(len(tokens) + 1, len(source_tokens))`
    attention (the last row is the end token's); `alternatives` holds the rest of an n-best list.

    `truncated` says the source was cut before translation: to `MAX_SENTENCE_BYTES` bytes (or
    the artifact's cap) or to `max_source_length` tokens; `source_tokens` shows what was kept.
    A source without tokens (empty, whitespace, control characters) gets an empty translation:
    no tokens, a `(0, 0)` attention, score 0, no alternatives.
    """

    text: str
    tokens: list
    score: float
    attention: np.ndarray
    source_tokens: list
    alternatives: list = dataclasses.field(default_factory=list)
    truncated: bool = False


def empty_translation(truncated: bool = False) -> Translation:
    """The translation of a source without tokens: nothing (every inference path agrees)."""
    return Translation(text="", tokens=[], score=0.0, attention=np.zeros((0, 0), np.float32),
                       source_tokens=[], truncated=truncated)


class Translator:
    """A trained translation model with its vocabularies and decoding settings.

    `max_sentence_bytes`: each sentence is cut to that many bytes before it is tokenised (see
    `MAX_SENTENCE_BYTES`), as the exported SavedModel does.
    """

    def __init__(self, model, source_vocab, target_vocab, config,
                 max_sentence_bytes: int = MAX_SENTENCE_BYTES):
        self.model = model
        self.source_vocab = source_vocab
        self.target_vocab = target_vocab
        self.config = config
        self.max_sentence_bytes = int(max_sentence_bytes)
        self._decoders = {}

    @classmethod
    def from_run(cls, run_dir: str, weights: str = "model.keras") -> "Translator":
        run_dir, config, model = runner.load_run("nmt", lambda v: NmtConfig(**v), run_dir, weights)
        return cls(model, *load_vocabularies(run_dir, config), config)

    # -- decoding ids ------------------------------------------------------------------------

    def max_decode_length(self, source_length):
        """A sentence's step limit (the end token included): twice its source length plus 10,
        at most `max_target_length + 1`; elementwise for an array of lengths. Per sentence, so
        that a sentence translates the same alone and in any batch."""
        return np.minimum(2 * np.asarray(source_length) + 10, self.config.max_target_length + 1)

    def _decoder(self, beam: int, n_best: int, length_penalty: float, coverage_penalty: float,
                 batch: int | None = None):
        """The search as a `tf.function` for these settings; `batch=1` traces it for a static
        batch of one sentence (as the SavedModel's greedy signature does for such a request)."""
        key = (beam, n_best, length_penalty, coverage_penalty, batch)
        if key not in self._decoders:
            model = self.model

            @tf.function(
                input_signature=[
                    tf.TensorSpec((batch, None), tf.int32),
                    tf.TensorSpec((batch,), tf.int32),
                ]
            )
            def run(source, max_length):
                step_fn, state, constants = model.decoding_inputs(source, grouped=beam > 1)
                start = tf.fill(tf.shape(source)[:1], text.START_ID)
                if beam == 1:
                    out = decoding.greedy_search(
                        step_fn, state, constants, start, text.END_ID, max_length
                    )
                    return {
                        "tokens": out["tokens"][:, None],
                        "lengths": out["lengths"][:, None],
                        "attention": out["attention"][:, None],
                        "score": out["score"][:, None],
                    }
                out = decoding.beam_search(
                    step_fn, state, constants, start, text.END_ID, max_length,
                    beam_size=beam, length_penalty=length_penalty,
                    coverage_penalty=coverage_penalty, n_best=n_best,
                )
                return {k: out[k] for k in ("tokens", "lengths", "attention", "score")}

            self._decoders[key] = run
        return self._decoders[key]

    def decode_ids(self, source: np.ndarray, beam: int = 1, n_best: int = 1,
                   length_penalty=None, coverage_penalty=None) -> dict:
        """int32 `(B, S)` source ids -> numpy dict: tokens/attention/score with an n-best axis."""
        lp = self.config.length_penalty if length_penalty is None else length_penalty
        cp = self.config.coverage_penalty if coverage_penalty is None else coverage_penalty
        lengths = (source != 0).sum(1)
        if len(source) == 0:  # never run the model on an empty batch (see export.graph.unless_empty)
            width = source.shape[1] if source.ndim == 2 else 0
            return {"tokens": np.zeros((0, n_best, 0), np.int32),
                    "lengths": np.zeros((0, n_best), np.int32),
                    "attention": np.zeros((0, n_best, 0, width), np.float32),
                    "score": np.zeros((0, n_best), np.float32)}
        run = self._decoder(int(beam), int(n_best), float(lp), float(cp),
                            1 if len(source) == 1 and int(beam) == 1 else None)
        out = run(tf.constant(source, tf.int32),
                  tf.constant(self.max_decode_length(lengths), tf.int32))
        return {k: v.numpy() for k, v in out.items()}

    # -- text in, text out -------------------------------------------------------------------

    @property
    def subword(self) -> bool:
        return isinstance(self.target_vocab, SubwordTokenizer)

    def source(self, texts) -> tuple[list[list[str]], list[np.ndarray], list[bool]]:
        """`(tokens, ids, truncated)` of each text (str or UTF-8 bytes) as the model sees it
        (words, or subword pieces): cut to `max_sentence_bytes` bytes, then tokenised (once),
        then cut to `max_source_length` tokens; `truncated` says whether either cut removed
        anything."""
        if not len(texts):
            return [], [], []
        raw = [utf8(t) for t in texts]
        cut = [cut_utf8(t, self.max_sentence_bytes) for t in raw]
        limit = self.config.max_source_length
        ids = self.source_vocab.encode(tf.constant(cut))
        truncated = [len(r) > len(c) or int(n) > limit
                     for r, c, n in zip(raw, cut, ids.row_lengths().numpy(), strict=True)]
        ids = ids[:, :limit]
        if isinstance(self.source_vocab, SubwordTokenizer):
            tokens = [[p.decode("utf-8") for p in row]
                      for row in self.source_vocab.strings(ids).to_list()]
        else:  # the words themselves: [UNK] replacement copies the source word, not "[UNK]"
            tokens = [t[:limit] for t in text.python_tokens(cut)]
        return tokens, [np.asarray(row, np.int32) for row in ids.to_list()], truncated

    def translate(self, texts, beam=None, n_best=1, replace_unk=None, batch_size=64,
                  length_penalty=None, coverage_penalty=None, progress=None) -> list[Translation]:
        """Translates strings; returns one `Translation` per input, in input order.

        Args:
            texts: strings (or UTF-8 bytes). One without source tokens (empty, whitespace,
                control characters) gets an empty translation without running the model
                (`empty_translation`), as the exported SavedModel and TFLite model do. One
                longer than `max_sentence_bytes` bytes or `max_source_length` tokens is cut
                first, and its `truncated` is true.
            beam: beam size; 1 is greedy search. Defaults to the run's `beam_size`.
            n_best: how many hypotheses per input (`alternatives` holds all but the best).
            replace_unk: replace each output `[UNK]` by the source token its attention peaks
                on. Defaults to the run's `replace_unk` (`auto`: on for TSV corpora).
            progress: optional callable(n_done) called after each batch.
        """
        texts = list(texts)
        beam = self.config.beam_size if beam is None else int(beam)
        if n_best > beam:
            raise ValueError(f"n_best={n_best} cannot exceed the beam size {beam}; raise --beam")
        if replace_unk is None:
            setting = self.config.replace_unk
            replace_unk = setting == "true" or (setting == "auto" and (self.config.data != "num2words" or bool(self.config.train)))
        if self.subword:
            replace_unk = False  # pieces spell out rare words; there is no [UNK] to replace
        tokens, ids, truncated = self.source(texts)
        results: list[Translation | None] = [None] * len(texts)
        blank = [i for i in range(len(texts)) if len(ids[i]) == 0]
        for i in blank:  # nothing to translate: the model would make something up
            results[i] = empty_translation(truncated[i])
        if blank and progress is not None:
            progress(len(blank))
        order = sorted((i for i in range(len(texts)) if len(ids[i])), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(1, max(len(ids[i]) for i in idx))
            source = np.zeros((len(idx), width), np.int32)
            for row, i in enumerate(idx):
                source[row, : len(ids[i])] = ids[i]
            out = self.decode_ids(source, beam, n_best, length_penalty, coverage_penalty)
            for row, i in enumerate(idx):
                hyps = [self._hypothesis(out, row, k, tokens[i], replace_unk) for k in range(n_best)]
                for hyp in hyps:
                    hyp.truncated = truncated[i]
                hyps[0].alternatives = hyps[1:]
                results[i] = hyps[0]
            if progress is not None:
                progress(len(idx))
        return results

    def _hypothesis(self, out, row, k, source_tokens, replace_unk) -> Translation:
        n = int(out["lengths"][row, k])
        ids = out["tokens"][row, k, :n]
        words = [self.target_vocab.tokens[i] for i in ids]
        # One row per token, and the end token's when it was emitted (not when the sentence
        # stopped at its step limit: the steps after it are padding).
        ended = n < out["tokens"].shape[2] and out["tokens"][row, k, n] == text.END_ID
        attention = out["attention"][row, k, : n + int(ended), : len(source_tokens)]
        if replace_unk and source_tokens:
            words = [
                source_tokens[int(np.argmax(attention[t]))] if w == text.UNK else w
                for t, w in enumerate(words)
            ]
        if self.subword:
            sentence = self.target_vocab.decode_python([[int(i) for i in ids]])[0]
        else:
            sentence = text.detokenize(tf.ragged.constant([words], dtype=tf.string)).numpy()[0]
            sentence = sentence.decode("utf-8") if words else ""
        return Translation(
            text=sentence,
            tokens=words,
            score=float(out["score"][row, k]),
            attention=attention,
            source_tokens=list(source_tokens),
        )


def plot_translation(result: Translation, path: str, title: str | None = None):
    """Heatmap of where each output token looked (source tokens across, output tokens down)."""
    rows = result.tokens + [text.END]  # the last row is the end token's, when it was emitted
    return plots.plot_alignment(
        result.source_tokens, rows[: len(result.attention)], result.attention, path, title=title
    )


class AttentionImages(keras.callbacks.Callback):
    """Every epoch: greedy-decodes a fixed handful of validation sentences and writes their
    alignment heatmaps to TensorBoard (`logs/attention`), to watch the alignment form."""

    def __init__(self, model, data, config, run_dir, count=3):
        super().__init__()
        pairs = sorted(data.validation, key=lambda p: len(p[0]))
        step = max(1, len(pairs) // count)
        self.sources = [p[0] for p in pairs[step // 2 :: step][:count]]
        self.translator = Translator(model, data.source_vocab, data.target_vocab, config)
        self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs", "attention"))

    def on_epoch_end(self, epoch, logs=None):
        if self.translator.model.decoder.attention is None:
            return
        results = self.translator.translate(self.sources, beam=1)
        with self.writer.as_default():
            for i, result in enumerate(results):
                fig = plot_translation(result, None, title=self.sources[i][:60])
                tf.summary.image(f"alignment/{i}", plots.figure_to_image(fig), step=epoch + 1)
                import matplotlib.pyplot as plt

                plt.close(fig)
        self.writer.flush()


# The exported SavedModel's metadata, under `<version>/assets.extra/` (written by `python -m export`).
METADATA_FILE = "nmt.json"


class SavedModelTranslator:
    """An exported nmt SavedModel (`python -m export nmt`) behind `Translator.translate`, so an
    artifact can be checked with the same calls and commands before it ships.

    The SavedModel fixed its decoding at export time: `serving_default` is beam search with the
    run's `beam_size` and penalties, `greedy` is greedy search, and each returns one translation
    per sentence. It needs TensorFlow and TF Text only, as TF Serving does.

    >>> model = SavedModelTranslator("exports/nmt/1")  # or "exports/nmt": the newest version
    >>> model.translate(["three hundred forty-two"], beam=1)[0].text
    'trois cent quarante-deux'
    """

    def __init__(self, path: str):
        # Registers the TF Text ops the graph uses; only a SavedModel needs them, so loaded here.
        import tensorflow_text  # noqa: F401

        self.path = saved_model_folder(path)
        self.model = tf.saved_model.load(self.path)
        signatures = sorted(self.model.signatures)
        inputs = signature_inputs(self.model) if "serving_default" in signatures else []
        if "greedy" not in signatures or inputs != ["text"]:
            raise RunError(
                f"{self.path} is not an nmt SavedModel: expected the signatures serving_default "
                f"and greedy taking `text`, found {signatures} taking {inputs}; `make export "
                "RECIPE=nmt` writes one"
            )
        # The caps it was exported with (an export older than them has no metadata file).
        self.metadata = {}
        meta_path = os.path.join(self.path, "assets.extra", METADATA_FILE)
        if os.path.exists(meta_path):
            with open(meta_path, encoding="utf-8") as f:
                self.metadata = json.load(f)
        self.max_request_sentences = int(self.metadata.get("max_request_sentences", 0)) or None

    def translate(self, texts, beam=None, n_best=1, replace_unk=None, batch_size=64,
                  progress=None) -> list[Translation]:
        """Translates strings (or UTF-8 bytes); one `Translation` per input, in input order.

        Args:
            texts: strings; one without source tokens gets an empty translation, one cut to
                the SavedModel's byte or token cap has `truncated` true.
            beam: 1 calls the `greedy` signature; `None` or more calls `serving_default`, whose
                beam size was fixed at export (the run's `beam_size`).
            n_best: must be 1: the SavedModel returns one hypothesis per sentence.
            replace_unk: must be `None`: fixed at export (the run's setting).
            batch_size: sentences per call of the signature (at most the SavedModel's
                `max_request_sentences`: a larger value is lowered to it).
            progress: optional callable(n_done) called after each batch.
        """
        if n_best != 1:
            raise ValueError(
                f"n_best={n_best}: an exported SavedModel returns one translation per sentence; "
                "use the run folder (--run, or load('runs/nmt/latest')) for n-best lists"
            )
        if replace_unk is not None:
            raise ValueError(
                "replace_unk is fixed when the SavedModel is exported (it follows the run's "
                "setting); use the run folder to change it"
            )
        if beam is not None and int(beam) < 1:
            raise ValueError(f"beam={beam}: must be at least 1 (1 is greedy search)")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1")
        signature = self.model.signatures["greedy" if beam == 1 else "serving_default"]
        if self.max_request_sentences:
            batch_size = min(batch_size, self.max_request_sentences)
        texts = list(texts)
        # Similar lengths together: the signature decodes up to the batch's longest sentence.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i].split()))
        results: list[Translation | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out = signature(text=tf.constant([texts[i] for i in idx], tf.string))
            out = {k: v.numpy() for k, v in out.items()}
            for row, i in enumerate(idx):
                results[i] = self._result(out, row)
            if progress is not None:
                progress(len(idx))
        return results

    @staticmethod
    def _result(out, row) -> Translation:
        source = [t.decode("utf-8") for t in out["source_tokens"][row] if t]
        target = [t.decode("utf-8") for t in out["target_tokens"][row] if t]
        # target_tokens ends with "[END]" where the model emitted it: that row is the end token's.
        words = target[: target.index(text.END)] if text.END in target else target
        rows = min(len(target), len(words) + 1)
        return Translation(
            text=out["translation"][row].decode("utf-8"),
            tokens=words,
            score=float(out["score"][row]),
            attention=out["attention"][row, :rows, : len(source)],
            source_tokens=source,
            truncated=bool(out["truncated"][row]) if "truncated" in out else False,
        )


# -- the translate command ---------------------------------------------------------------


# Lines translated per call of `translate` in file mode: enough for length-sorted batches,
# few enough that output reaches a pipe as it goes.
CHUNK_BATCHES = 16


def _format(number: int, result, n_best: int) -> list[str]:
    """The output lines for one input: its translation, or `n_best` numbered lines with scores."""
    if n_best == 1:
        return [result.text if result is not None else ""]
    if result is None:
        return []
    return [f"{number}\t{h.score:.4f}\t{h.text}" for h in [result, *result.alternatives]]


def _plot(results, numbers, sources, plot_dir, width):
    written = 0
    for number, source, result in zip(numbers, sources, results, strict=True):
        if result is None or not result.source_tokens or result.attention.size == 0:
            continue  # nothing to draw: an empty line, or a model without attention
        path = os.path.join(plot_dir, f"attention-{number:0{width}d}.png")
        plot_translation(result, path, title=source[:60])
        written += 1
    return written


def translate_lines(model, texts, beam=None, n_best=1, batch_size=64, progress=None) -> list:
    """`model.translate` over `texts`, `None` (unreadable) and blank entries giving `None`."""
    todo = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    done = model.translate([texts[i] for i in todo], beam=beam, n_best=n_best,
                           batch_size=batch_size, progress=progress)
    results = [None] * len(texts)
    for i, result in zip(todo, done, strict=True):
        results[i] = result
    return results


def translate_command(args, recipe) -> int:
    """`python -m recipes translate nmt ...` (see `recipes.commands`) with `recipe`, the nmt recipe."""
    check_counts(args.beam, args.batch_size, args.n_best)
    if args.texts and args.input:
        raise ValueError("give sentences or --input FILE, not both")
    if not args.texts and not args.input:
        raise ValueError("nothing to translate: give sentences, or --input FILE ('-' for stdin)")
    if args.input not in (None, "-") and not os.path.isfile(args.input):
        raise ValueError(f"--input {args.input}: no such file")
    model = open_model(recipe, args.run, args.model)  # before stdin: fail fast
    if args.input:
        texts, bad = decode_lines(split_lines(read_input(args.input)), "line")
    else:
        # Command-line bytes that are not UTF-8 arrive as surrogates (PEP 383).
        raw = [t.encode("utf-8", "surrogateescape") for t in args.texts]
        texts, bad = decode_lines(raw, "sentence")
    if args.model and args.beam not in (None, 1):
        print(f"note: the SavedModel's beam size was fixed at export; --beam {args.beam} "
              "picks its beam search (serving_default)", file=sys.stderr)
    output = Output(args.output)
    width = len(str(len(texts)))
    bar = None
    if args.input:
        bar = tqdm(total=sum(1 for t in texts if t is not None and t.strip()), unit="line",
                   file=sys.stderr, desc="translating", dynamic_ncols=True)
    t0 = time.time()
    plotted = 0
    chunk = args.batch_size * CHUNK_BATCHES if args.input else max(1, len(texts))
    ok = False
    try:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            results = translate_lines(model, part, args.beam, args.n_best, args.batch_size,
                                      progress=bar.update if bar is not None else None)
            numbers = range(start + 1, start + len(part) + 1)
            output.write_lines(
                line for n, r in zip(numbers, results, strict=True) for line in _format(n, r, args.n_best)
            )
            if args.plot:
                plotted += _plot(results, numbers, part, args.plot, width)
        ok = True
    finally:
        if bar is not None:
            bar.close()
        output.close(keep=ok)
    if args.input:
        seconds = time.time() - t0
        blank = sum(1 for t in texts if t is not None and not t.strip())
        print(f"translated {len(texts) - blank - len(bad)} of {len(texts)} lines in "
              f"{seconds:.1f}s ({blank} empty, {len(bad)} invalid UTF-8)"
              + (f" -> {args.output}" if args.output not in (None, "-") else ""), file=sys.stderr)
    if args.plot:
        print(f"wrote {plotted} attention heatmap(s) to {args.plot}", file=sys.stderr)
    return 1 if bad else 0
