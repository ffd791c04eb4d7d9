"""Tests for zoo.decoding on toy decoders whose best sequences are known or enumerable."""

import doctest
import itertools

import numpy as np
import pytest
import tensorflow as tf

from zoo import decoding
from zoo.decoding import beam_search, greedy_search, tile_for_beam

END = 1


class PrefixModel:
    """A toy decoder: the next-token distribution and the attention are table rows per prefix.

    The state carries the whole prefix (start token included) as a base-(V + 1) code, so a
    beam state that is reordered wrongly changes the distributions. The table only covers
    prefixes of up to `depth` tokens after the start token: a search that runs longer fails
    on an out-of-range gather.

    Args:
        vocab_size: V.
        depth: the longest prefix covered, in generated tokens.
        probs: dict prefix tuple (start token first) -> next-token probabilities.
        attention: dict prefix tuple -> attention row produced when reading that prefix.
        source_length: S.
        seed: None for uniform distributions and attention outside `probs`/`attention`, or a
            seed for random ones.
    """

    def __init__(self, vocab_size, depth, probs=None, attention=None, source_length=3, seed=None):
        self.vocab_size = vocab_size
        size = (vocab_size + 1) ** (depth + 1)
        if seed is None:
            logits = np.zeros([size, vocab_size])
            rows = np.full([size, source_length], 0.25)
        else:
            rng = np.random.RandomState(seed)
            logits = rng.randn(size, vocab_size) * 2.0
            rows = rng.uniform(0.05, 0.6, [size, source_length])
        for prefix, p in (probs or {}).items():
            logits[self.code(prefix)] = np.log(p)
        for prefix, row in (attention or {}).items():
            rows[self.code(prefix)] = row
        self.logits = logits.astype(np.float32)
        self.rows = rows.astype(np.float32)

    def code(self, prefix):
        code = 0
        for token in prefix:
            code = code * (self.vocab_size + 1) + token + 1
        return code

    def step_fn(self, ids, state, constants):
        code = state["code"] * (self.vocab_size + 1) + ids + 1
        logits = tf.gather(self.logits, code)
        attention = tf.gather(self.rows, code) * constants["mask"]
        new_state = {"code": code, "steps": (state["steps"][0] + 1.0,)}
        return logits, new_state, attention

    def inputs(self, starts, masks):
        """(initial_state, constants, start_ids) for a batch."""
        starts = tf.constant(starts, tf.int32)
        batch = len(masks)
        state = {"code": tf.zeros([batch], tf.int32), "steps": (tf.zeros([batch, 1]),)}
        return state, {"mask": tf.constant(masks, tf.float32)}, starts

    def greedy(self, starts, masks, max_length):
        return _numpy(greedy_search(self.step_fn, *self.inputs(starts, masks), END, max_length))

    def beam(self, starts, masks, max_length, **kwargs):
        state, constants, starts = self.inputs(starts, masks)
        out = beam_search(self.step_fn, state, constants, starts, END, max_length, **kwargs)
        return _numpy(out)


def _numpy(out):
    return {key: value.numpy() for key, value in out.items()}


def _gnmt_score(log_prob, length, rows, alpha, beta):
    coverage = np.sum(rows, axis=0)
    penalty = beta * np.sum(np.log(np.minimum(coverage[coverage > 0], 1.0)))
    return log_prob / ((5.0 + length) ** alpha / 6.0**alpha) + penalty


def brute_force(model, start, mask, max_length, alpha=0.0, beta=0.0):
    """Every hypothesis up to max_length, ranked like beam_search: finished ones first.

    Returns a list of (tokens, log_prob, attention rows, score, finished).
    """
    mask = np.asarray(mask, np.float64)
    vocab_size = model.vocab_size
    hypotheses = []
    for length in range(1, max_length + 1):
        for tokens in itertools.product(range(vocab_size), repeat=length):
            if END in tokens[:-1]:
                continue
            finished = tokens[-1] == END
            if not finished and length < max_length:
                continue
            log_prob, rows = 0.0, []
            for j, token in enumerate(tokens):
                code = model.code((start,) + tokens[:j])
                logits = model.logits[code].astype(np.float64)
                log_prob += logits[token] - np.log(np.sum(np.exp(logits)))
                rows.append(model.rows[code] * mask)
            score = _gnmt_score(log_prob, length, np.array(rows), alpha, beta)
            hypotheses.append((list(tokens), log_prob, np.array(rows), score, finished))
    return sorted(hypotheses, key=lambda h: (not h[4], -h[3]))


