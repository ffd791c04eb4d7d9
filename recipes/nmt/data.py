"""The nmt recipe's data: sentence pairs (generated number sentences, a pairs file, or split
files streamed from disk), whole-word or SentencePiece vocabularies, and the `tf.data` pipelines
(length-bucketed batches, or batches by token count)."""

from __future__ import annotations

import collections
import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from recipes import config as recipes_config
from recipes import training
from recipes.config import ConfigError, fingerprint, to_dict, write_json
from recipes.nmt.config import NmtConfig
from zoo import text
from zoo.data import parallel, tsv
from zoo.subwords import SubwordTokenizer

NAME = "nmt"


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
        # The generated corpus needs the [data] extra: loaded only when it is asked for, so a
        # real corpus trains without it.
        from zoo.data import num2words_corpus

        keys = ("train_size", "validation_size", "test_size", "source_lang", "target_lang",
                "seed", "max_digits", "max_items")
        cache = os.path.join(
            recipes_config.RUNS_ROOT, NAME, ".corpus",
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
    return training.epoch_dataset(gen, spec)


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
