"""Greedy and beam search, in-graph, driven by a decoder's step function.

Every decoder in the zoo exposes one decoding step as

    logits, new_state, attention = step_fn(ids, state, constants)

- `ids`: int32 `(N,)`, the previous token of each hypothesis.
- `state`: a nest (tuple, list, dict) of tensors with leading dim `N` (e.g. LSTM `h`, `c` and
  the input-feed vector); it is reordered with `tf.gather` as the beam moves.
- `constants`: a nest of tensors with leading dim `N` that never change while decoding (encoder
  outputs, projected keys, source mask). A step function with a true `grouped` attribute takes
  them once per sentence instead: leading dim `N / G`, for `G` consecutive rows of `ids` and
  `state` (a sentence's beam), so `beam_search` does not tile them and the step reads each
  sentence's memory once for all its hypotheses.
- `logits`: float `(N, V)`, unnormalised; the search applies `log_softmax`.
- `attention`: float `(N, S)`, with `S` the source length or number of image regions (`S` may be
  0 for a model without attention). Attention on padded source positions must be exactly 0.

Both searches are written with TensorFlow ops only (`tf.while_loop`, `tf.gather`,
`tf.math.top_k`, `tf.TensorArray`), so they run eagerly and inside a `tf.function` with a `None`
batch dimension and a tensor `max_length` (the SavedModel export). Their outputs per step go to
TensorArrays, not to growing tensors, so a search costs linear time in its length; beam search
keeps each step's tokens, parent slots and attention and reads its n-best hypotheses back through
the parents at the end, instead of reordering every hypothesis' history at every step. A static
batch of 1 (a TFLite model) decodes greedily with a plain loop of builtin ops.

`max_length` is one limit for every sentence or one per sentence (`(batch_size,)`): with
per-sentence limits a sentence decodes the same alone and in any batch, whatever the other
sentences' lengths. Callers pass `(batch_size, ...)` state and constants to both; `beam_search`
tiles them itself (the constants only for a step that is not grouped).
"""

import tensorflow as tf

__all__ = ["beam_search", "greedy_search", "tile_for_beam", "top_k"]


def tile_for_beam(nest, beam_size):
    """Repeats each tensor of a nest `beam_size` times along its first axis.

    The result is batch-major: rows `b * beam_size` to `b * beam_size + beam_size - 1` are
    copies of row `b`, which is the layout `beam_search` uses for its hypotheses.

    Args:
        nest: a tensor or a nest of tensors of shape `(batch_size, ...)`. `None` leaves are kept.
        beam_size: Python int, the number of copies of each row.

    Returns:
        The same nest with tensors of shape `(batch_size * beam_size, ...)`.

    Example:

    >>> tile_for_beam(tf.constant([[1], [2]]), 2)[:, 0].numpy()
    array([1, 1, 2, 2], dtype=int32)
    """
    return tf.nest.map_structure(
        lambda x: None if x is None else tf.repeat(x, beam_size, axis=0), nest
    )


def greedy_search(step_fn, initial_state, constants, start_ids, end_id, max_length):
    """Decodes by taking the most probable token at every step.

    Decoding stops as soon as every sentence has emitted `end_id`, or after `max_length`
    steps. Ties between tokens go to the lowest id. In a batch of more than one sentence, those
    that have finished leave the step's batch (it is compacted whenever a quarter of its rows
    have finished), so a batch costs about its sentences' total length, not its longest times
    its size.

    Args:
        step_fn: callable `(ids, state, constants) -> (logits, new_state, attention)`, see the
            module docstring.
        initial_state: nest of tensors of shape `(batch_size, ...)`, the decoder's first state.
        constants: nest of tensors of shape `(batch_size, ...)` passed unchanged to `step_fn`.
        start_ids: int32 tensor of shape `(batch_size,)`, the first input token of each sentence.
        end_id: Python int or scalar tensor, the end-of-sequence token.
        max_length: Python int, scalar tensor, or int32 `(batch_size,)` tensor: the most tokens
            generated per sentence (the end token included), for all or for each sentence.

    Returns:
        A dict with
        - `"tokens"`: int32 `(batch_size, T)`, the generated ids without the start token; the end
          token is included where it was emitted and later positions are 0. `T` is the number of
          steps run, at most the largest `max_length`.
        - `"lengths"`: int32 `(batch_size,)`, the number of tokens before the end token (its
          `max_length` for a sentence that did not end).
        - `"attention"`: float32 `(batch_size, T, S)`, 0 after the end token.
        - `"score"`: float32 `(batch_size,)`, the sum of the log-probabilities of the emitted
          tokens, the end token included.

    Example:

    >>> def step_fn(ids, state, constants):
    ...     logits = tf.one_hot((ids + 1) % 3, 3) * 5.0
    ...     return logits, state, tf.zeros([tf.shape(ids)[0], 0])
    >>> out = greedy_search(step_fn, (), (), tf.constant([0]), end_id=2, max_length=5)
    >>> out["tokens"].numpy()
    array([[1, 2]], dtype=int32)
    """
    start_ids = tf.cast(start_ids, tf.int32)
    end_id = tf.cast(end_id, tf.int32)
    batch_size = tf.shape(start_ids)[0]
    limits = _limits(max_length, batch_size)
    if start_ids.shape[0] == 1:
        return _greedy_alone(step_fn, initial_state, constants, start_ids, end_id, limits)
    return _greedy_compacting(step_fn, initial_state, constants, start_ids, end_id, limits)