def _pad(tokens, length):
    return np.array(tokens + [0] * (length - len(tokens)))


def _pad_rows(rows, length):
    return np.concatenate([rows, np.zeros([length - len(rows), rows.shape[1]])], axis=0)


# Greedy takes 2 (p=.5) and then needs three tokens for p = .5 * .34 * .9 = .153, while
# 0 (p=.45) ends at once for p = .45 * .9 = .405: beam search must find it.
TRAP = {
    (0,): [0.45, 0.05, 0.5],
    (0, 2): [0.34, 0.33, 0.33],
    (0, 2, 0): [0.05, 0.9, 0.05],
    (0, 0): [0.05, 0.9, 0.05],
}
MASK3 = [[1.0, 1.0, 0.0]]
PENALISED = {"beam_size": 3, "length_penalty": 0.6, "coverage_penalty": 0.2, "n_best": 2}


def test_tile_for_beam_is_batch_major():
    nest = {"a": tf.constant([[1, 2], [3, 4]]), "b": (tf.constant([5, 6]), None)}
    tiled = tile_for_beam(nest, 3)
    np.testing.assert_array_equal(tiled["a"], [[1, 2]] * 3 + [[3, 4]] * 3)
    np.testing.assert_array_equal(tiled["b"][0], [5, 5, 5, 6, 6, 6])
    assert tiled["b"][1] is None


def test_greedy_hand_worked():
    probs = {(0,): [0.1, 0.2, 0.7], (0, 2): [0.6, 0.3, 0.1], (0, 2, 0): [0.1, 0.8, 0.1]}
    rows = {(0,): [0.25, 0.75, 0.5], (0, 2): [0.5, 0.5, 0.5], (0, 2, 0): [1.0, 0.0, 0.5]}
    model = PrefixModel(3, depth=3, probs=probs, attention=rows)
    out = model.greedy([0], MASK3, max_length=10)
    # Stops early: three steps, not ten.
    np.testing.assert_array_equal(out["tokens"], [[2, 0, END]])
    np.testing.assert_array_equal(out["lengths"], [2])
    np.testing.assert_allclose(out["score"], [np.log(0.7) + np.log(0.6) + np.log(0.8)], rtol=1e-6)
    # The padded source position gets no attention.
    np.testing.assert_array_equal(out["attention"], [[[0.25, 0.75, 0], [0.5, 0.5, 0], [1, 0, 0]]])


def test_beam_finds_what_greedy_misses():
    model = PrefixModel(3, depth=4, probs=TRAP)
    greedy = model.greedy([0], MASK3, max_length=4)
    np.testing.assert_array_equal(greedy["tokens"], [[2, 0, END]])
    np.testing.assert_allclose(greedy["score"], [np.log(0.5 * 0.34 * 0.9)], rtol=1e-6)

    best = brute_force(model, 0, MASK3[0], max_length=4)[0]
    assert best[0] == [0, END]
    out = model.beam([0], MASK3, max_length=4, beam_size=2)
    assert out["tokens"].shape[-1] == 2  # stopped once no alive hypothesis could beat [0, END]
    np.testing.assert_array_equal(out["tokens"][0, 0], best[0])
    np.testing.assert_array_equal(out["lengths"], [[1]])
    np.testing.assert_allclose(out["log_prob"], [[best[1]]], rtol=1e-6)
    np.testing.assert_allclose(out["score"], [[best[1]]], rtol=1e-6)
    np.testing.assert_allclose(out["attention"][0, 0], best[2], rtol=1e-6)


@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (0.8, 0.5)])
def test_exhaustive_beam_matches_brute_force(alpha, beta):
    # With V=3 and max_length=4 no sentence has more than 8 * 3 expansions, so beam 24 keeps
    # every hypothesis and its n_best must be the enumeration's.
    model = PrefixModel(3, depth=4, source_length=4, seed=1)
    starts = [0, 2, 0]
    masks = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    out = model.beam(
        starts, masks, 4, beam_size=24, length_penalty=alpha, coverage_penalty=beta, n_best=6,
        exact=True,
    )
    steps = out["tokens"].shape[-1]
    for b, (start, mask) in enumerate(zip(starts, masks, strict=True)):
        expected = brute_force(model, start, mask, 4, alpha, beta)[:6]
        assert all(h[4] for h in expected)
        for n, (tokens, log_prob, rows, score, _) in enumerate(expected):
            np.testing.assert_array_equal(out["tokens"][b, n], _pad(tokens, steps))
            assert out["lengths"][b, n] == len(tokens) - 1
            np.testing.assert_allclose(out["log_prob"][b, n], log_prob, rtol=1e-5)
            np.testing.assert_allclose(out["score"][b, n], score, rtol=1e-5)
            np.testing.assert_allclose(out["attention"][b, n], _pad_rows(rows, steps), atol=1e-6)
    assert np.all(np.diff(out["score"], axis=1) <= 0)


