"""Scoring a captioning run: BLEU-1..4 and exact match, and on digit scenes how often the
attention of a digit's word falls on that digit (localisation, against chance)."""

from __future__ import annotations

import os
import time

import numpy as np

from recipes import runner, training
from recipes.captioning.data import CaptionSplit, load_splits
from recipes.captioning.inference import Captioner, plot_caption
from zoo import caption_metrics


def score_captions(results, split: CaptionSplit) -> dict:
    """BLEU-1..4, exact match and (for digit scenes) attention localisation of captions."""
    hypotheses = [r.tokens for r in results]
    report = {k: round(v, 4) for k, v in
              caption_metrics.corpus_bleu_n(hypotheses, split.references).items()}
    report["exact_match"] = round(
        float(np.mean([h in refs for h, refs in zip(hypotheses, split.references, strict=True)])), 4
    )
    report["count"] = len(results)
    if split.scenes is not None and results and results[0].attention.size:
        hits = total = 0
        chance = 0.0
        shape = split.images.shape[1:3]
        for result, scene in zip(results, split.scenes, strict=True):
            h, t, c = caption_metrics.localisation_counts(
                result.tokens, result.attention, scene.boxes, scene.digits,
                scene.digit_word_positions, shape,
            )
            hits, total, chance = hits + h, total + t, chance + c
        report["localisation"] = round(hits / max(total, 1), 4)
        report["localisation_chance"] = round(chance / max(total, 1), 4)
        report["digit_words"] = total
    else:
        report["localisation"] = None
    return report


def evaluate(run_dir: str, beam: int | None = None, split: str = "test", plots_count: int = 4,
             quiet: bool = False, test: CaptionSplit | None = None) -> dict:
    """Captions a split, scores it, adds the scores to metrics.json and writes overlay PNGs."""
    run_dir = training.resolve_run(run_dir)
    captioner = Captioner.from_run(run_dir)
    config = captioner.config
    beam = config.beam_size if beam is None else int(beam)
    if test is None or split != "test":
        test = dict(zip(("train", "validation", "test"), load_splits(config)[:3], strict=True))[split]
    t0 = time.time()
    progress = runner.progress_bar(len(test), "image", quiet)
    results = captioner.caption(test.images, beam=beam, batch_size=128, progress=progress)
    seconds = time.time() - t0
    report = score_captions(results, test)
    decoding_name = "greedy" if beam == 1 else f"beam {beam}"
    report.update(decoding=decoding_name, split=split, seconds=round(seconds, 2),
                  images_per_second=round(len(test) / max(seconds, 1e-9), 1))
    runner.record_metrics(run_dir, f"{split}_{runner.decoding_name(beam)}", report)
    for n in range(min(plots_count, len(results))):
        boxes = test.scenes[n].boxes if test.scenes else None
        if results[n].attention.size:
            plot_caption(test.images[n], results[n], os.path.join(run_dir, f"overlay-{n}.png"),
                         boxes)
    if not quiet:
        bleu = "  ".join(f"BLEU-{n} {report[f'bleu{n}']:.3f}" for n in range(1, 5))
        where = (f"  localisation {report['localisation']:.1%} (chance "
                 f"{report['localisation_chance']:.1%})" if report["localisation"] is not None
                 else "")
        print(f"{run_dir} — {split} split, {decoding_name}, {len(test)} images: {bleu}  "
              f"exact match {report['exact_match']:.1%}{where}  ({seconds:.0f}s)")
    return report
