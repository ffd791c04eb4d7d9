"""Direct tests of `BidirectionalLSTMEncoder` and `sequence_noise_shape` (zoo/layers/encoders.py).

The models only ever call the encoder with an explicit mask (Keras 3 does not carry implicit masks
across custom layers), so every masking check here passes one too.
"""

import inspect

import keras
import numpy as np
import pytest

from zoo.layers import AttentiveLSTMDecoder, BidirectionalLSTMEncoder, make_attention
from zoo.layers.encoders import sequence_noise_shape
from zoo.seq2seq import Seq2Seq

VOCAB, EMBED, UNITS = 11, 5, 3  # UNITS per direction: outputs and states have 2 * UNITS features

# Row 0: no padding; row 1: the last two positions padded; row 2: one real token.
IDS = np.array([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0], [2, 0, 0, 0, 0]], "int32")
MASK = IDS != 0


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def make(**overrides):
    return BidirectionalLSTMEncoder(**{"vocab_size": VOCAB, "embedding_dim": EMBED,
                                       "units": UNITS, **overrides})


def copy_weights(source, target):
    assert [w.shape for w in source.weights] == [w.shape for w in target.weights]
    target.set_weights(source.get_weights())


def numpy(nest):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, nest)


def assert_same(actual, expected, atol=1e-6):
    for a, e in zip(keras.tree.flatten(numpy(actual)), keras.tree.flatten(numpy(expected)),
                    strict=True):
        np.testing.assert_allclose(a, e, atol=atol)


# -- sequence_noise_shape ----------------------------------------------------------------------


def test_sequence_noise_shape_shares_one_mask_across_time_only_when_variational():
    assert sequence_noise_shape(True) == (None, 1, None)
    assert sequence_noise_shape(False) is None
    ones = np.ones((4, 6, 8), "float32")
    shared = keras.layers.Dropout(0.5, noise_shape=sequence_noise_shape(True), seed=1)
    shared = keras.ops.convert_to_numpy(shared(ones, training=True))
    # One mask per sentence and feature: every position of a sentence drops the same features.
    np.testing.assert_array_equal(shared, np.broadcast_to(shared[:, :1], shared.shape))
    assert 0 < (shared == 0).mean() < 1
    per_element = keras.layers.Dropout(0.5, noise_shape=sequence_noise_shape(False), seed=1)
    per_element = keras.ops.convert_to_numpy(per_element(ones, training=True))
    assert not np.array_equal(per_element, np.broadcast_to(per_element[:, :1], per_element.shape))


# -- shapes, states ------------------------------------------------------------------------------


def test_output_shapes_dtypes_and_zeros_at_padding():
    outputs, (h, c) = make()(IDS, mask=MASK)
    assert tuple(outputs.shape) == (3, 5, 2 * UNITS) and outputs.dtype == "float32"
    assert tuple(h.shape) == tuple(c.shape) == (3, 2 * UNITS)
    assert h.dtype == c.dtype == "float32"
    outputs = keras.ops.convert_to_numpy(outputs)
    np.testing.assert_array_equal(outputs[~MASK], 0.0)
    assert (np.abs(outputs[MASK]) > 0).all(axis=-1).all()


def test_final_states_are_taken_at_each_sentence_own_last_token():
    outputs, (h, _) = numpy(make()(IDS, mask=MASK))
    last = MASK.sum(1) - 1
    for row in range(len(IDS)):
        # Forward direction: its output at the last real token; backward: its output at 0.
        np.testing.assert_allclose(h[row, :UNITS], outputs[row, last[row], :UNITS], atol=1e-6)
        np.testing.assert_allclose(h[row, UNITS:], outputs[row, 0, UNITS:], atol=1e-6)


def test_states_and_outputs_are_what_the_decoder_takes():
    # As Seq2Seq wires them: decoder units = 2 * encoder units, memory depth = 2 * encoder units.
    encoder = make()
    memory, (h, c) = encoder(IDS, mask=MASK)
    decoder = AttentiveLSTMDecoder(7, 2 * UNITS, 4, make_attention("bahdanau", 2 * UNITS))
    decoder.build((None, None), (None, None, 2 * UNITS))
    logits, weights = decoder(np.ones((3, 2), "int32"), memory, MASK, initial_state=(h, c))
    assert tuple(logits.shape) == (3, 2, 7) and tuple(weights.shape) == (3, 2, 5)
    state = decoder.initial_state(h, c)
    assert [tuple(s.shape) for s in state] == [(3, 2 * UNITS)] * 3
    constants = decoder.prepare_memory(memory, MASK)
    step_logits, _, _ = decoder.step(np.ones(3, "int32"), state, constants)
    np.testing.assert_allclose(step_logits, np.asarray(logits)[:, 0], atol=1e-5)


# -- masks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variational_dropout", [False, True])
def test_sequence_alone_equals_the_same_sequence_in_a_padded_batch(variational_dropout):
    encoder = make(dropout=0.3, variational_dropout=variational_dropout)
    # Padded positions hold non-zero garbage ids: only the explicit mask says they are padding.
    ids = np.where(MASK, IDS, 9)
    batch_outputs, (batch_h, batch_c) = numpy(encoder(ids, mask=MASK))
    for row in range(len(IDS)):
        n = MASK[row].sum()
        alone = IDS[row : row + 1, :n]
        outputs, (h, c) = numpy(encoder(alone, mask=np.ones_like(alone, bool)))
        np.testing.assert_allclose(batch_outputs[row, :n], outputs[0], atol=1e-5)
        np.testing.assert_allclose(batch_h[row], h[0], atol=1e-5)
        np.testing.assert_allclose(batch_c[row], c[0], atol=1e-5)
        np.testing.assert_array_equal(batch_outputs[row, n:], 0.0)