def test_beam_size_one_is_greedy():
    model = PrefixModel(4, depth=6, source_length=4, seed=2)
    starts = [0, 2, 3, 0]
    masks = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]]
    greedy = model.greedy(starts, masks, 6)
    beam = model.beam(starts, masks, 6, beam_size=1)
    np.testing.assert_array_equal(beam["tokens"][:, 0], greedy["tokens"])
    np.testing.assert_array_equal(beam["lengths"][:, 0], greedy["lengths"])
    np.testing.assert_array_equal(beam["attention"][:, 0], greedy["attention"])
    np.testing.assert_array_equal(beam["score"][:, 0], greedy["score"])
    np.testing.assert_array_equal(beam["log_prob"][:, 0], greedy["score"])


def test_n_best_is_sorted_and_bounded():
    model = PrefixModel(4, depth=6, source_length=4, seed=3)
    out = model.beam([0, 2], [[1, 1, 1, 1], [1, 1, 0, 0]], 6, beam_size=4, n_best=4)
    assert out["tokens"].shape[:2] == (2, 4)
    assert np.all(np.diff(out["score"], axis=1) <= 0)
    with pytest.raises(ValueError, match="n_best must be .* received n_best=5 with beam_size=4"):
        model.beam([0], [[1, 1, 1, 1]], 6, beam_size=4, n_best=5)
    with pytest.raises(ValueError, match="beam_size must be a Python int >= 1"):
        model.beam([0], [[1, 1, 1, 1]], 6, beam_size=0)
    with pytest.raises(ValueError, match="coverage_penalty must be >= 0"):
        model.beam([0], [[1, 1, 1, 1]], 6, coverage_penalty=-0.1)


def test_length_penalty_prefers_longer():
    # [END] has p=.5; [2, END] has p=.48 * .96 = .4608, which wins once lengths are normalised.
    probs = {(0,): [0.02, 0.5, 0.48], (0, 2): [0.02, 0.96, 0.02]}
    model = PrefixModel(3, depth=4, probs=probs)
    plain = model.beam([0], MASK3, 4, beam_size=2)
    np.testing.assert_array_equal(plain["tokens"][0, 0, :1], [END])
    np.testing.assert_allclose(plain["score"], [[np.log(0.5)]], rtol=1e-6)

    out = model.beam([0], MASK3, 4, beam_size=2, length_penalty=1.0)
    np.testing.assert_array_equal(out["tokens"][0, 0, :2], [2, END])
    np.testing.assert_allclose(out["log_prob"], [[np.log(0.4608)]], rtol=1e-6)
    np.testing.assert_allclose(out["score"], [[np.log(0.4608) / (7 / 6)]], rtol=1e-6)
    assert brute_force(model, 0, MASK3[0], 4, alpha=1.0)[0][0] == [2, END]


def test_a_sentence_stops_when_its_best_alive_hypothesis_cannot_win_at_the_next_step():
    # [END] (p .6) scores log .6 = -0.51 at length 1. The alive [2] (log .4 = -0.92) ended at the
    # next step scores at most -0.92 / lp(2) = -0.79: the search stops after one step. The exact
    # bound, -0.92 / lp(6) = -0.50 with max_length 6, keeps it running a step longer, to the
    # same answer.
    probs = {(0,): [1e-6, 0.6, 0.4 - 1e-6]}
    model = PrefixModel(3, depth=6, probs=probs)
    default = model.beam([0], MASK3, 6, beam_size=2, length_penalty=1.0)
    exact = model.beam([0], MASK3, 6, beam_size=2, length_penalty=1.0, exact=True)
    assert default["tokens"].shape[-1] == 1 and exact["tokens"].shape[-1] == 2
    np.testing.assert_array_equal(default["tokens"][0, 0, :1], exact["tokens"][0, 0, :1])
    np.testing.assert_allclose(default["score"], [[np.log(0.6)]], rtol=1e-6)
    np.testing.assert_allclose(exact["score"], default["score"], rtol=1e-6)


