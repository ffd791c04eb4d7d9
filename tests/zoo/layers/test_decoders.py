"""Direct tests of `AttentiveLSTMDecoder` (zoo/layers/decoders.py).

The decoder has two code paths that must agree: the teacher-forced `call` (a hand-written
`tf.while_loop` over the LSTM's own weights with input feeding, one batched LSTM without) used in
training, and `step`, one cell step, which greedy and beam search (`zoo.decoding`) drive. The
models build the decoder explicitly (`build((None, None), (None, None, memory_depth))`) and pass
the memory mask explicitly; so do these tests.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.decoding import beam_search, greedy_search, tile_for_beam
from zoo.layers import ATTENTION_TYPES, AttentiveLSTMDecoder, make_attention
from zoo.layers.encoders import sequence_noise_shape

B, T, TV = 3, 4, 5
VOCAB, UNITS, EMBED, DEPTH = 13, 6, 5, 4  # DEPTH: memory features, unlike UNITS on purpose

# Row 0: every source position real; row 1: the last two padded; row 2: one real position.
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)

# (attention, input_feeding, context_gate): the step/call agreement is checked on each.
VARIANTS = [
    ("bahdanau", True, False),
    ("bahdanau", False, False),
    ("luong_general", True, True),
    ("luong_concat", False, True),
    ("none", True, False),
    ("none", False, False),
]
VARIANT_IDS = [f"{a}-{'feed' if f else 'nofeed'}{'-gate' if g else ''}" for a, f, g in VARIANTS]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def make(attention="bahdanau", depth=DEPTH, build=True, **overrides):
    kwargs = {"vocab_size": VOCAB, "units": UNITS, "embedding_dim": EMBED,
              "attention": make_attention(attention, UNITS), **overrides}
    decoder = AttentiveLSTMDecoder(**kwargs)
    if build:
        decoder.build((None, None), (None, None, depth))
    return decoder


def data(seed=0, depth=DEPTH):
    """`(target_in, memory, (h0, c0))`; masked memory positions hold large garbage."""
    rng = np.random.default_rng(seed)
    target_in = rng.integers(1, VOCAB, size=(B, T)).astype("int32")
    memory = rng.normal(size=(B, TV, depth)).astype("float32")
    memory[~MASK] = 50.0
    h0 = (0.5 * rng.normal(size=(B, UNITS))).astype("float32")
    c0 = (0.5 * rng.normal(size=(B, UNITS))).astype("float32")
    return target_in, memory, (h0, c0)


def numpy(nest):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, nest)


def copy_weights(source, target):
    assert [w.shape for w in source.weights] == [w.shape for w in target.weights]
    target.set_weights(source.get_weights())


def run_steps(decoder, target_in, memory, mask, state, training=False):
    """The teacher-forced inputs through `step`, one at a time: `(logits, weights)` stacked."""
    constants = decoder.prepare_memory(memory, mask)
    state = decoder.initial_state(*state)
    logits, weights = [], []
    for t in range(target_in.shape[1]):
        step_logits, state, step_weights = decoder.step(target_in[:, t], state, constants,
                                                        training=training)
        logits.append(keras.ops.convert_to_numpy(step_logits))
        weights.append(keras.ops.convert_to_numpy(step_weights))
    return np.stack(logits, 1), np.stack(weights, 1)


def check_distribution(weights, mask):
    """`weights (batch, T, Tv)` non-negative, summing to 1 over `mask`, exactly 0 off it."""
    mask = np.broadcast_to(mask[:, None], weights.shape)
    assert (weights >= 0).all()
    np.testing.assert_array_equal(weights[~mask], 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


# -- shapes, dtypes ------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["bahdanau", "none"])
def test_output_shapes_and_dtypes(attention):
    target_in, memory, state = data()
    decoder = make(attention)
    logits, weights = decoder(target_in, memory, MASK, initial_state=state)
    assert tuple(logits.shape) == (B, T, VOCAB) and logits.dtype == "float32"
    assert tuple(weights.shape) == (B, T, TV if attention != "none" else 0)
    assert weights.dtype == "float32"
    constants = decoder.prepare_memory(memory, MASK)
    step_logits, new_state, step_weights = decoder.step(
        target_in[:, 0], decoder.initial_state(*state), constants
    )
    assert tuple(step_logits.shape) == (B, VOCAB) and step_logits.dtype == "float32"
    assert [tuple(s.shape) for s in new_state] == [(B, UNITS)] * 3
    assert tuple(step_weights.shape) == (B, TV if attention != "none" else 0)


def test_context_gate_and_input_feeding_shape_the_weights():
    plain = make("bahdanau", input_feeding=False)
    gated = make("bahdanau", input_feeding=True, context_gate=True)
    assert plain.gate is None and gated.gate is not None
    # The fed-back attentional vector widens the LSTM's input kernel by UNITS rows.
    assert tuple(plain.rnn.cell.kernel.shape) == (EMBED, 4 * UNITS)
    assert tuple(gated.rnn.cell.kernel.shape) == (EMBED + UNITS, 4 * UNITS)
    assert len(gated.trainable_weights) == len(plain.trainable_weights) + 2  # gate kernel, bias
    assert tuple(make("none").combine.kernel.shape) == (UNITS, UNITS)
    assert tuple(plain.combine.kernel.shape) == (UNITS + DEPTH, UNITS)


def test_an_unbuilt_decoder_builds_on_its_first_call():
    target_in, memory, state = data()
    decoder = make(build=False)
    logits, _ = decoder(target_in, memory, MASK, initial_state=state)
    assert tuple(logits.shape) == (B, T, VOCAB)


# -- teacher forcing == step by step -------------------------------------------------------------


@pytest.mark.parametrize(("attention", "input_feeding", "context_gate"), VARIANTS, ids=VARIANT_IDS)
def test_teacher_forced_call_equals_its_steps(attention, input_feeding, context_gate):
    target_in, memory, state = data()
    decoder = make(attention, input_feeding=input_feeding, context_gate=context_gate)
    logits, weights = numpy(decoder(target_in, memory, MASK, initial_state=state))
    step_logits, step_weights = run_steps(decoder, target_in, memory, MASK, state)
    np.testing.assert_allclose(step_logits, logits, atol=1e-5)
    np.testing.assert_allclose(step_weights, weights, atol=1e-5)
    # Not trivially equal: the steps depend on the previous tokens (and on the memory).
    assert not np.allclose(logits[:, 1:], logits[:, :1], atol=1e-3)


@pytest.mark.parametrize("with_table", [False, True], ids=["", "input_table"])
@pytest.mark.parametrize(("attention", "input_feeding", "context_gate"), VARIANTS, ids=VARIANT_IDS)
def test_inference_step_equals_step_with_its_logit_bias(attention, input_feeding, context_gate,
                                                        with_table):
    target_in, memory, state = data()
    decoder = make(attention, input_feeding=input_feeding, context_gate=context_gate)
    bias = np.zeros(VOCAB, "float32")
    bias[[0, 2]] = -1e9
    table = decoder.input_table() if with_table else None
    if with_table:
        assert tuple(table.shape) == (VOCAB, 4 * decoder.units)
    fast = decoder.inference_step(logit_bias=bias, input_table=table)
    constants = decoder.prepare_memory(memory, MASK)
    slow_state = fast_state = decoder.initial_state(*state)
    for t in range(T):
        slow, slow_state, slow_w = decoder.step(target_in[:, t], slow_state, constants)
        logits, fast_state, weights = fast(target_in[:, t], fast_state, constants)
        np.testing.assert_allclose(numpy(logits)[:, 3:], numpy(slow)[:, 3:], atol=1e-5)
        np.testing.assert_array_equal(numpy(logits)[:, [0, 2]] < -1e8, True)
        np.testing.assert_allclose(numpy(weights), numpy(slow_w), atol=1e-6)
        np.testing.assert_allclose(numpy(fast_state[2]), numpy(slow_state[2]), atol=1e-5)


@pytest.mark.parametrize(("attention", "input_feeding", "context_gate"), VARIANTS, ids=VARIANT_IDS)
def test_a_grouped_step_equals_the_step_on_tiled_constants(attention, input_feeding,
                                                           context_gate):
    """A grouped step (a sentence's beam rows attend together over its memory, given once)
    computes what the plain step computes over the memory tiled to every row; beam search
    drives either to the same hypotheses."""
    target_in, memory, state = data(depth=UNITS)
    decoder = make(attention, depth=UNITS, input_feeding=input_feeding,
                   context_gate=context_gate)
    grouped, plain = decoder.inference_step(grouped=True), decoder.inference_step()
    assert grouped.grouped == (attention != "none") and not plain.grouped
    beam = 3
    constants = decoder.prepare_memory(tf.constant(memory), tf.constant(MASK))
    tiled = tile_for_beam(constants, beam)
    rng = np.random.default_rng(1)
    first = decoder.initial_state(*(tf.constant(s) for s in state))
    state_g = state_p = tile_for_beam(first, beam)
    own = tiled if attention == "none" else constants  # no attention: nothing to group
    for _ in range(T):
        ids = tf.constant(rng.integers(1, VOCAB, size=B * beam), tf.int32)
        logits_g, state_g, weights_g = grouped(ids, state_g, own)
        logits_p, state_p, weights_p = plain(ids, state_p, tiled)
        np.testing.assert_allclose(numpy(logits_g), numpy(logits_p), atol=1e-5)
        np.testing.assert_allclose(numpy(weights_g), numpy(weights_p), atol=1e-6)
        np.testing.assert_allclose(numpy(state_g[2]), numpy(state_p[2]), atol=1e-5)

    start = tf.constant(target_in[:, 0])
    kwargs = dict(end_id=1, max_length=tf.constant([5, 3, 4]), beam_size=beam, n_best=2,
                  length_penalty=0.6)
    out_g = beam_search(grouped, first, constants, start, **kwargs)
    out_p = beam_search(plain, first, constants, start, **kwargs)
    np.testing.assert_array_equal(numpy(out_g["tokens"]), numpy(out_p["tokens"]))
    np.testing.assert_allclose(numpy(out_g["score"]), numpy(out_p["score"]), atol=1e-5)
    np.testing.assert_allclose(numpy(out_g["attention"]), numpy(out_p["attention"]), atol=1e-6)


@pytest.mark.parametrize("attention", [a for a in ATTENTION_TYPES if a != "none"])
def test_one_sentence_steps_equal_the_same_sentence_in_a_batch(attention):
    """A static batch of one takes the attention's multiply-and-sum path (no batched matmul):
    the same numbers as the batched path."""
    target_in, memory, state = data(depth=UNITS)  # luong_dot needs the memory as deep as units
    decoder = make(attention, depth=UNITS)
    step = decoder.inference_step()
    batched = decoder.prepare_memory(tf.constant(memory), tf.constant(MASK))
    batched_state = decoder.initial_state(*(tf.constant(s) for s in state))
    for row in range(B):
        alone = decoder.prepare_memory(tf.constant(memory[row : row + 1]), tf.constant(MASK[row : row + 1]))
        assert alone[0].shape[0] == 1  # static: the one-sentence path
        alone_state = decoder.initial_state(*(tf.constant(s[row : row + 1]) for s in state))
        full_state = batched_state
        for t in range(T):
            logits, alone_state, weights = step(target_in[row : row + 1, t], alone_state, alone)
            full, full_state, full_w = step(target_in[:, t], full_state, batched)
            np.testing.assert_allclose(numpy(logits)[0], numpy(full)[row], atol=1e-5)
            np.testing.assert_allclose(numpy(weights)[0], numpy(full_w)[row], atol=1e-6)


def test_greedy_search_decodes_what_the_teacher_forced_call_scores():
    target_in, memory, state = data()
    decoder = make("bahdanau", input_feeding=True, context_gate=True)
    start = target_in[:, 0]
    h0, c0 = (tf.constant(s) for s in state)  # as an encoder hands them over: tensors
    constants = decoder.prepare_memory(tf.constant(memory), tf.constant(MASK))
    out = greedy_search(decoder.step, decoder.initial_state(h0, c0), constants, start,
                        end_id=-1, max_length=T)
    tokens = keras.ops.convert_to_numpy(out["tokens"])
    assert tokens.shape == (B, T)
    # Fed its own greedy output, the training-time call picks the same tokens and attention.
    fed = np.concatenate([start[:, None], tokens[:, :-1]], 1)
    logits, weights = numpy(decoder(fed, memory, MASK, initial_state=state))
    np.testing.assert_array_equal(logits.argmax(-1), tokens)
    np.testing.assert_allclose(out["attention"], weights, atol=1e-5)


def test_teacher_forced_call_under_xla_equals_eager():
    target_in, memory, state = data()
    decoder = make("bahdanau", input_feeding=True, context_gate=True)
    expected = decoder(target_in, memory, MASK, initial_state=state)
    compiled = tf.function(
        lambda *args: decoder(args[0], args[1], args[2], initial_state=args[3]), jit_compile=True
    )
    for a, e in zip(compiled(target_in, memory, MASK, state), expected, strict=True):
        np.testing.assert_allclose(a, e, atol=1e-5)


def test_gradients_reach_every_weight_through_the_teacher_forced_loop():
    # The loop reads the LSTM's kernel in two slices; both must still be trained.
    target_in, memory, state = data()
    decoder = make("bahdanau", input_feeding=True, context_gate=True)
    with tf.GradientTape() as tape:
        logits, _ = decoder(target_in, memory, MASK, initial_state=state, training=True)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            np.roll(target_in, -1, 1), logits, from_logits=True))
    grads = tape.gradient(loss, decoder.trainable_variables)
    for variable, grad in zip(decoder.trainable_variables, grads, strict=True):
        assert grad is not None, variable.path
        grad = keras.ops.convert_to_numpy(tf.convert_to_tensor(grad))
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0, variable.path
    [kernel_grad] = [keras.ops.convert_to_numpy(g) for v, g in
                     zip(decoder.trainable_variables, grads, strict=True)
                     if v is decoder.rnn.cell.kernel]
    assert np.abs(kernel_grad[EMBED:]).max() > 0  # the fed-back vector's rows


# -- attention weights and masks -----------------------------------------------------------------


@pytest.mark.parametrize("attention", [a for a in ATTENTION_TYPES if a != "none"])
def test_attention_weights_are_a_distribution_over_real_source_positions(attention):
    target_in, memory, state = data(depth=UNITS)  # the dot forms need memory depth == units
    decoder = make(attention, depth=UNITS)
    _, weights = numpy(decoder(target_in, memory, MASK, initial_state=state))
    check_distribution(weights, MASK)
    _, step_weights = run_steps(decoder, target_in, memory, MASK, state)
    check_distribution(step_weights, MASK)


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1")  # one real position
@pytest.mark.parametrize(("attention", "input_feeding", "context_gate"), VARIANTS, ids=VARIANT_IDS)
def test_sequence_alone_equals_the_same_sequence_in_a_padded_batch(
    attention, input_feeding, context_gate
):
    target_in, memory, state = data()
    target_in[1, 2:] = 0  # padded targets too (a causal decoder never looks ahead)
    decoder = make(attention, input_feeding=input_feeding, context_gate=context_gate)
    logits, weights = numpy(decoder(target_in, memory, MASK, initial_state=state))
    for row in range(B):
        n = MASK[row].sum()
        steps = 2 if row == 1 else T
        alone_logits, alone_weights = numpy(decoder(
            target_in[row : row + 1, :steps], memory[row : row + 1, :n], np.ones((1, n), bool),
            initial_state=(state[0][row : row + 1], state[1][row : row + 1]),
        ))
        np.testing.assert_allclose(logits[row, :steps], alone_logits[0], atol=1e-5)
        np.testing.assert_allclose(weights[row, :steps, :n], alone_weights[0], atol=1e-5)
        np.testing.assert_array_equal(weights[row, :, n:], 0.0)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_memory_mask_defaults_to_every_position_and_is_honoured(input_feeding):
    target_in, memory, state = data()
    decoder = make("luong_general", input_feeding=input_feeding)
    unmasked = numpy(decoder(target_in, memory, initial_state=state))
    everything = numpy(decoder(target_in, memory, np.ones_like(MASK), initial_state=state))
    for a, e in zip(unmasked, everything, strict=True):
        np.testing.assert_allclose(a, e, atol=1e-6)
    masked_logits, _ = numpy(decoder(target_in, memory, MASK, initial_state=state))
    np.testing.assert_allclose(masked_logits[0], unmasked[0][0], atol=1e-6)  # row 0: no padding
    assert not np.allclose(masked_logits[1:], unmasked[0][1:], atol=1e-3)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_without_attention_the_memory_is_not_read(input_feeding):
    target_in, memory, state = data()
    decoder = make("none", input_feeding=input_feeding)
    assert decoder.attention is None
    logits, _ = numpy(decoder(target_in, memory, MASK, initial_state=state))
    other, _ = numpy(decoder(target_in, -memory, np.ones_like(MASK), initial_state=state))
    np.testing.assert_allclose(other, logits, atol=1e-6)
    # ...but the initial state is.
    moved, _ = numpy(decoder(target_in, memory, MASK, initial_state=(-state[0], state[1])))
    assert not np.allclose(moved, logits, atol=1e-3)


# -- serialisation -------------------------------------------------------------------------------


SERIALIZED = [
    dict(attention="bahdanau", dropout=0.2, input_feeding=True, context_gate=True,
         variational_dropout=True),
    dict(attention="luong_concat", dropout=0.0, input_feeding=False, context_gate=False,
         variational_dropout=False),
    dict(attention="none", dropout=0.1, input_feeding=False, context_gate=False,
         variational_dropout=True),
]


def assert_same_outputs(restored, decoder):
    target_in, memory, state = data()
    for a, e in zip(restored(target_in, memory, MASK, initial_state=state),
                    decoder(target_in, memory, MASK, initial_state=state), strict=True):
        np.testing.assert_allclose(a, e, atol=1e-6)
    np.testing.assert_allclose(run_steps(restored, target_in, memory, MASK, state)[0],
                               run_steps(decoder, target_in, memory, MASK, state)[0], atol=1e-6)


@pytest.mark.parametrize("overrides", SERIALIZED, ids=[o["attention"] for o in SERIALIZED])
def test_config_round_trip_registered_names_and_weights(overrides):
    assert keras.saving.get_registered_name(AttentiveLSTMDecoder) == "zoo>AttentiveLSTMDecoder"
    assert keras.saving.get_registered_object("zoo>AttentiveLSTMDecoder") is AttentiveLSTMDecoder
    decoder = make(build=False, **overrides)
    config = decoder.get_config()
    parameters = inspect.signature(AttentiveLSTMDecoder.__init__).parameters
    arguments = [n for n, p in parameters.items() if n != "self" and p.kind != p.VAR_KEYWORD]
    assert not [n for n in arguments if n not in config]
    for name, value in overrides.items():
        if name != "attention":
            assert config[name] == value, name
    if overrides["attention"] == "none":
        assert config["attention"] is None
    else:  # the attention layer travels as a nested object, by its registered name
        registered = config["attention"]["registered_name"]
        assert registered.startswith("zoo>")
        assert keras.saving.get_registered_object(registered) is type(decoder.attention)
        assert config["attention"]["config"] == decoder.attention.get_config()
    rebuilt = AttentiveLSTMDecoder.from_config(config)
    assert rebuilt.get_config() == config
    assert type(rebuilt.attention) is type(decoder.attention)

    serialized = keras.saving.serialize_keras_object(decoder)
    assert serialized["registered_name"] == "zoo>AttentiveLSTMDecoder"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is AttentiveLSTMDecoder and restored.get_config() == config

    # Built the way the models build it, then given the weights: the same outputs.
    for layer in (decoder, rebuilt, restored):
        layer.build((None, None), (None, None, DEPTH))
    for layer in (rebuilt, restored):
        copy_weights(decoder, layer)
        assert_same_outputs(layer, decoder)


def test_a_built_decoder_without_attention_round_trips_with_its_build_config():
    decoder = make("none")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(decoder))
    assert restored.built
    copy_weights(decoder, restored)
    assert_same_outputs(restored, decoder)


@pytest.mark.parametrize("attention", ["bahdanau", "luong_general"])
def test_a_built_decoder_with_attention_round_trips_with_its_build_config(attention):
    decoder = make(attention)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(decoder))
    assert restored.built
    copy_weights(decoder, restored)
    assert_same_outputs(restored, decoder)


# -- mixed precision -----------------------------------------------------------------------------


@pytest.mark.parametrize(("attention", "input_feeding", "context_gate"),
                         [("bahdanau", True, True), ("luong_general", False, False),
                          ("none", True, False)],
                         ids=["bahdanau-feed-gate", "luong_general-nofeed", "none-feed"])
def test_mixed_float16_builds_runs_and_is_finite(mixed_float16, attention, input_feeding,
                                                 context_gate):
    target_in, memory, state = data()
    decoder = make(attention, input_feeding=input_feeding, context_gate=context_gate)
    assert decoder.compute_dtype == "float16"
    assert all(w.dtype == "float32" for w in decoder.weights)
    # Float32 inputs, as a caller outside an autocast scope would pass them.
    logits, weights = numpy(decoder(target_in, memory, MASK, initial_state=state))
    assert logits.dtype == weights.dtype == "float32"
    assert np.isfinite(logits).all() and np.isfinite(weights).all()
    if attention != "none":
        check_distribution(weights, MASK)
    # The steps, on float16 memory and state as a float16 encoder hands them over.
    half = lambda x: keras.ops.cast(x, "float16")  # noqa: E731
    step_logits, step_weights = run_steps(decoder, target_in, half(memory), MASK,
                                          (half(state[0]), half(state[1])))
    assert step_logits.dtype == "float32" and np.isfinite(step_logits).all()
    np.testing.assert_allclose(step_logits, logits, atol=2e-2)
    np.testing.assert_allclose(step_weights, weights, atol=2e-2)
    assert decoder.input_table().dtype == "float16"
    for table in (None, decoder.input_table()):
        fast = decoder.inference_step(input_table=table)
        constants = decoder.prepare_memory(half(memory), MASK)
        fast_state = decoder.initial_state(half(state[0]), half(state[1]))
        for t in range(T):
            fast_logits, fast_state, _ = fast(target_in[:, t], fast_state, constants)
            assert fast_logits.dtype == "float32"
            np.testing.assert_allclose(numpy(fast_logits), step_logits[:, t], atol=2e-2)


# -- dropout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variational_dropout", [False, True])
@pytest.mark.parametrize("input_feeding", [True, False])
def test_dropout_is_inactive_at_inference(input_feeding, variational_dropout):
    target_in, memory, state = data()
    decoder = make("bahdanau", dropout=0.5, input_feeding=input_feeding,
                   variational_dropout=variational_dropout)
    assert decoder.drop.noise_shape == sequence_noise_shape(variational_dropout)
    first = numpy(decoder(target_in, memory, MASK, initial_state=state, training=False))
    for again in (decoder(target_in, memory, MASK, initial_state=state, training=False),
                  decoder(target_in, memory, MASK, initial_state=state)):
        for a, e in zip(numpy(again), first, strict=True):
            np.testing.assert_array_equal(a, e)
    # The same as no dropout at all, and as the inference steps.
    plain = make("bahdanau", input_feeding=input_feeding)
    copy_weights(decoder, plain)
    np.testing.assert_allclose(plain(target_in, memory, MASK, initial_state=state)[0], first[0],
                               atol=1e-6)
    np.testing.assert_allclose(run_steps(decoder, target_in, memory, MASK, state)[0], first[0],
                               atol=1e-5)
    # ...while training does drop.
    trained, _ = decoder(target_in, memory, MASK, initial_state=state, training=True)
    assert not np.allclose(trained, first[0], atol=1e-3)
