import numpy as np
import pytest
import sacrebleu
import tensorflow as tf

from zoo import caption_metrics


def test_bleu_agrees_with_sacrebleu_on_single_references():
    rng = np.random.default_rng(0)
    words = "a an two three on the left right at top".split()
    refs = [list(rng.choice(words, rng.integers(4, 12))) for _ in range(40)]
    hyps = [r[: len(r) - int(rng.integers(0, 3))] if i % 3 else list(rng.choice(words, 6))
            for i, r in enumerate(refs)]
    ours = caption_metrics.corpus_bleu_n(hyps, [[r] for r in refs])
    for n in range(1, 5):
        theirs = sacrebleu.metrics.BLEU(
            tokenize="none", max_ngram_order=n, smooth_method="none", effective_order=False
        ).corpus_score([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]])
        assert ours[f"bleu{n}"] == pytest.approx(theirs.score / 100, abs=1e-6)


def test_bleu_clips_by_the_best_reference_and_takes_the_closest_length():
    hyp = "the the the cat".split()
    refs = ["the cat".split(), "the the cat sat down".split()]
    scores = caption_metrics.corpus_bleu_n([hyp], [refs], max_order=2)
    # unigrams: "the" clipped to 2 (second reference), "cat" 1 -> 3/4; bigrams: "the the" 1,
    # "the cat" 1 of 3 -> 2/3. The closest reference length is 5 (1 away; 2 is 2 away).
    brevity = np.exp(1 - 5 / 4)
    assert scores["bleu1"] == pytest.approx(brevity * 3 / 4)
    assert scores["bleu2"] == pytest.approx(brevity * np.sqrt(3 / 4 * 2 / 3))
    assert caption_metrics.corpus_bleu_n([hyp], [[hyp]]) == {f"bleu{n}": 1.0 for n in range(1, 5)}
    assert caption_metrics.corpus_bleu_n([[]], [[hyp]])["bleu4"] == 0.0
    assert caption_metrics.corpus_bleu_n([["x", "y"]], [[hyp]])["bleu1"] == 0.0


def test_bleu_errors_name_the_problem():
    with pytest.raises(ValueError, match="one reference list per hypothesis"):
        caption_metrics.corpus_bleu_n([["a"]], [])
    with pytest.raises(ValueError, match="Caption 0 has no reference"):
        caption_metrics.corpus_bleu_n([["a"]], [[]])


def test_upsample_is_tensorflow_bilinear_resize():
    grid = np.random.default_rng(1).random((6, 6))
    ours = caption_metrics.upsample(grid, 48, 40)
    theirs = tf.image.resize(grid[None, :, :, None], (48, 40), "bilinear")[0, :, :, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_attention_peak_is_the_centre_of_the_strongest_cell():
    grid = np.zeros((4, 4))
    grid[1, 2] = 1.0
    # The cell spans x 16-23, y 8-15; bilinear peaks tie at its centre, the first is taken.
    assert caption_metrics.attention_peak(grid, 32, 32) == (19, 11)


def test_match_digit_words_follows_the_reference_order_and_marks_hallucinations():
    # Scene: a seven (mentioned second) and a seven (first) and a two.
    digits, positions = [7, 7, 2], [5, 1, 9]
    words = "a seven and a seven with a two and a four".split()
    assert caption_metrics.match_digit_words(words, digits, positions) == [
        (1, 1), (4, 0), (7, 2), (10, None),
    ]


def test_localisation_on_a_hand_made_scene():
    # A 32x32 image, 4x4 grid (8 px cells); a "two" in the top left box, a "nine" bottom right.
    boxes = np.array([[0, 0, 12, 12], [18, 18, 30, 30]])
    digits, positions = [2, 9], [1, 7]
    words = "a two in the corner and a nine here".split()
    maps = np.zeros((len(words) + 1, 4, 4))
    maps[1, 0, 0] = 1.0  # "two" looks at cell (0, 0), centre (4, 4): inside its box
    maps[7, 0, 3] = 1.0  # "nine" looks at the top right cell: outside its box
    hits, total, chance = caption_metrics.localisation_counts(
        words, maps, boxes, digits, positions, (32, 32)
    )
    assert (hits, total) == (1, 2)
    assert chance == pytest.approx(2 * 144 / 1024)
    maps[7] = 0.0
    maps[7, 3, 3] = 1.0  # now at (28, 28): inside
    assert caption_metrics.localisation_counts(
        words, maps, boxes, digits, positions, (32, 32)
    )[:2] == (2, 2)
    # A digit the scene does not have counts as a miss.
    assert caption_metrics.localisation_counts(
        "a five".split(), maps, boxes, digits, positions, (32, 32)
    ) == (0, 1, 0.0)