def test_coverage_penalty_hand_worked():
    probs = {(0,): [0.05, 0.05, 0.9], (0, 2): [0.05, 0.9, 0.05]}
    rows = {(0,): [0.25, 0.25, 0.5, 0.7], (0, 2): [0.5, 0.25, 0.625, 0.7]}
    model = PrefixModel(3, depth=2, probs=probs, attention=rows, source_length=4)
    # The last source position is padding: its zero coverage must not count as log(0).
    out = model.beam([0], [[1, 1, 1, 0]], 2, beam_size=2, coverage_penalty=0.5)
    np.testing.assert_array_equal(out["tokens"], [[[2, END]]])
    # Coverage [0.75, 0.5, 1.125 -> 1.0].
    penalty = 0.5 * (np.log(0.75) + np.log(0.5))
    np.testing.assert_allclose(out["log_prob"], [[2 * np.log(0.9)]], rtol=1e-6)
    np.testing.assert_allclose(out["score"], [[2 * np.log(0.9) + penalty]], rtol=1e-6)


def test_max_length_caps_unfinished_sentences():
    probs = {(0,): [0.5, 1e-6, 0.5], (0, 0): [0.7, 1e-6, 0.3], (0, 2): [0.2, 1e-6, 0.8]}
    model = PrefixModel(3, depth=2, probs=probs)
    greedy = model.greedy([0], MASK3, 2)
    np.testing.assert_array_equal(greedy["tokens"], [[0, 0]])
    np.testing.assert_array_equal(greedy["lengths"], [2])
    beam = model.beam([0], MASK3, tf.constant(2), beam_size=2, n_best=2, length_penalty=0.5)
    # No hypothesis ended: the alive ones come back, best first.
    np.testing.assert_array_equal(beam["tokens"], [[[2, 2], [0, 0]]])
    np.testing.assert_array_equal(beam["lengths"], [[2, 2]])
    np.testing.assert_allclose(beam["log_prob"], [np.log([0.4, 0.35])], rtol=1e-5)
    np.testing.assert_allclose(beam["score"], [np.log([0.4, 0.35]) / (7 / 6) ** 0.5], rtol=1e-5)


def test_batch_matches_each_sentence_alone():
    model = PrefixModel(4, depth=6, source_length=4, seed=4)
    starts = [0, 2, 3, 0]
    masks = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]]
    for search in (model.greedy, lambda s, m, n: model.beam(s, m, n, **PENALISED)):
        batch = search(starts, masks, 6)
        steps = set()
        for b in range(len(starts)):
            alone = search(starts[b : b + 1], masks[b : b + 1], 6)
            t = alone["tokens"].shape[-1]
            steps.add(t)
            for key in alone:
                got = batch[key][b]
                if key in ("tokens", "attention"):
                    # Steps run for longer sentences of the batch are padding.
                    assert not np.any(got[..., t:, :] if key == "attention" else got[..., t:])
                    got = got[..., :t, :] if key == "attention" else got[..., :t]
                if key in ("score", "log_prob"):
                    # TF's CPU exp and log vectorise by position in the buffer, so the last bit
                    # of a log-softmax row depends on how many rows the batch has.
                    np.testing.assert_allclose(got, alone[key][0], rtol=1e-6, err_msg=key)
                else:
                    np.testing.assert_array_equal(got, alone[key][0], err_msg=key)
        assert len(steps) > 1, "the sentences should end at different steps"


@pytest.mark.parametrize("beam", [1, 3])
def test_per_sentence_limits_decode_each_sentence_as_alone(beam):
    """A limit per sentence: each sentence of the batch (none ends: uniform distributions, the
    end token never best) stops at its own limit, and decodes exactly as alone with it."""
    model = PrefixModel(3, depth=5, source_length=3, seed=7)
    model.logits[:, END] = -np.inf  # never the end: every sentence runs to its limit
    starts, masks, limits = [0, 2, 0], [MASK3[0]] * 3, [2, 5, 3]

    def search(s, m, n):
        if beam == 1:
            return model.greedy(s, m, tf.constant(n, tf.int32))
        return model.beam(s, m, tf.constant(n, tf.int32), beam_size=beam, n_best=2)

    batch = search(starts, masks, limits)
    assert batch["tokens"].shape[-1] == max(limits)
    for b, limit in enumerate(limits):
        alone = search(starts[b : b + 1], masks[b : b + 1], [limit])
        lengths = batch["lengths"][b]
        np.testing.assert_array_equal(lengths, np.full_like(lengths, limit))
        tokens = batch["tokens"][b]
        assert not np.any(tokens[..., limit:])  # nothing generated past its own limit
        np.testing.assert_array_equal(tokens[..., :limit], alone["tokens"][0])
        np.testing.assert_allclose(batch["score"][b], alone["score"][0], rtol=1e-5)
        # The same as one limit for all when that limit is this sentence's.
        same = search(starts[b : b + 1], masks[b : b + 1], limit)
        np.testing.assert_array_equal(same["tokens"][0], alone["tokens"][0])


