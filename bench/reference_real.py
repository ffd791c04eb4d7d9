"""The plain Keras reference on real text: what a user would write from Keras' NMT tutorials.

Whole-word vocabularies (`keras.layers.TextVectorization`, lowercased, punctuation split off),
a bidirectional GRU encoder, a GRU decoder with `keras.layers.MultiHeadAttention` (one head)
cross-attention, a residual and layer norm, a Dense vocabulary projection; teacher forcing,
Adam, masked cross-entropy. Exported as a `tf.Module` whose `translate(strings)` `tf.function`
decodes greedily one word at a time (stopping when every sentence has emitted [END]), saved
with `tf.saved_model.save`, the way the TensorFlow tutorial exports its translator.
"""

import re
import time

import keras
import numpy as np
import tensorflow as tf

START, END = "[START]", "[END]"
PUNCTUATION = r"[.?!,;:«»\"()'’\-]"


def standardize(text):
    """Lowercase, punctuation as separate words, [START] ... [END] around the sentence."""
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, PUNCTUATION, r" \0 ")
    text = tf.strings.regex_replace(text, r"\s+", " ")
    return tf.strings.join([START, tf.strings.strip(text), END], separator=" ")


def _words(lines):
    out = set()
    for line in lines:
        line = re.sub(PUNCTUATION, lambda m: f" {m.group(0)} ", line.lower())
        out.update(line.split())
    return out


def vectorizers(pairs, cap=20000, max_length=200):
    """(source, target) TextVectorization layers; each vocabulary as large as the number of
    distinct target words, capped at `cap` (plus padding, [UNK], [START], [END])."""
    size = min(cap, len(_words(t for _, t in pairs))) + 4
    layers = []
    for side in (0, 1):
        layer = keras.layers.TextVectorization(max_tokens=size, standardize=standardize,
                                               output_sequence_length=None, ragged=False)
        layer.adapt(tf.data.Dataset.from_tensor_slices([p[side] for p in pairs]).batch(1024))
        layers.append(layer)
    return layers


class Encoder(keras.layers.Layer):
    def __init__(self, vocab_size, embedding_dim, units, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True)
        self.rnn = keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True),
                                              merge_mode="sum")

    def call(self, ids):
        return self.rnn(self.embedding(ids), mask=ids != 0)


class Decoder(keras.layers.Layer):
    def __init__(self, vocab_size, embedding_dim, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True)
        self.rnn = keras.layers.GRU(units, return_sequences=True, return_state=True)
        self.attention = keras.layers.MultiHeadAttention(num_heads=1, key_dim=units)
        self.add = keras.layers.Add()
        self.norm = keras.layers.LayerNormalization()
        self.output_layer = keras.layers.Dense(vocab_size)

    def call(self, context, source_mask, ids, state=None):
        x = self.embedding(ids)
        x, state = self.rnn(x, initial_state=state, mask=ids != 0)
        mask = tf.logical_and(source_mask[:, None, :], tf.ones_like(ids, bool)[:, :, None])
        attended = self.attention(query=x, value=context, attention_mask=mask)
        x = self.norm(self.add([x, attended]))
        return self.output_layer(x), state


class Translator(keras.Model):
    def __init__(self, source_vocab_size, target_vocab_size, embedding_dim, units, **kwargs):
        super().__init__(**kwargs)
        self.encoder = Encoder(source_vocab_size, embedding_dim, units)
        self.decoder = Decoder(target_vocab_size, embedding_dim, units)

    def call(self, inputs):
        source, target_in = inputs
        logits, _ = self.decoder(self.encoder(source), source != 0, target_in)
        return logits


def masked_loss(y_true, y_pred):
    loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    mask = tf.cast(y_true != 0, loss.dtype)
    return tf.reduce_sum(loss * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def build(source_vec, target_vec, embedding_dim, units, learning_rate=1e-3):
    model = Translator(source_vec.vocabulary_size(), target_vec.vocabulary_size(), embedding_dim, units)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=masked_loss)
    model((tf.ones((1, 2), tf.int64), tf.ones((1, 2), tf.int64)))
    return model


def encode(source_vec, target_vec, pairs):
    """Teacher forcing: ((source, target_in), target_out) int arrays, padded to the batch."""
    source = source_vec(tf.constant([s for s, _ in pairs]))
    target = target_vec(tf.constant([t for _, t in pairs]))
    return (source, target[:, :-1]), target[:, 1:]


def batch_indices(pairs, batch_size=64, seed=0):
    """Endless `(epoch, indices)` of length-sorted batches of `pairs`, in a new shuffled order
    each epoch (the tutorial's bucketing, without a tf.data pipeline)."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][1]))
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    epoch = 0
    while True:
        rng.shuffle(chunks)
        for chunk in chunks:
            yield epoch, chunk
        epoch += 1


def train(model, source_vec, target_vec, pairs, batch_size=64, max_steps=300, max_seconds=None,
          seed=0):
    """Trains on `batch_indices` until `max_steps` steps or `max_seconds`; returns (steps, seconds)."""
    t0, steps = time.time(), 0
    for _, chunk in batch_indices(pairs, batch_size, seed):
        x, y = encode(source_vec, target_vec, [pairs[i] for i in chunk])
        model.train_on_batch(x, y)
        steps += 1
        if steps >= max_steps or (max_seconds and time.time() - t0 > max_seconds):
            break
    return steps, time.time() - t0


class Export(tf.Module):
    """`translate(strings)` -> {"text": translations}: greedy, one word a step, until every
    sentence has emitted [END] or `max_length` words."""

    def __init__(self, model, source_vec, target_vec, max_length=200):
        super().__init__()
        self.model, self.source_vec = model, source_vec
        vocab = target_vec.get_vocabulary()
        self.words = tf.constant(vocab)
        self.start_id = vocab.index(START.lower()) if START.lower() in vocab else vocab.index(START)
        self.end_id = vocab.index(END.lower()) if END.lower() in vocab else vocab.index(END)
        self.max_length = max_length

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def translate(self, texts):
        return self._decode(texts, self.max_length)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32)])
    def translate_upto(self, texts, max_length):
        """`translate` stopping after `max_length` words: the bench gives it the length of the
        reference translation, what a converged model would decode before its [END]."""
        return self._decode(texts, max_length)

    def _decode(self, texts, max_length):
        source = self.source_vec(texts)
        context = self.model.encoder(source)
        source_mask = source != 0
        batch = tf.shape(texts)[0]
        token = tf.fill([batch, 1], tf.cast(self.start_id, tf.int64))
        state = tf.zeros([batch, self.model.decoder.units])
        done = tf.zeros([batch, 1], tf.bool)
        out = tf.TensorArray(tf.int64, size=0, dynamic_size=True)
        for i in tf.range(max_length):
            logits, state = self.model.decoder(context, source_mask, token, state)
            token = tf.argmax(logits[:, -1:, :], axis=-1)
            done = done | (token == self.end_id)
            token = tf.where(done, tf.zeros_like(token), token)
            out = out.write(i, token[:, 0])
            if tf.reduce_all(done):
                break
        ids = tf.transpose(out.stack())
        words = tf.gather(self.words, ids)
        words = tf.where(ids == 0, tf.constant(""), words)
        text = tf.strings.reduce_join(words, axis=-1, separator=" ")
        return {"text": tf.strings.strip(tf.strings.regex_replace(text, " +", " "))}


def save(model, source_vec, target_vec, path, max_length=200):
    module = Export(model, source_vec, target_vec, max_length)
    tf.saved_model.save(module, path, signatures={"translate": module.translate,
                                                  "translate_upto": module.translate_upto})
    return path
