"""Scoring an nmt run: by source length, in cased detokenised sacreBLEU and chrF with their
signatures (plus exact match on whole-word runs), and the headline comparison: the same config
trained with and without attention."""

from __future__ import annotations

import dataclasses
import os
import time

from recipes import runner, training
from recipes.config import fingerprint, write_json
from recipes.nmt.config import NmtConfig
from recipes.nmt.data import load_pairs
from recipes.nmt.inference import Translator, plot_translation
from zoo import text
from zoo.data import parallel
from zoo.plots import plot_quality_by_length
from zoo.translation_metrics import (
    format_report,
    format_text_report,
    quality_report,
    text_quality_report,
)


def evaluate(run_dir: str, beam: int | None = None, split: str = "test", plots_count: int = 4,
             quiet: bool = False, test_file: str | None = None) -> dict:
    """Decodes a split (or a user's own `test_file`: a .tsv or SOURCE,TARGET plain-text files),
    scores it by source length (cased, detokenised sacreBLEU and chrF, with their signatures;
    for whole-word runs also exact match and BLEU on the run's own tokens), writes metrics.json,
    the hypotheses (`hypotheses-<split>-<decoding>.txt`, one a line) and attention plots."""
    run_dir = training.resolve_run(run_dir)
    translator = Translator.from_run(run_dir)
    config = translator.config
    beam = config.beam_size if beam is None else beam
    if test_file:
        test = parallel.parse_split("test", test_file)
        parallel.check_split(test)
        pairs, split = parallel.read_pairs(test), os.path.splitext(os.path.basename(test.source_path))[0]
    else:
        pairs = dict(zip(("train", "validation", "test"), load_pairs(config)[:3], strict=True))[split]
    sources = [s for s, _ in pairs]
    t0 = time.time()
    progress = runner.progress_bar(len(sources), "sentence", quiet)
    results = translator.translate(sources, beam=beam, batch_size=128, progress=progress)
    seconds = time.time() - t0
    decoding_name = runner.decoding_name(beam)
    lengths = [len(r.source_tokens) for r in results]
    if translator.subword:
        report = {}
    else:  # the number task's figures: exact match and BLEU on the run's own tokens
        references = [" ".join(t[: config.max_target_length])
                      for t in text.python_tokens([t for _, t in pairs])]
        report = quality_report([" ".join(r.tokens) for r in results], references, lengths)
    report.update(
        text=text_quality_report([r.text for r in results], [t for _, t in pairs],
                                 [len(s.split()) for s in sources]),
        decoding="greedy" if beam == 1 else f"beam {beam}",
        split=split,
        sentences=len(sources),
        seconds=round(seconds, 2),
        sentences_per_second=round(len(sources) / max(seconds, 1e-9), 1),
    )
    hypotheses_path = os.path.join(run_dir, f"hypotheses-{split}-{decoding_name}.txt")
    tmp = f"{hypotheses_path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(r.text.replace("\n", " ") + "\n" for r in results)
    os.replace(tmp, hypotheses_path)
    report["hypotheses"] = os.path.basename(hypotheses_path)
    runner.record_metrics(run_dir, f"{split}_{decoding_name}", report)
    # A few alignments of different lengths, shortest to longest.
    by_len = sorted(range(len(results)), key=lambda i: lengths[i])
    if translator.model.decoder.attention is None:
        plots_count = 0  # the bottleneck baseline has no alignment to draw
    for n, i in enumerate(by_len[:: max(1, len(by_len) // max(1, plots_count))][:plots_count]):
        plot_translation(results[i], os.path.join(run_dir, f"attention-{n}.png"),
                         title=f"{sources[i][:60]}")
    if not quiet:
        title = (f"{run_dir} — {split} ({len(sources)} sentences), {report['decoding']}, "
                 f"{report['sentences_per_second']} sentences/s")
        if "overall" in report:
            print(format_report(report, title + "; on the run's own tokens:"))
            title = "detokenised text:"
        print(format_text_report(report["text"], title))
        print(f"hypotheses: {hypotheses_path}")
    return report


def compare_attention(recipe, config: NmtConfig, baseline: str = "none") -> dict:
    """Trains `config` and the same config with `attention=none` (same data, same epochs) with
    `recipe` (the nmt recipe), evaluates both on the test split and writes a table and a plot of
    quality by source length to `runs/nmt/compare-<hash>/`."""
    reports = {}
    for attention in (config.attention, baseline):
        variant = dataclasses.replace(config, attention=attention, run_id="")
        print(f"== training attention={attention}")
        run = runner.train(recipe, variant)
        reports[attention] = evaluate(run, quiet=True)
        reports[attention]["run"] = run
    # `latest` stays on the attention model, not on the baseline trained last.
    training.point_latest(reports[config.attention]["run"])
    out_dir = training.run_dir_for(recipe.name, f"compare-{fingerprint(config, ignore=('run_id',))}")
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