def test_without_attention():
    model = PrefixModel(3, depth=4, probs=TRAP, source_length=0)
    mask = [[]]
    greedy = model.greedy([0], mask, 4)
    assert greedy["attention"].shape == (1, 3, 0)
    beam = model.beam([0], mask, 4, beam_size=2, coverage_penalty=0.3)
    assert beam["attention"].shape == (1, 1, 2, 0)
    np.testing.assert_allclose(beam["score"], [[np.log(0.405)]], rtol=1e-6)


def test_in_tf_function_with_dynamic_batch_and_max_length():
    model = PrefixModel(4, depth=6, source_length=4, seed=4)
    signature = [
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([], tf.int32),
    ]

    @tf.function(input_signature=signature)
    def decode(starts, mask, max_length):
        batch = tf.shape(starts)[0]
        state = {"code": tf.zeros([batch], tf.int32), "steps": (tf.zeros([batch, 1]),)}
        constants = {"mask": mask}
        greedy = greedy_search(model.step_fn, state, constants, starts, END, max_length)
        beam = beam_search(model.step_fn, state, constants, starts, END, max_length, **PENALISED)
        return greedy, beam

    greedy_out, beam_out = decode.get_concrete_function().structured_outputs
    assert greedy_out["tokens"].shape.as_list() == [None, None]
    assert beam_out["attention"].shape.as_list() == [None, 2, None, None]

    starts, masks = [0, 2, 3], [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    for max_length in (6, 2):
        greedy, beam = decode(tf.constant(starts), tf.constant(masks, tf.float32), max_length)
        eager_greedy = model.greedy(starts, masks, max_length)
        eager_beam = model.beam(starts, masks, max_length, **PENALISED)
        assert beam["tokens"].shape[-1] <= max_length
        for got, want in ((greedy, eager_greedy), (beam, eager_beam)):
            for key in want:
                np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-6, err_msg=key)


def test_docstring_examples():
    result = doctest.testmod(decoding, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def _eight_sentences(seed):
    """`(constants, state, limits, start)` of eight toy sentences with step limits 1 to 8, for
    the step-counting toy decoders of the compaction tests."""
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(8, 6)), tf.float32),
            tf.constant(rng.normal(size=(8, 2)), tf.float32),
            tf.constant([8, 1, 7, 2, 6, 3, 5, 4], tf.int32),
            tf.constant([0, 1, 2, 0, 1, 2, 0, 1], tf.int32))


def test_greedy_stops_computing_finished_sentences():
    """A batch's step shrinks as its sentences end (compaction): eight sentences with limits 1
    to 8 cost far fewer step rows than 8 x 8, and decode as each would alone."""
    seen = []

    def step_fn(ids, state, constants):
        seen.append(int(ids.shape[0]))
        logits = tf.one_hot(ids % 2 + 3, 6) * 9.0 + constants[:, :6]  # never the end (5)
        return logits, state + 1.0, tf.nn.softmax(constants[:, :4] * state[:, :1])

    constants, state, limits, start = _eight_sentences(seed=0)
    out = greedy_search(step_fn, state, constants, start, end_id=5, max_length=limits)
    assert len(seen) == 8 and seen[0] == 8 and seen[-1] < 8 and sum(seen) < 8 * 8
    for b in range(8):
        seen.clear()
        alone = greedy_search(step_fn, state[b : b + 1], constants[b : b + 1], start[b : b + 1],
                              end_id=5, max_length=limits[b : b + 1])
        n = int(limits[b])
        assert alone["tokens"].shape[1] == n  # ran to its own limit
        np.testing.assert_array_equal(out["tokens"][b, :n], alone["tokens"][0])
        assert not np.any(out["tokens"][b, n:]) and not np.any(out["attention"][b, n:])
        np.testing.assert_allclose(out["attention"][b, :n], alone["attention"][0], atol=1e-6)
        np.testing.assert_allclose(out["score"][b], alone["score"][0], rtol=1e-6)
        assert int(out["lengths"][b]) == int(alone["lengths"][0])


