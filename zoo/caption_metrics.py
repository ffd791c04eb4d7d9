"""Caption quality: corpus BLEU-1..4 with several references, and attention localisation.

BLEU-n here is the corpus BLEU of Papineni et al. (2002) with uniform weights over 1- to n-grams,
n-gram counts clipped by their largest count in any one reference, and the brevity penalty
measured against the reference closest in length to each hypothesis (ties go to the shorter),
as the COCO caption evaluation does; no smoothing, values in [0, 1].

Localisation scores where a captioner looks when it names a digit of a digit scene: a word naming
a digit is localised when the peak of its attention map, upsampled to the image, falls inside
that digit's box.

    >>> corpus_bleu_n([["a", "cat"]], [[["a", "cat"]]], max_order=2)
    {'bleu1': 1.0, 'bleu2': 1.0}
"""

from __future__ import annotations

import collections
import math

import numpy as np

from zoo.data.digit_scenes import NUMBER_WORDS


def _ngrams(tokens, n):
    return collections.Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu_n(hypotheses, references, max_order=4):
    """Corpus BLEU-1 to BLEU-`max_order` of tokenised hypotheses against several references each.

    Args:
        hypotheses: one token list per caption.
        references: per caption, a list of reference token lists (one or more).
        max_order: the largest n. Defaults to `4`.

    Returns:
        `{"bleu1": ..., ..., "bleu<max_order>": ...}`, floats in [0, 1] (0 for an empty corpus).

    Raises:
        ValueError: when the two lists differ in length or a caption has no reference.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"Expected one reference list per hypothesis; received {len(hypotheses)} hypotheses "
            f"and {len(references)} reference lists."
        )
    matches, totals = [0] * max_order, [0] * max_order
    hyp_length = ref_length = 0
    for n_caption, (hypothesis, refs) in enumerate(zip(hypotheses, references, strict=True)):
        if not refs:
            raise ValueError(f"Caption {n_caption} has no reference; each needs at least one.")
        hypothesis = list(hypothesis)
        hyp_length += len(hypothesis)
        ref_length += min((abs(len(r) - len(hypothesis)), len(r)) for r in refs)[1]
        for n in range(1, max_order + 1):
            counts = _ngrams(hypothesis, n)
            most = collections.Counter()
            for ref in refs:
                most |= _ngrams(list(ref), n)  # element-wise max over references
            matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hypothesis) - n + 1, 0)
    if hyp_length == 0:
        return {f"bleu{n}": 0.0 for n in range(1, max_order + 1)}
    brevity = 1.0 if hyp_length > ref_length else math.exp(1.0 - ref_length / hyp_length)
    scores, log_sum = {}, 0.0
    for n in range(1, max_order + 1):
        if matches[n - 1] == 0 or totals[n - 1] == 0:
            log_sum = -math.inf
        else:
            log_sum += math.log(matches[n - 1] / totals[n - 1])
        scores[f"bleu{n}"] = brevity * math.exp(log_sum / n) if log_sum > -math.inf else 0.0
    return scores


def upsample(attention_map, height, width):
    """Bilinear upsampling of an `(h, w)` map to `(height, width)`, pixel centres aligned
    (as `tf.image.resize(..., "bilinear")`)."""
    attention_map = np.asarray(attention_map, np.float64)
    rows = _interpolation(attention_map.shape[0], height)
    cols = _interpolation(attention_map.shape[1], width)
    return rows @ attention_map @ cols.T


def _interpolation(source, target):
    coords = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, source - 1)
    matrix = np.zeros((target, source))
    matrix[np.arange(target), low] += 1.0 - (coords - low)
    matrix[np.arange(target), high] += coords - low
    return matrix


def attention_peak(attention_map, height, width):
    """`(x, y)`: the pixel where the upsampled map peaks.

    Where several pixels tie for the peak, the one nearest the centre of the strongest cell is
    taken (the first of those on a tie). The upsampled map is flat between a border cell's
    centre and the image's edge, so taking the first tied pixel would put every peak in a top
    or left border cell on the edge of the image, outside the cell's digit.
    """
    attention_map = np.asarray(attention_map, np.float64)
    upsampled = upsample(attention_map, height, width)
    top = upsampled.max()
    ys, xs = np.nonzero(upsampled >= top - 1e-9 * max(abs(top), 1.0))  # raster order
    row, col = np.unravel_index(int(np.argmax(attention_map)), attention_map.shape)
    centre_y = (row + 0.5) * height / attention_map.shape[0] - 0.5
    centre_x = (col + 0.5) * width / attention_map.shape[1] - 0.5
    n = int(np.argmin((ys - centre_y) ** 2 + (xs - centre_x) ** 2))  # first on a tie
    return int(xs[n]), int(ys[n])


def match_digit_words(words, digits, digit_word_positions):
    """Pairs each word naming a digit with the scene digit it names.

    The k-th time a caption names class `d`, it names the k-th digit of class `d` in the order
    the scene's reference caption mentions them.

    Args:
        words: the (generated) caption's words.
        digits: each scene digit's class.
        digit_word_positions: each scene digit's word index in the reference caption.

    Returns:
        A list of `(word_index, digit_index)`, with `digit_index` `None` for a word naming a
        class the scene has fewer of (a hallucinated digit).
    """
    order = sorted(range(len(digits)), key=lambda i: digit_word_positions[i])
    by_class = collections.defaultdict(list)
    for i in order:
        by_class[int(digits[i])].append(i)
    seen = collections.Counter()
    pairs = []
    for t, word in enumerate(words):
        if word in NUMBER_WORDS:
            digit = NUMBER_WORDS.index(word)
            candidates = by_class[digit]
            pairs.append((t, candidates[seen[digit]] if seen[digit] < len(candidates) else None))
            seen[digit] += 1
    return pairs


def localisation_counts(words, attention_maps, boxes, digits, digit_word_positions, image_shape):
    """`(hits, total, chance)` of one caption: words naming a digit, those whose attention peak
    lies in that digit's box, and the expected hits of a uniformly random peak.

    Args:
        words: the caption's `T` words.
        attention_maps: `(T', h, w)` with `T' >= T`, the map of the step that emitted each word.
        boxes: `(n, 4)` digit boxes `(x0, y0, x1, y1)`, `x1` and `y1` exclusive.
        digits, digit_word_positions: as in `match_digit_words`.
        image_shape: `(height, width)` of the image the boxes are in.

    Returns:
        A tuple `(hits, total, chance)`; a word naming a digit the scene lacks is a miss.
    """
    height, width = image_shape
    boxes = np.asarray(boxes).reshape(-1, 4)
    hits = total = 0
    chance = 0.0
    for t, digit in match_digit_words(words, digits, digit_word_positions):
        total += 1
        if digit is None:
            continue
        x0, y0, x1, y1 = (int(v) for v in boxes[digit])
        chance += (x1 - x0) * (y1 - y0) / (height * width)
        x, y = attention_peak(attention_maps[t], height, width)
        hits += int(x0 <= x < x1 and y0 <= y < y1)
    return hits, total, chance