def _greedy_alone(step_fn, initial_state, constants, start_ids, end_id, limits):
    """`greedy_search` for a static batch of one sentence (a one-sentence request, a TFLite
    model). The loop stops when the sentence does, so no row is ever finished inside it: a step
    keeps no finished flags or lengths (the length comes from the steps run), which is a fifth
    of a step's ops at this size, where their fixed cost is most of a step's time."""
    limit = limits[0]

    def cond(t, ids, state, score, tokens, attention):
        return (t < limit) & ((t == 0) | (ids[0] != end_id))

    def body(t, ids, state, score, tokens, attention):
        logits, state, step_attention = step_fn(ids, state, constants)
        token_log_prob, ids = tf.math.top_k(tf.nn.log_softmax(tf.cast(logits, tf.float32)), k=1)
        tokens = tf.concat([tokens, ids], axis=1)
        # The attention rows one after the other, `(1, steps * S)`: no depth to set at the
        # first step, as a `(1, steps, S)` history would need at every step.
        attention = tf.concat([attention, tf.cast(step_attention, tf.float32)], axis=1)
        return t + 1, ids[:, 0], state, score + token_log_prob[:, 0], tokens, attention

    loop_vars = (tf.constant(0), start_ids, initial_state, tf.zeros([1]),
                 tf.zeros([1, 0], tf.int32), tf.zeros([1, 0]))
    invariants = tf.nest.map_structure(_any_shape, loop_vars)
    invariants = invariants[:2] + (_state_shapes(initial_state),) + invariants[3:]
    steps, _, _, score, tokens, attention = tf.while_loop(
        cond, body, loop_vars, shape_invariants=invariants
    )
    ended = tf.reduce_any(tokens[:, -1:] == end_id, axis=1)
    lengths = steps - tf.cast(ended, tf.int32)
    depth = tf.shape(attention)[1] // tf.maximum(steps, 1)
    attention = tf.reshape(attention, tf.stack([1, steps, depth]))
    return {"tokens": tokens, "lengths": lengths, "attention": attention, "score": score}


def _greedy_pick(logits, step_attention, finished):
    """One greedy step's choice per row, `(ids, their log-probabilities, attention)`, each 0
    where the row has finished. top_k rather than argmax: its tie-breaking (lowest id) is
    documented, and beam search ranks with it too, so beam_size=1 reproduces greedy exactly."""
    token_log_prob, ids = tf.math.top_k(tf.nn.log_softmax(tf.cast(logits, tf.float32)), k=1)
    return (tf.where(finished, 0, ids[:, 0]), tf.where(finished, 0.0, token_log_prob[:, 0]),
            tf.where(finished[:, None], 0.0, tf.cast(step_attention, tf.float32)))


def _worth_compacting(alive):
    """Whether a search's step batch should drop its finished rows (or sentences) now: once a
    quarter of them have finished, so that gathering the state and memory is paid rarely."""
    return 4 * tf.reduce_sum(tf.cast(alive, tf.int32)) <= 3 * tf.size(alive)