def test_beam_search_stops_computing_stopped_sentences():
    """Sentences that have stopped leave the beam's step batch, their n-best lists kept at
    their places: eight sentences with limits 1 to 8 cost fewer step rows than 8 x 8 x beam, and
    each decodes (n-best tokens, attention, scores, lengths) as it would alone."""
    seen = []

    def step_fn(ids, state, constants):
        seen.append(int(ids.shape[0]))
        # Scores that depend on the step (the state counts steps): no two orders of the same
        # tokens tie, so the n-best order is the same in any batch.
        logits = tf.one_hot(ids % 2 + 3, 6) * 1.5 + constants[:, :6] * (1.0 + 0.37 * state[:, :1])
        return logits, state + 1.0, tf.nn.softmax(constants[:, :4] * state[:, :1])

    constants, state, limits, start = _eight_sentences(seed=1)
    kwargs = dict(end_id=5, beam_size=3, n_best=2, length_penalty=0.6)
    out = beam_search(step_fn, state, constants, start, max_length=limits, **kwargs)
    assert seen[0] == 8 * 3 and seen[-1] < 8 * 3 and sum(seen) < 8 * 8 * 3
    for b in range(8):
        alone = beam_search(step_fn, state[b : b + 1], constants[b : b + 1], start[b : b + 1],
                            max_length=limits[b : b + 1], **kwargs)
        n = alone["tokens"].shape[-1]
        assert not np.any(out["tokens"][b, :, n:]) and not np.any(out["attention"][b, :, n:])
        np.testing.assert_array_equal(out["tokens"][b, :, :n], alone["tokens"][0])
        np.testing.assert_array_equal(out["lengths"][b], alone["lengths"][0])
        np.testing.assert_allclose(out["attention"][b, :, :n], alone["attention"][0], atol=1e-6)
        np.testing.assert_allclose(out["score"][b], alone["score"][0], rtol=1e-5)
        np.testing.assert_allclose(out["log_prob"][b], alone["log_prob"][0], rtol=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
def test_a_batch_without_attention_decodes_as_each_sentence_alone(beam):
    """Depth-0 attention (a model without attention) through the batch compaction, which
    writes rows into an empty tensor."""
    model = PrefixModel(4, depth=5, source_length=0, seed=3)
    starts, limits = [0, 1, 2], [2, 4, 3]
    mask = [[]] * 3

    def search(s, m, n):
        n = tf.constant(n, tf.int32)
        return model.greedy(s, m, n) if beam == 1 else model.beam(s, m, n, beam_size=beam)

    batch = search(starts, mask, limits)
    assert batch["attention"].shape[-1] == 0
    for b in range(3):
        alone = search(starts[b : b + 1], mask[b : b + 1], limits[b : b + 1])
        n = alone["tokens"].shape[-1]
        np.testing.assert_array_equal(batch["tokens"][b, ..., :n], alone["tokens"][0])
        np.testing.assert_allclose(batch["score"][b], alone["score"][0], rtol=1e-5)


@pytest.mark.parametrize("width,k", [(16000, 8), (20000, 10), (2048, 1), (4100, 3)])
def test_chunked_top_k_is_top_k_ties_and_minus_infinity_included(width, k):
    """Beam search's top-k over `beam x vocabulary` rows gives tf.math.top_k's values and
    indices: rows with many ties (few distinct values, so ties straddle chunks), rows of -inf
    with fewer finite values than k, widths that are not a whole number of chunks."""
    rng = np.random.default_rng(width + k)
    rows = [
        rng.normal(size=width),
        rng.integers(0, 3, size=width).astype(float),  # ties everywhere
        np.where(rng.random(width) < 0.001, rng.normal(size=width), -np.inf),
        np.full(width, -np.inf),
        np.where(np.arange(width) >= width - 5, 1.0, 0.0),  # the best ones in the last chunk
    ]
    values = tf.constant(np.stack(rows), tf.float32)
    want = tf.math.top_k(values, k)
    for got in (decoding.top_k(values, k), tf.function(lambda v: decoding.top_k(v, k))(values)):
        assert got[1].shape == (len(rows), k)
        np.testing.assert_array_equal(got[0].numpy(), want[0].numpy())
        np.testing.assert_array_equal(got[1].numpy(), want[1].numpy())