def test_mask_defaults_to_non_zero_ids():
    encoder = make()
    expected = encoder(IDS, mask=MASK)
    assert_same(encoder(IDS), expected)
    # ...and the mask is used: attending to the padding gives other states.
    _, (h, _) = numpy(encoder(IDS, mask=np.ones_like(MASK)))
    assert not np.allclose(h[1], np.asarray(expected[1][0])[1], atol=1e-4)


# -- serialisation -------------------------------------------------------------------------------


def test_config_round_trip_and_registered_name():
    kwargs = dict(vocab_size=VOCAB, embedding_dim=EMBED, units=UNITS, dropout=0.25,
                  variational_dropout=True)
    encoder = BidirectionalLSTMEncoder(**kwargs, name="enc")
    name = "zoo>BidirectionalLSTMEncoder"
    assert keras.saving.get_registered_name(BidirectionalLSTMEncoder) == name
    assert keras.saving.get_registered_object(name) is BidirectionalLSTMEncoder
    config = encoder.get_config()
    parameters = inspect.signature(BidirectionalLSTMEncoder.__init__).parameters
    arguments = [n for n, p in parameters.items() if n != "self" and p.kind != p.VAR_KEYWORD]
    assert {n: config[n] for n in arguments} == kwargs
    assert BidirectionalLSTMEncoder.from_config(config).get_config() == config

    expected = encoder(IDS, mask=MASK)
    serialized = keras.saving.serialize_keras_object(encoder)
    assert serialized["registered_name"] == name
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is BidirectionalLSTMEncoder and restored.get_config() == config
    restored(IDS[:1, :2])  # build
    assert not np.allclose(restored(IDS, mask=MASK)[0], expected[0])  # fresh weights differ...
    copy_weights(encoder, restored)
    assert_same(restored(IDS, mask=MASK), expected)  # ...copied ones agree


# -- mixed precision -----------------------------------------------------------------------------


def test_mixed_float16_builds_runs_and_is_finite(mixed_float16):
    encoder = make(dropout=0.1, variational_dropout=True)
    outputs, (h, c) = encoder(IDS, mask=MASK)
    assert outputs.dtype == h.dtype == c.dtype == "float16"
    assert all(w.dtype == "float32" for w in encoder.weights)
    for x in numpy((outputs, h, c)):
        assert np.isfinite(x).all()
    np.testing.assert_array_equal(np.asarray(outputs)[~MASK], 0.0)
    keras.mixed_precision.set_global_policy("float32")
    reference = make(dropout=0.1, variational_dropout=True)
    reference(IDS, mask=MASK)
    copy_weights(encoder, reference)
    assert_same(numpy((outputs, (h, c))), reference(IDS, mask=MASK), atol=1e-2)


# -- dropout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variational_dropout", [False, True])
def test_dropout_is_inactive_at_inference(variational_dropout):
    encoder = make(dropout=0.5, variational_dropout=variational_dropout)
    assert encoder.drop.noise_shape == sequence_noise_shape(variational_dropout)
    first = numpy(encoder(IDS, mask=MASK, training=False))
    assert_same(encoder(IDS, mask=MASK, training=False), first, atol=0)
    assert_same(encoder(IDS, mask=MASK), first, atol=0)  # training defaults to inference
    plain = make()
    plain(IDS, mask=MASK)
    copy_weights(encoder, plain)
    assert_same(plain(IDS, mask=MASK), first)
    # ...while training does drop.
    assert not np.allclose(encoder(IDS, mask=MASK, training=True)[0], first[0])


@pytest.mark.parametrize("variational_dropout", [False, True])
def test_variational_dropout_drops_the_same_output_features_at_every_position(variational_dropout):
    ids = np.arange(1, 19, dtype="int32").reshape(3, 6) % (VOCAB - 1) + 1  # no padding
    encoder = make(units=4, dropout=0.5, variational_dropout=variational_dropout)
    outputs = keras.ops.convert_to_numpy(encoder(ids, training=True)[0])
    dropped = outputs == 0.0  # an LSTM output is never exactly 0 unless dropped
    assert 0 < dropped.mean() < 1
    same_at_every_position = np.array_equal(dropped, np.broadcast_to(dropped[:, :1], dropped.shape))
    assert same_at_every_position == variational_dropout


def test_unpadded_ids_skip_the_masking_to_the_same_numbers():
    """`padded=False` (every id a real token, as one sentence tokenised alone) runs the LSTMs
    without their per-step masking: the same outputs and states as the masked call on each
    sentence cut to its own tokens."""
    encoder = make()
    for row, length in enumerate(MASK.sum(1)):
        ids = IDS[row : row + 1, :length]
        plain = encoder(ids, padded=False)
        masked = encoder(ids, mask=ids != 0)
        assert_same(plain, masked)
    # The Seq2Seq's decoding inputs for one sentence: the same with either.
    model = Seq2Seq(VOCAB, VOCAB, embedding_dim=EMBED, units=2 * UNITS, attention="luong_dot")
    model.build()
    ids = IDS[:1]
    (_, state_p, consts_p), (_, state_m, consts_m) = (model.decoding_inputs(ids, padded=False),
                                                      model.decoding_inputs(ids))
    assert_same(state_p, state_m)
    assert_same(consts_p, consts_m)