def _greedy_compacting(step_fn, initial_state, constants, start_ids, end_id, limits):
    """`greedy_search` for a batch that may hold more than one sentence: a sentence that has
    finished stops costing anything. Its row stays in the step's batch until a quarter of the
    rows have finished, then the batch is compacted (state and constants gathered to the rows
    still decoding), so the step's matmuls shrink as sentences end: a batch runs as many steps
    as its longest output, most of its rows far fewer. The outputs are the same as
    decoding every row to the end."""
    batch_size = tf.shape(start_ids)[0]

    def cond(t, rows, ids, state, consts, limits, finished, lengths, score, tokens, attention):
        return tf.logical_not(tf.reduce_all(finished))

    def body(t, rows, ids, state, consts, limits, finished, lengths, score, tokens, attention):
        logits, state, step_attention = step_fn(ids, state, consts)
        ids, token_log_prob, step_attention = _greedy_pick(logits, step_attention, finished)
        at = rows[:, None]  # each row's place in the caller's batch
        score = tf.tensor_scatter_nd_add(score, at, token_log_prob)
        lengths = tf.tensor_scatter_nd_add(
            lengths, at, tf.cast(tf.logical_not(finished) & (ids != end_id), tf.int32))
        # Each step's outputs go to a TensorArray: appending to a growing tensor would copy
        # the whole history at every step.
        tokens = tokens.write(t, tf.scatter_nd(at, ids, [batch_size]))
        attention = attention.write(t, _scatter_rows(at, step_attention, batch_size))
        finished |= (ids == end_id) | (t + 1 >= limits)
        alive = tf.logical_not(finished)

        def compact():
            keep = tf.where(alive)[:, 0]
            take = lambda x: tf.gather(x, keep)  # noqa: E731
            return (take(rows), take(ids), tf.nest.map_structure(take, state),
                    tf.nest.map_structure(take, consts), take(limits), take(finished))

        def same():
            return rows, ids, state, consts, limits, finished

        rows, ids, state, consts, limits, finished = tf.cond(_worth_compacting(alive), compact,
                                                             same)
        return t + 1, rows, ids, state, consts, limits, finished, lengths, score, tokens, attention

    lengths, score = tf.zeros([batch_size], tf.int32), tf.zeros([batch_size])
    history = (tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None]),
               tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, None]))
    loop_vars = (tf.constant(0), tf.range(batch_size), start_ids, initial_state, constants, limits,
                 limits <= 0, lengths, score, *history)
    invariants = tf.nest.map_structure(_any_shape, loop_vars[:-2])
    invariants = (invariants[:3] + (_state_shapes(initial_state), _state_shapes(constants))
                  + invariants[5:] + (tf.TensorShape([]),) * 2)  # a TensorArray's: its flow's
    out = tf.while_loop(cond, body, loop_vars, shape_invariants=invariants)
    steps, lengths, score, tokens, attention = out[0], *out[-4:]

    def stacked():
        return (tf.transpose(tokens.stack(), (1, 0)),
                tf.transpose(attention.stack(), (1, 0, 2)))

    def nothing():  # no sentence had a step to run
        return tf.zeros([batch_size, 0], tf.int32), tf.zeros([batch_size, 0, 0], tf.float32)

    tokens, attention = tf.cond(steps > 0, stacked, nothing)
    return {"tokens": tokens, "lengths": lengths, "attention": attention, "score": score}


