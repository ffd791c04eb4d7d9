"""Recipe `nmt`: neural machine translation with attention (Luong et al., 2015).

Bidirectional LSTM encoder, attentive LSTM decoder, teacher forcing with a masked loss, greedy
and beam search. Data: number sentences generated with `num2words` (English -> French, no
download) by default; `data=pairs.tsv` (split automatically) or `train= valid= test=` split files
(streamed from disk) for a real corpus, with whole-word or SentencePiece subword vocabularies.

    python -m recipes train nmt attention=luong_general epochs=3
    python -m recipes train nmt config=configs/nmt-real-text.json
    python -m recipes evaluate nmt
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from recipes import training
from recipes.config import (
    ConfigError,
    check_ranges,
    check_run_id,
    fingerprint,
    to_dict,
    write_json,
)
from zoo import text
from zoo.data import num2words_corpus, parallel, tsv
from zoo.errors import DataError
from zoo.layers import ATTENTION_TYPES
from zoo.losses import MaskedTokenLosses, masked_accuracy
from zoo.seq2seq import Seq2Seq
from zoo.subwords import SubwordTokenizer

TOKENIZERS = ("word", "sentencepiece")
SUBWORD_MODELS = ("unigram", "bpe")

NAME = "nmt"


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


# -- data ------------------------------------------------------------------------------------


@dataclasses.dataclass
class NmtData:
    """Sentence pairs and vocabularies. With split files `train` is empty: the training pairs
    are streamed from `train_split` (validation and test sets are small and held in memory)."""

    train: list
    validation: list
    test: list
    source_vocab: object  # text.Vocabulary or SubwordTokenizer
    target_vocab: object
    report: str
    train_split: parallel.Split | None = None


def load_pairs(config: NmtConfig):
    """(train, validation, test, report) sentence pairs for the config's data. With split files
    the training list is empty (`train_pairs` streams it)."""
    if config.split_files():
        splits = {k: parallel.parse_split(k, v) for k, v in config.split_files().items()}
        validation, test = parallel.read_pairs(splits["valid"]), parallel.read_pairs(splits["test"])
        report = f"split files train={splits['train']} valid={splits['valid']} test={splits['test']}"
        return [], validation, test, report
    if config.data == "num2words":
        keys = ("train_size", "validation_size", "test_size", "source_lang", "target_lang",
                "seed", "max_digits", "max_items")
        cache = os.path.join(
            training.RUNS_ROOT, NAME, ".corpus",
            fingerprint(config, ignore=[k for k in to_dict(config) if k not in keys])
            + f"-v{num2words_corpus.VERSION}.json",  # a new generator, a new corpus
        )
        report = f"num2words {config.source_lang}->{config.target_lang}"
        if os.path.exists(cache):  # generating takes ~30 s; evaluate and tune reuse it
            try:
                with open(cache, encoding="utf-8") as f:
                    splits = json.load(f)
                return (*[[tuple(p) for p in splits[k]] for k in ("train", "validation", "test")], report)
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is regenerated below
        corpus = num2words_corpus.make_corpus(
            config.train_size,
            config.validation_size,
            config.test_size,
            source_lang=config.source_lang,
            target_lang=config.target_lang,
            seed=config.seed,
            max_digits=config.max_digits,
            max_items=config.max_items,
        )
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        write_json(cache, dataclasses.asdict(corpus))
        return corpus.train, corpus.validation, corpus.test, report
    pairs, report = tsv.read_tsv(config.data)
    train, validation, test = tsv.split_pairs(pairs, seed=config.seed)
    if not train:
        raise ConfigError(f"data={config.data}: too few pairs to train on ({len(pairs)})")
    return train, validation or train[:1], test or validation or train[:1], report.summary()


def train_pairs(config: NmtConfig, data: NmtData):
    """Yields the training pairs (streamed from disk for split files)."""
    if data.train_split is not None:
        yield from parallel.iter_pairs(data.train_split)
    else:
        yield from data.train


VOCAB_FILES = {
    "word": ("source_vocab.txt", "target_vocab.txt"),
    "sentencepiece": ("source.spm.model", "target.spm.model"),
}


def load_vocabularies(run_dir: str, config: NmtConfig):
    """The (source, target) vocabularies saved in a run folder."""
    src, tgt = (os.path.join(run_dir, name) for name in VOCAB_FILES[config.tokenizer])
    load = SubwordTokenizer.load if config.tokenizer == "sentencepiece" else text.Vocabulary.load
    return load(src), load(tgt)


def save_vocabularies(run_dir: str, data: NmtData, config: NmtConfig) -> None:
    for vocab, name in zip((data.source_vocab, data.target_vocab), VOCAB_FILES[config.tokenizer],
                           strict=True):
        vocab.save(os.path.join(run_dir, name))


def _word_vocabulary(lines, config: NmtConfig) -> text.Vocabulary:
    def token_lists(chunk=4096):
        buffer = []
        for line in lines:
            buffer.append(line)
            if len(buffer) == chunk:
                yield from text.python_tokens(buffer)
                buffer = []
        if buffer:
            yield from text.python_tokens(buffer)

    return text.Vocabulary.build(token_lists(), config.max_vocab_size, config.min_count)


def build_vocabularies(config: NmtConfig, data: NmtData):
    """Vocabularies learned from the training split (streamed: its size in memory is the
    vocabulary's, not the corpus's)."""
    if config.tokenizer == "word":
        return (
            _word_vocabulary((s for s, _ in train_pairs(config, data)), config),
            _word_vocabulary((t for _, t in train_pairs(config, data)), config),
        )

    def subwords(lines):
        return SubwordTokenizer.train(
            lines, config.vocab_size, model_type=config.subword_model, seed=config.seed
        )

    if config.joint_vocab:
        joint = subwords(side for pair in train_pairs(config, data) for side in pair)
        return joint, joint
    return (
        subwords(s for s, _ in train_pairs(config, data)),
        subwords(t for _, t in train_pairs(config, data)),
    )


def build_data(config: NmtConfig, vocab_dir: str | None = None) -> NmtData:
    """Loads the pairs and the vocabularies (learned from the training split, or read back)."""
    train, validation, test, report = load_pairs(config)
    split = parallel.parse_split("train", config.split_files()["train"]) if config.split_files() else None
    data = NmtData(train, validation, test, None, None, report, split)
    names = VOCAB_FILES[config.tokenizer]
    if vocab_dir and all(os.path.exists(os.path.join(vocab_dir, n)) for n in names):
        data.source_vocab, data.target_vocab = load_vocabularies(vocab_dir, config)
    else:
        data.source_vocab, data.target_vocab = build_vocabularies(config, data)
    return data


def target_token_counts(config: NmtConfig, data: NmtData, chunk: int = 4096) -> np.ndarray:
    """How often each target id (`[END]` included) occurs in the training split (streamed)."""
    counts = np.zeros(len(data.target_vocab), np.int64)
    batch = []

    def add(texts):
        ids = data.target_vocab.encode(tf.constant(texts), True, config.max_target_length)
        counts[:] += np.bincount(ids[:, 1:].flat_values.numpy(), minlength=len(counts))

    for _, target in train_pairs(config, data):
        batch.append(target)
        if len(batch) == chunk:
            add(batch)
            batch = []
    if batch:
        add(batch)
    return counts


def init_output_bias(model: Seq2Seq, counts: np.ndarray) -> None:
    """Sets the output layer's bias to the log unigram distribution of the target tokens, so
    training starts from the frequency guess instead of a uniform one over a large vocabulary."""
    counts = counts.astype(np.float64) + 0.1
    model.decoder.output_projection.bias.assign(np.log(counts / counts.sum()).astype(np.float32))


def unknown_rate(vocab, sentences: list[str]) -> float:
    """Share of the tokens of `sentences` that the vocabulary maps to `[UNK]`, in 0-100."""
    if not sentences:
        return 0.0
    ids = vocab.encode(tf.constant(sentences)).flat_values.numpy()
    return round(100.0 * float((ids == text.UNK_ID).mean()) if ids.size else 0.0, 3)


def most_frequent_token_rate(target_ids: list) -> float:
    """The validation accuracy of always predicting the most frequent target token (0-1)."""
    counts = collections.Counter(int(i) for row in target_ids for i in row[1:] if i)
    total = sum(counts.values())
    return max(counts.values()) / total if total else 0.0


def encode_pairs(pairs, data: NmtData, config: NmtConfig):
    """Python pairs -> (source id arrays, target id arrays with START/END)."""
    src = data.source_vocab.encode(tf.constant([s for s, _ in pairs]), False, config.max_source_length)
    tgt = data.target_vocab.encode(tf.constant([t for _, t in pairs]), False, config.max_target_length)
    src = [np.asarray(r, np.int32) for r in src.to_list()]
    tgt = [np.asarray([text.START_ID, *r, text.END_ID], np.int32) for r in tgt.to_list()]
    return src, tgt


def _pad(rows, multiple):
    width = max(len(r) for r in rows)
    width = -(-width // multiple) * multiple
    out = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _token_batches(part, src, tgt, batch_tokens):
    """Consecutive runs of `part` (sorted by length) of at most `batch_tokens` padded tokens:
    rows x (longest source + longest target), the two longest possibly from different rows."""
    chunks, chunk, source_width, target_width = [], [], 0, 0
    for j in part:
        s, t = max(source_width, len(src[j])), max(target_width, len(tgt[j]))
        if chunk and (s + t) * (len(chunk) + 1) > batch_tokens:
            chunks.append(chunk)
            chunk, s, t = [], len(src[j]), len(tgt[j])
        chunk.append(j)
        source_width, target_width = s, t
    return chunks + ([chunk] if chunk else [])


def batches(src, tgt, batch_size, seed, epoch, pad_multiple=1, shuffle=True, batch_tokens=0):
    """Length-bucketed batches: sentences of similar length together, so little padding;
    `batch_size` sentences each, or with `batch_tokens` about that many tokens each.

    The order is a pure function of (seed, epoch), so a resumed run sees the same batches.
    """
    order = np.arange(len(src))
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        rng.shuffle(order)
    window = batch_size * 32
    chunks = []
    for i in range(0, len(order), window):
        part = sorted(order[i : i + window], key=lambda j: len(tgt[j]))
        if batch_tokens:
            chunks += _token_batches(part, src, tgt, batch_tokens)
        else:
            chunks += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(chunks)
    for idx in chunks:
        source = _pad([src[j] for j in idx], pad_multiple)
        target = _pad([tgt[j] for j in idx], pad_multiple + 1 if pad_multiple > 1 else 1)
        yield {"source": source, "target_in": target[:, :-1]}, target[:, 1:]


def make_dataset(src, tgt, config: NmtConfig, first_epoch=0, shuffle=True):
    """A `tf.data.Dataset` of bucketed batches; each pass over it is the next epoch."""
    # Under XLA every new batch shape is a new compilation: pad lengths to a coarse ladder.
    pad_multiple = 32 if config.jit_compile else 1
    epoch = [first_epoch]

    def gen():
        yield from batches(src, tgt, config.batch_size, config.seed, epoch[0], pad_multiple,
                           shuffle, config.batch_tokens)
        epoch[0] += 1

    spec = (
        {
            "source": tf.TensorSpec((None, None), tf.int32),
            "target_in": tf.TensorSpec((None, None), tf.int32),
        },
        tf.TensorSpec((None, None), tf.int32),
    )
    ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).repeat().prefetch(2)


def steps_for(src, tgt, config: NmtConfig) -> int:
    return sum(1 for _ in batches(src, tgt, config.batch_size, config.seed, 0, 1, False,
                                  config.batch_tokens))


# Length buckets of the streamed pipeline (source + target tokens of a pair).
STREAM_BUCKETS = (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256)


def _worker_shard():
    """(workers, this worker's index) from TF_CONFIG: each worker streams its own shard."""
    config = training.tf_config()
    cluster, task = config.get("cluster", {}), config.get("task", {})
    workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
    if len(workers) < 2:
        return 1, 0
    index = task.get("index", 0) + (len(cluster.get("chief", [])) if task.get("type") == "worker" else 0)
    return len(workers), index


def stream_dataset(pairs: tf.data.Dataset, data: NmtData, config: NmtConfig, first_epoch=0,
                   shuffle=True, repeat=True) -> tf.data.Dataset:
    """`(source, target)` string pairs -> batches for `fit`, all in `tf.data`: tokenised in the
    graph, bucketed by length (`batch_size` sentences or about `batch_tokens` tokens a batch).

    With `shuffle`, each epoch is shuffled with a seed of its own (`seed`, epoch), so a resumed
    run draws the epochs an uninterrupted one would; under multi-worker training each worker
    reads its own shard of the pairs.
    """
    workers, index = _worker_shard()
    if workers > 1:
        pairs = pairs.shard(workers, index)

    def epoch_of(e):
        return pairs.shuffle(20_000, seed=config.seed * 100_003 + e, reshuffle_each_iteration=False)

    if shuffle and repeat:
        # One shuffled pass per remaining epoch (and one spare: batch counts vary a little
        # between shuffles), then reshuffled passes should a run outlast them.
        ds = epoch_of(first_epoch)
        for e in range(first_epoch + 1, max(config.epochs, first_epoch) + 2):
            ds = ds.concatenate(epoch_of(e))
        ds = ds.concatenate(pairs.shuffle(20_000, seed=config.seed).repeat())
    else:
        ds = pairs.repeat() if repeat else pairs

    def encode(source, target):  # a batch of strings at a time (one tokenizer call each)
        s = data.source_vocab.encode(source, False, config.max_source_length)
        t = data.target_vocab.encode(target, True, config.max_target_length)
        return s.to_tensor(), s.row_lengths(), t.to_tensor(), t.row_lengths()

    def unpad(s, ns, t, nt):
        return s[:ns], t[:nt]

    def has_source(s, t):
        return tf.size(s) > 0

    def pair_length(s, t):
        return tf.size(s) + tf.size(t)

    def teacher_forcing(s, t):
        return {"source": s, "target_in": t[:, :-1]}, t[:, 1:]

    ds = ds.batch(512).map(encode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    ds = ds.map(unpad).filter(has_source)
    boundaries = [b for b in STREAM_BUCKETS if b < config.max_source_length + config.max_target_length + 2]
    if config.batch_tokens:
        sizes = [max(1, config.batch_tokens // b) for b in boundaries]
        sizes.append(max(1, config.batch_tokens // (config.max_source_length + config.max_target_length + 2)))
    else:
        sizes = [config.batch_size] * (len(boundaries) + 1)
    ds = ds.bucket_by_sequence_length(pair_length, boundaries, sizes, pad_to_bucket_boundary=False)
    ds = ds.map(teacher_forcing)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options).prefetch(2)


def stream_steps(pairs: tf.data.Dataset, data: NmtData, config: NmtConfig) -> int:
    """Batches in one unshuffled pass (a pass over the corpus: tokenising, not training)."""
    ds = stream_dataset(pairs, data, config, shuffle=False, repeat=False)
    def count(n, batch):
        return n + 1

    return int(ds.reduce(np.int64(0), count).numpy())


def datasets(data: NmtData, config: NmtConfig, first_epoch: int = 0):
    """`(train dataset, steps per epoch, validation dataset, validation steps)` for `fit`."""
    if data.train_split is None:
        train_src, train_tgt = encode_pairs(data.train, data, config)
        val_src, val_tgt = encode_pairs(data.validation, data, config)
        return (
            make_dataset(train_src, train_tgt, config, first_epoch=first_epoch),
            steps_for(train_src, train_tgt, config),
            make_dataset(val_src, val_tgt, config, shuffle=False),
            steps_for(val_src, val_tgt, config),
        )
    train = parallel.pairs_dataset(data.train_split)
    validation = tf.data.Dataset.from_tensor_slices(
        ([s for s, _ in data.validation], [t for _, t in data.validation])
    )
    return (
        stream_dataset(train, data, config, first_epoch=first_epoch),
        stream_steps(train, data, config),
        stream_dataset(validation, data, config, shuffle=False),
        stream_steps(validation, data, config),
    )


# -- model -----------------------------------------------------------------------------------


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
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, clipnorm=config.clipnorm),
        loss=MaskedTokenLosses(config.label_smoothing),
        metrics=[masked_accuracy],
        jit_compile=config.jit_compile,
    )




# -- training --------------------------------------------------------------------------------


def train(config: NmtConfig, quiet: bool = False) -> str:
    """Trains (or resumes) the run for `config`; returns its folder."""
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = training.choose_strategy()
    chief = training.is_chief(strategy)
    run_dir = training.run_dir_for(NAME, run_id(config))
    os.makedirs(run_dir, exist_ok=True)
    state = training.load_state(run_dir)
    if state is not None:
        saved = json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))
        if saved != to_dict(config):
            changed = sorted(k for k in saved if saved.get(k) != to_dict(config).get(k))
            raise training.RunError(
                f"{run_dir} was trained with a different config ({', '.join(changed)}); "
                "pick another run_id=... or delete the folder"
            )
        if state.get("finished"):
            print(f"{run_dir} is already trained ({state['epoch']} epochs); nothing to do. "
                  f"Delete it to train again, or run `python -m recipes evaluate nmt --run {run_dir}`.")
            if chief:
                training.point_latest(run_dir)
            return run_dir
    t0 = time.time()
    data = build_data(config, run_dir if state is not None else None)
    train_ds, steps, val_ds, val_steps = datasets(data, config, first_epoch=(state or {}).get("epoch", 0))
    validation_sources = [s for s, _ in data.validation]
    validation_targets = [t for _, t in data.validation]
    unknown = {"source": unknown_rate(data.source_vocab, validation_sources),
               "target": unknown_rate(data.target_vocab, validation_targets)}
    val_tgt = data.target_vocab.encode(tf.constant(validation_targets), True,
                                       config.max_target_length).to_list()
    print(f"data: {data.report}; {len(data.train) or 'streamed'} train / {len(data.validation)} "
          f"validation / {len(data.test)} test pairs; {config.tokenizer} vocabularies "
          f"{len(data.source_vocab)} / {len(data.target_vocab)} tokens, [UNK] on validation "
          f"{unknown['source']}% / {unknown['target']}% of tokens; {steps} batches an epoch "
          f"({time.time() - t0:.1f}s)")
    write_dir = run_dir if chief else training.scratch_dir(run_dir)
    if chief and state is None:
        write_json(os.path.join(run_dir, "config.json"), to_dict(config))
        save_vocabularies(run_dir, data, config)
        write_json(os.path.join(run_dir, "data.json"), {
            "report": data.report, "unknown_rate_validation": unknown,
            "vocabulary_sizes": [len(data.source_vocab), len(data.target_vocab)],
            "batches_per_epoch": steps,
        })
    with strategy.scope():
        if state is not None and os.path.exists(os.path.join(run_dir, "checkpoint.keras")):
            model = training.load_model_checked(os.path.join(run_dir, "checkpoint.keras"), "checkpoint")
            print(f"resuming {run_dir} after epoch {state['epoch']}")
        else:
            state = training.new_state()
            model = build_model(config, len(data.source_vocab), len(data.target_vocab))
            if config.output_bias_init == "unigram":
                init_output_bias(model, target_token_counts(config, data))
            compile_model(model, config, steps)
    callbacks = [
        training.RunCheckpoint(write_dir, state, config.patience),
        training.LearningCheck(most_frequent_token_rate(val_tgt), "val_masked_accuracy"),
        training.tensorboard_callback(write_dir),
    ]
    if chief:
        from recipes.translator import AttentionImages

        callbacks.append(AttentionImages(model, data, config, write_dir))
    if state["epoch"] < config.epochs and not state.get("stopped_early"):
        model.fit(
            train_ds,
            validation_data=val_ds,
            steps_per_epoch=steps,
            validation_steps=val_steps,
            initial_epoch=state["epoch"],
            epochs=config.epochs,
            callbacks=callbacks,
            verbose=0 if quiet else "auto",
        )
    best = os.path.join(write_dir, "best.weights.h5")
    if os.path.exists(best):
        model.load_weights(best)
    state["finished"] = True
    if chief:
        training.save_model_atomic(model, os.path.join(run_dir, "model.keras"))
        write_json(os.path.join(run_dir, "train_state.json"), state)
        training.point_latest(run_dir)
    else:
        training.remove_scratch(write_dir)
    print(f"trained {run_dir} in {state.get('train_seconds', 0):.0f}s of training "
          f"(best epoch {state['best_epoch']}, val_loss {state['best_val_loss']:.4f})")
    return run_dir


Config = NmtConfig


def evaluate(run_dir: str, beam: int | None = None, **kwargs) -> dict:
    from recipes.translator import evaluate as _evaluate

    return _evaluate(run_dir, beam=beam, **kwargs)


# -- the headline comparison -----------------------------------------------------------------


def compare_attention(config: NmtConfig, baseline: str = "none") -> dict:
    """Trains `config` and the same config with `attention=none` (same data, same epochs),
    evaluates both on the test split and writes a table and a plot of quality by source length
    to `runs/nmt/compare-<hash>/`."""
    from recipes.translator import evaluate as _evaluate
    from zoo.plots import plot_quality_by_length

    reports = {}
    for attention in (config.attention, baseline):
        variant = dataclasses.replace(config, attention=attention, run_id="")
        print(f"== training attention={attention}")
        run = train(variant)
        reports[attention] = _evaluate(run, quiet=True)
        reports[attention]["run"] = run
    # `latest` stays on the attention model, not on the baseline trained last.
    training.point_latest(reports[config.attention]["run"])
    out_dir = training.run_dir_for(NAME, f"compare-{fingerprint(config, ignore=('run_id',))}")
    os.makedirs(out_dir, exist_ok=True)
    texts = {name: r["text"] for name, r in reports.items()}
    for metric in ("bleu", "chrf"):
        table = {name: {b: s[metric] for b, s in t["by_length"].items()} for name, t in texts.items()}
        plot_quality_by_length(table, os.path.join(out_dir, f"{metric}_by_length.png"), metric=metric)
    exact = all("by_length" in r for r in reports.values())  # whole-word runs: exact match too
    if exact:
        table = {name: {b: s["exact_match"] for b, s in r["by_length"].items()}
                 for name, r in reports.items()}
        plot_quality_by_length(table, os.path.join(out_dir, "exact_match_by_length.png"))
    columns = [f"{n} BLEU | {n} chrF" + (f" | {n} exact %" if exact else "") for n in reports]
    lines = ["| source words | sentences | " + " | ".join(columns) + " |"]
    lines.append("|---|---:|" + ("---:|---:|" + ("---:|" if exact else "")) * len(reports))
    buckets = list(next(iter(texts.values()))["by_length"])
    for b in buckets + ["all"]:
        cells = []
        for name, r in reports.items():
            s = texts[name]["overall"] if b == "all" else texts[name]["by_length"][b]
            cells += [f"{s['bleu']:.2f}", f"{s['chrf']:.2f}"]
            if exact:
                e = r["overall"] if b == "all" else r["by_length"].get(b, {"exact_match": 0.0})
                cells.append(f"{e['exact_match']:.2f}")
        label = f"**{b}**" if b == "all" else b
        lines.append(f"| {label} | {s['count']} | " + " | ".join(cells) + " |")
    signatures = next(iter(texts.values()))["signatures"]
    lines += ["", "Detokenised, cased sacreBLEU and chrF by source length in words; signatures:"]
    lines += [f"- {k}: `{v}`" for k, v in signatures.items()]
    markdown = "\n".join(lines)
    with open(os.path.join(out_dir, "compare.md"), "w", encoding="utf-8") as f:
        f.write(markdown + "\n")
    write_json(os.path.join(out_dir, "compare.json"), reports)
    print(markdown)
    print(f"plots and tables in {out_dir}")
    return reports


# -- hyperparameter search space (keras-tuner) -------------------------------------------------


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


def tune(config: NmtConfig, **settings) -> str:
    """Searches `search_space` around `config` with keras-tuner (see `recipes.tuning`)."""
    from recipes import tuning

    return tuning.tune(NAME, config, **settings)