def beam_search(
    step_fn,
    initial_state,
    constants,
    start_ids,
    end_id,
    max_length,
    beam_size=4,
    length_penalty=0.0,
    coverage_penalty=0.0,
    n_best=1,
    exact=False,
):
    """Decodes with beam search, ranking hypotheses by GNMT's length and coverage penalties.

    A hypothesis `Y` of a source `X` is scored

        s(Y, X) = log P(Y | X) / lp(Y) + cp(X; Y)
        lp(Y) = (5 + |Y|)^alpha / (5 + 1)^alpha
        cp(X; Y) = beta * sum_i log(min(sum_j a_ij, 1.0))

    with `|Y|` counting the end token, `a_ij` the attention on source position `i` at output step
    `j` (the end step included), `alpha = length_penalty` and `beta = coverage_penalty`. The sum
    over `i` skips positions whose accumulated attention is exactly 0: padded positions, which
    the attention layers zero, and models without attention (`S == 0`) get no coverage term.

    Each sentence keeps `beam_size` alive hypotheses. At every step its `beam_size` best
    expansions are taken; those ending with `end_id` join a pool of the `n_best` best finished
    hypotheses, and the `beam_size` best expansions that do not end stay alive, so the beam never
    shrinks. A sentence stops (its finished pool is frozen) once its best alive hypothesis, ended
    at the next step, would not beat its `n_best`-th finished one (as most toolkits stop). With
    `exact=True` it stops only once no continuation can: log-probabilities only fall, `lp` is
    monotonic in the length and `cp <= 0`, so the bound is the best alive log-probability over
    `lp(max_length)`. That bound is loose when `alpha > 0` and `max_length` is far off (a model
    that continues confidently after its end ran to `max_length`), so it is off by default; the
    two agree when `alpha == 0`. A sentence also stops at its `max_length`; the loop ends when every
    sentence has stopped. A sentence with fewer than `n_best` finished hypotheses fills in with
    its alive ones as they stood when it stopped. In a batch of more than one sentence, stopped
    sentences leave the step's batch (once a quarter of those still in it have stopped), their
    n-best lists kept aside, so a batch costs about its sentences' own numbers of steps.
    With `beam_size=1` and no penalties this returns exactly `greedy_search`'s tokens, attention
    and score.

    Args:
        step_fn: callable `(ids, state, constants) -> (logits, new_state, attention)`, see the
            module docstring. It is called on `batch_size * beam_size` rows, batch-major.
        initial_state: nest of tensors of shape `(batch_size, ...)`; tiled to the beam here.
        constants: nest of tensors of shape `(batch_size, ...)`; tiled to the beam once here and
            never reordered (they are identical within a sentence's beam), unless `step_fn` is
            `grouped` (see the module docstring).
        start_ids: int32 tensor of shape `(batch_size,)`, the first input token of each sentence.
        end_id: Python int or scalar tensor, the end-of-sequence token.
        max_length: Python int, scalar tensor, or int32 `(batch_size,)` tensor: the most tokens
            generated per hypothesis (the end token included), for all or for each sentence; a
            sentence stops at its own limit, its alive hypotheses cut there.
        beam_size: Python int, the number of hypotheses kept per sentence. Defaults to `4`.
        length_penalty: Python float, `alpha`. Defaults to `0.0` (no normalisation).
        coverage_penalty: Python float `>= 0`, `beta`. Defaults to `0.0` (no coverage term).
        n_best: Python int `<= beam_size`, the number of hypotheses returned per sentence.
            Defaults to `1`.
        exact: Python bool: stop a sentence only when no continuation can beat its finished
            hypotheses (up to `max_length`), instead of when its best alive hypothesis ended at
            the next step would not. Defaults to `False`.

    Returns:
        A dict with, best hypothesis first,
        - `"tokens"`: int32 `(batch_size, n_best, T)`, the generated ids without the start token;
          the end token is included where emitted and later positions are 0. `T` is the number of
          steps run, at most the largest `max_length`.
        - `"lengths"`: int32 `(batch_size, n_best)`, the number of tokens before the end token.
        - `"attention"`: float32 `(batch_size, n_best, T, S)`, 0 after the end token.
        - `"score"`: float32 `(batch_size, n_best)`, the penalised score `s(Y, X)`.
        - `"log_prob"`: float32 `(batch_size, n_best)`, `log P(Y | X)`.

    Raises:
        ValueError: if `beam_size < 1`, `n_best` is not in `[1, beam_size]` or
            `coverage_penalty < 0`.

    Example:

    >>> def step_fn(ids, state, constants):
    ...     logits = tf.one_hot((ids + 1) % 3, 3) * 5.0
    ...     return logits, state, tf.zeros([tf.shape(ids)[0], 0])
    >>> out = beam_search(step_fn, (), (), tf.constant([0]), end_id=2, max_length=5, n_best=2)
    >>> out["tokens"].numpy()
    array([[[1, 2],
            [2, 0]]], dtype=int32)

    Reference:
    - [Wu et al., 2016](https://arxiv.org/abs/1609.08144), section 7.
    """
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a Python int >= 1, received beam_size={beam_size!r}.")
    if not isinstance(n_best, int) or not 1 <= n_best <= beam_size:
        raise ValueError(
            f"n_best must be a Python int between 1 and beam_size, received n_best={n_best!r} "
            f"with beam_size={beam_size}. Lower n_best or raise beam_size."
        )
    if coverage_penalty < 0:
        raise ValueError(
            f"coverage_penalty must be >= 0 (GNMT's beta), received {coverage_penalty}."
        )
    start_ids = tf.cast(start_ids, tf.int32)
    end_id = tf.cast(end_id, tf.int32)
    batch_size = tf.shape(start_ids)[0]
    limits = _limits(max_length, batch_size)
    grouped = bool(getattr(step_fn, "grouped", False))  # constants per sentence, not per row
    if not grouped:
        constants = tile_for_beam(constants, beam_size)
    neg_inf = float("-inf")
    sentences = batch_size  # the caller's; inside the loop, batch_size is those still in it
    # Sentences that have stopped leave the step batch (not with a static batch of 1).
    compact = start_ids.shape[0] != 1

    def cond(t, done, *_):
        return tf.logical_not(tf.reduce_all(done))

    def body(t, done, alive, finished, cut, rows, limits, constants, store, history):
        batch_size = tf.shape(done)[0]  # the sentences still in the loop
        logits, state, step_attention = step_fn(
            tf.reshape(alive["ids"], [-1]), alive["state"], constants
        )
        vocab_size = tf.shape(logits)[-1]
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
        log_probs = tf.reshape(log_probs, [batch_size, beam_size, vocab_size])
        step_attention = tf.cast(step_attention, tf.float32)
        step_attention = tf.reshape(step_attention, [batch_size, beam_size, -1])
        # Every expansion has t + 1 tokens, end included: one lp for all of them.
        log_prob = alive["log_prob"][:, :, None] + log_probs
        # Rows of every expansion, `beam_size * V` wide (static when V is: top_k uses it).
        width = logits.shape[-1]
        flat = [batch_size, -1 if width is None else beam_size * width]
        flat_log_prob = tf.reshape(log_prob, flat)
        penalty = _length_penalty(t + 1, length_penalty)

        # One top-k over every expansion serves both pools: the ends among them are at most
        # beam_size (one per alive hypothesis), so the best 2 * beam_size expansions hold the
        # beam_size best that do not end. In order of score, ties to the lowest index.
        candidates = 2 * beam_size if width is None else min(2 * beam_size, beam_size * width)
        if coverage_penalty:
            coverage = alive["coverage"] + step_attention
            score = log_prob / penalty + _coverage_penalty(coverage, coverage_penalty)[:, :, None]
            cand_score, cand_index = top_k(tf.reshape(score, flat), candidates)
        else:  # the score is the log-probability over one lp: rank those, score the candidates
            cand_score, cand_index = top_k(flat_log_prob, candidates)
            cand_score = cand_score / penalty

        # The beam_size best expansions; those that end join the finished pool. A hypothesis
        # is kept as where it ends (its step, the beam slot it extends, its last token): its
        # tokens and attention are read back from the history once the search is over.
        top_score, top_index = cand_score[:, :beam_size], cand_index[:, :beam_size]
        token = top_index % vocab_size
        ended = tf.logical_and(token == end_id, tf.logical_not(done)[:, None])
        new = {
            "score": tf.where(ended, top_score, neg_inf),
            "log_prob": tf.gather(flat_log_prob, top_index, batch_dims=1),
            "lengths": tf.fill(tf.shape(token), t),
            "last": tf.fill(tf.shape(token), t),
            "slot": top_index // vocab_size,
            "token": token,
        }
        pool = {key: tf.concat([finished[key], new[key]], axis=1) for key in finished}
        # Old entries come first, so a tie keeps the shorter, earlier hypothesis.
        _, keep = tf.math.top_k(pool["score"], n_best)
        finished = {key: tf.gather(value, keep, batch_dims=1) for key, value in pool.items()}

        # The beam_size best expansions that do not end stay alive. An end picked here (with
        # beam_size >= V there are not enough others) gets -inf and stays dead.
        cand_end = tf.equal(cand_index % vocab_size, end_id)
        alive_score, pick = tf.math.top_k(tf.where(cand_end, neg_inf, cand_score), beam_size)
        alive_index = tf.gather(cand_index, pick, batch_dims=1)
        parent, token = alive_index // vocab_size, alive_index % vocab_size
        alive_log_prob = tf.where(token == end_id, neg_inf,
                                  tf.gather(flat_log_prob, alive_index, batch_dims=1))
        parent_rows = tf.reshape(parent + beam_size * tf.range(batch_size)[:, None], [-1])
        new_alive = {
            "ids": token,
            "state": tf.nest.map_structure(lambda s: tf.gather(s, parent_rows), state),
            "log_prob": alive_log_prob,
            "score": alive_score,
        }
        if coverage_penalty:
            new_alive["coverage"] = tf.gather(coverage, parent, batch_dims=1)
        history = _record(history, t, rows if compact else None, sentences, token, parent,
                          step_attention)

        # The score the best alive hypothesis would get ending at the next step; with `exact`, an
        # upper bound on any score the alive hypotheses can still reach (cp <= 0 as beta >= 0).
        best = tf.reduce_max(alive_log_prob, axis=1)
        bound = best / _length_penalty(t + 2, length_penalty)
        if exact:
            bound = tf.maximum(bound, best / _length_penalty(limits, length_penalty))
        # A sentence stops by the bound or at its own limit; its alive hypotheses as they stand
        # then (cut there) are kept to fill its n-best list.
        now_done = done | (bound <= finished["score"][:, -1]) | (t + 1 >= limits)
        stops = (now_done & tf.logical_not(done))[:, None]
        snapshot = {"score": alive_score, "log_prob": alive_log_prob,
                    "lengths": tf.fill(tf.shape(token), t + 1), "last": tf.fill(tf.shape(token), t),
                    "slot": parent, "token": token}
        cut = {key: tf.where(stops, snapshot[key], value) for key, value in cut.items()}
        loop = (now_done, new_alive, finished, cut, rows, limits, constants, store)
        if compact:  # once a quarter of the sentences have stopped, they leave the loop
            loop = tf.cond(_worth_compacting(tf.logical_not(now_done)),
                           lambda: _leave(loop, beam_size, grouped), lambda: loop)
        return (t + 1, *loop, history)

    first = tf.concat([tf.zeros([1]), tf.fill([beam_size - 1], neg_inf)], axis=0)
    # Only the first copy of each sentence is alive at the start, so the beam does not fill
    # with duplicates.
    alive_log_prob = tf.tile(first[None], [batch_size, 1])
    alive = {
        "ids": tf.reshape(tile_for_beam(start_ids, beam_size), [batch_size, beam_size]),
        "state": tile_for_beam(initial_state, beam_size),
        "log_prob": alive_log_prob,
        "score": alive_log_prob,
    }
    if coverage_penalty:  # each alive hypothesis' attention summed over its steps; depth 1
        alive["coverage"] = tf.zeros([batch_size, beam_size, 1])  # broadcasts to the first step's

    def no_hypotheses(size):
        """A pool of `size` empty hypotheses per sentence (no tokens: last step -1)."""
        shape = [batch_size, size]
        return {"score": tf.fill(shape, neg_inf), "log_prob": tf.fill(shape, neg_inf),
                "lengths": tf.zeros(shape, tf.int32), "last": tf.fill(shape, -1),
                "slot": tf.zeros(shape, tf.int32), "token": tf.zeros(shape, tf.int32)}

    finished, cut = no_hypotheses(n_best), no_hypotheses(beam_size)
    # A sentence with a limit of 0 (or less) decodes nothing: it is done before the first step.
    # `store`: the finished and cut hypotheses of the sentences that have left the loop, at
    # their places in the caller's batch.
    store = {"finished": finished, "cut": cut}
    history = tuple(tf.TensorArray(dtype, size=0, dynamic_size=True, element_shape=shape)
                    for dtype, shape in ((tf.int32, [None, beam_size]),
                                         (tf.int32, [None, beam_size]),
                                         (tf.float32, [None, beam_size, None])))
    loop_vars = (tf.constant(0), limits <= 0, alive, finished, cut, tf.range(batch_size), limits,
                 constants, store, history)
    invariants = tf.nest.map_structure(_any_shape, loop_vars[:-1])
    invariants[2]["state"] = _state_shapes(alive["state"])
    invariants = (*invariants[:7], _state_shapes(constants), invariants[8],
                  (tf.TensorShape([]),) * 3)  # a TensorArray's invariant is its flow's
    out = tf.while_loop(cond, body, loop_vars, shape_invariants=invariants)
    steps, _, _, finished, alive, _, _, _, store, history = out
    if compact:  # every sentence has stopped: the last ones join the store
        store = _leave(out[1:9], beam_size, grouped)[-1]
        finished, alive = store["finished"], store["cut"]

    # Finished hypotheses first, then alive ones (cut where the sentence stopped), then empty
    # finished slots; top_k keeps the order within each group, which is already best first.
    group = tf.concat(
        [
            tf.where(finished["score"] > neg_inf, 0.0, 2.0),
            tf.ones([batch_size, beam_size]),
        ],
        axis=1,
    )
    _, pick = tf.math.top_k(-group, n_best)
    best = {key: tf.gather(tf.concat([finished[key], alive[key]], axis=1), pick, batch_dims=1)
            for key in finished}
    tokens, attention = _backtrack(history, best, steps)
    return {"tokens": tokens, "lengths": best["lengths"], "attention": attention,
            "score": best["score"], "log_prob": best["log_prob"]}


def top_k(values, k, chunk=128):
    """`tf.math.top_k(values, k)` (sorted, ties to the lowest index), faster for long rows.

    A row is cut into chunks of `chunk` values; the `k` largest values lie in the `k` chunks
    with the largest maxima (any other chunk's values are each beaten by `k` chunk maxima), so
    one top-k over those chunks' values, kept in their order in the row, gives the same values
    and indices, ties included. TensorFlow's top-k costs about as much per value for k = 8 as a
    matmul row, so on beam search's `beam_size x vocabulary` rows this is several times faster.
    Rows of unknown or short width go to `tf.math.top_k` itself.

    Args:
        values: float `(batch_size, width)`.
        k: Python int, `k <= width`.
        chunk: Python int, the chunk width.

    Returns:
        `(values, indices)`, each `(batch_size, k)`, as `tf.math.top_k`.
    """
    width = values.shape[-1]
    count = None if width is None else -(-width // chunk)  # chunks per row
    if count is None or count < max(16, 4 * k):
        return tf.math.top_k(values, k)
    if count * chunk != width:  # -inf padding sits after every value: it never wins a tie
        values = tf.pad(values, [[0, 0], [0, count * chunk - width]],
                        constant_values=float("-inf"))
    chunks = tf.reshape(values, [-1, count, chunk])
    _, best = tf.math.top_k(tf.reduce_max(chunks, axis=-1), k)
    best = tf.sort(best, axis=-1)  # in row order, so that ties still go to the lowest index
    picked = tf.reshape(tf.gather(chunks, best, batch_dims=1), [-1, k * chunk])
    top, at = tf.math.top_k(picked, k)
    return top, tf.gather(best, at // chunk, batch_dims=1) * chunk + at % chunk


def _record(history, t, rows, size, token, parent, step_attention):
    """Beam search's history with step `t` written: each slot's token and the slot it extends
    `(size, beam_size)`, and the attention of the hypotheses the step read
    `(size, beam_size, S)`, at the sentences' places `rows` in the caller's batch of `size`
    (`rows=None`: the step batch is the caller's)."""
    tokens, parents, attention = history
    if rows is not None:
        token, parent, step_attention = (_scatter_rows(rows[:, None], x, size)
                                         for x in (token, parent, step_attention))
    return tokens.write(t, token), parents.write(t, parent), attention.write(t, step_attention)


def _backtrack(history, best, steps):
    """Tokens `(batch_size, n, steps)` and attention `(batch_size, n, steps, S)` of the
    hypotheses `best` (fields `last`, `slot`, `token`, each `(batch_size, n)`), read back
    through the history's parent slots from each one's last step; 0 after it."""
    tokens, parents, attention = history
    last, slot, token = best["last"], best["slot"], best["token"]

    def read_back():
        def back(carry, step):
            cursor, _, _ = carry
            step_tokens, step_parents, step_attention, s = step
            before = s < last  # the cursor is the slot this hypothesis held after step s
            own = tf.gather(step_tokens, cursor, batch_dims=1)
            parent = tf.where(before, tf.gather(step_parents, cursor, batch_dims=1), cursor)
            out = tf.where(before, own, tf.where(s == last, token, 0))
            rows = tf.gather(step_attention, parent, batch_dims=1)
            return parent, out, tf.where((s <= last)[..., None], rows, 0.0)

        all_attention = attention.stack()
        depth = tf.shape(all_attention)[-1]
        start = (slot, tf.zeros_like(token), tf.zeros(tf.concat([tf.shape(last), [depth]], 0)))
        _, out_tokens, out_attention = tf.scan(
            back, (tokens.stack(), parents.stack(), all_attention, tf.range(steps)),
            initializer=start, reverse=True)
        return tf.transpose(out_tokens, (1, 2, 0)), tf.transpose(out_attention, (1, 2, 0, 3))

    def nothing():
        shape = tf.shape(last)
        return (tf.zeros(tf.concat([shape, [0]], 0), tf.int32),
                tf.zeros(tf.concat([shape, [0, 0]], 0), tf.float32))

    return tf.cond(steps > 0, read_back, nothing)


def _leave(loop, beam_size, grouped):
    """Beam search's loop state without its stopped sentences, whose finished and cut
    hypotheses go to the store at their batch positions. `grouped`: the constants have a row per
    sentence, not per hypothesis."""
    done, alive, finished, cut, rows, limits, constants, store = loop
    stay = tf.where(tf.logical_not(done))[:, 0]
    gone = tf.where(done)[:, 0]
    at = tf.gather(rows, gone)[:, None]

    def put(kept, new):
        return {key: _update_rows(kept[key], at, tf.gather(new[key], gone)) for key in kept}

    store = {"finished": put(store["finished"], finished), "cut": put(store["cut"], cut)}
    # A sentence's beam rows are `beam_size` consecutive rows of the flattened state.
    beams = tf.reshape(stay[:, None] * beam_size + tf.range(beam_size, dtype=stay.dtype)[None], [-1])
    by_sentence = lambda nest: tf.nest.map_structure(lambda x: tf.gather(x, stay), nest)  # noqa: E731
    by_row = lambda nest: tf.nest.map_structure(lambda x: tf.gather(x, beams), nest)  # noqa: E731
    alive = {**by_sentence({k: v for k, v in alive.items() if k != "state"}),
             "state": by_row(alive["state"])}
    return (tf.gather(done, stay), alive, by_sentence(finished), by_sentence(cut),
            tf.gather(rows, stay), tf.gather(limits, stay),
            by_sentence(constants) if grouped else by_row(constants), store)


def _update_rows(into, at, rows):
    """`into` with `rows` written at its batch positions `at` `(n, 1)`. The last axis gets a
    spare column while writing: TensorFlow rejects a scatter into an empty tensor, which an
    attention of depth 0 (a model without attention) is."""
    spare = [[0, 0]] * (rows.shape.rank - 1) + [[0, 1]]
    return tf.tensor_scatter_nd_update(tf.pad(into, spare), at, tf.pad(rows, spare))[..., :-1]


def _scatter_rows(at, rows, batch_size):
    """Zeros of `batch_size` rows shaped like `rows`, with `rows` written at positions `at`."""
    shape = tf.concat([[batch_size], tf.shape(rows)[1:]], axis=0)
    return _update_rows(tf.zeros(shape, rows.dtype), at, rows)


def _limits(max_length, batch_size):
    """`max_length` (one for all, or one per sentence) as int32 `(batch_size,)`."""
    return tf.broadcast_to(tf.cast(max_length, tf.int32), [batch_size])


def _length_penalty(length, alpha):
    """GNMT's lp(Y) = (5 + |Y|)^alpha / 6^alpha."""
    length = tf.cast(length, tf.float32)
    return tf.pow(5.0 + length, alpha) / tf.pow(6.0, alpha)


def _coverage_penalty(coverage, beta):
    """GNMT's cp = beta * sum_i log(min(coverage_i, 1)), over positions with coverage > 0."""
    # Padded positions get no attention; log(0) there would make every hypothesis -inf.
    capped = tf.where(coverage > 0.0, tf.minimum(coverage, 1.0), 1.0)
    return beta * tf.reduce_sum(tf.math.log(capped), axis=-1)


def _with_depth(history, step_attention):
    """Gives an attention history `(..., t, S)` the depth `S` of `step_attention`.

    The histories start as `(..., 0, 0)` because `S` is only known once `step_fn` has run;
    reshaping an empty tensor is free, and at later steps this is a no-op.
    """
    shape = tf.concat([tf.shape(history)[:-1], tf.shape(step_attention)[-1:]], axis=0)
    return tf.reshape(history, shape)


def _any_shape(x):
    """A shape invariant letting every dimension change across loop iterations."""
    return tf.TensorShape([None] * x.shape.rank)


def _state_shapes(state):
    """Shape invariants for a decoder state: only the batch dimension may change."""
    return tf.nest.map_structure(lambda s: tf.TensorShape([None]).concatenate(s.shape[1:]), state)
