"""Translation quality: corpus BLEU (sacrebleu), exact match, and both by source length."""

from __future__ import annotations

import sacrebleu

# Source-length buckets (in tokens) for the by-length tables: where a bottleneck falls off.
LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60), (61, 10**9))


def bucket_label(low: int, high: int) -> str:
    return f"{low}+" if high >= 10**9 else f"{low}-{high}"


def bucket_of(length: int) -> str:
    for low, high in LENGTH_BUCKETS:
        if low <= length <= high:
            return bucket_label(low, high)
    return bucket_label(*LENGTH_BUCKETS[0])


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU in 0-100 on already tokenised text (tokens joined by spaces)."""
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none").score)


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """Share of sentences whose tokens equal the reference's, in 0-100."""
    if not hypotheses:
        return 0.0
    hits = sum(h.split() == r.split() for h, r in zip(hypotheses, references, strict=True))
    return 100.0 * hits / len(hypotheses)


def quality_report(hypotheses, references, source_lengths) -> dict:
    """`{"overall": {...}, "by_length": {bucket: {...}}}` with bleu, exact_match and count."""

    def scores(idx):
        hyp = [hypotheses[i] for i in idx]
        ref = [references[i] for i in idx]
        return {
            "bleu": round(corpus_bleu(hyp, ref), 2),
            "exact_match": round(exact_match(hyp, ref), 2),
            "count": len(idx),
        }

    report = {"overall": scores(range(len(hypotheses))), "by_length": {}}
    for low, high in LENGTH_BUCKETS:
        idx = [i for i, n in enumerate(source_lengths) if low <= n <= high]
        if idx:
            report["by_length"][bucket_label(low, high)] = scores(idx)
    return report


def format_report(report: dict, title: str = "") -> str:
    """The by-length table as aligned text (also valid Markdown)."""
    lines = [title] if title else []
    lines.append("| source tokens | sentences | exact match % | BLEU |")
    lines.append("|---|---:|---:|---:|")
    for bucket, s in report["by_length"].items():
        lines.append(f"| {bucket} | {s['count']} | {s['exact_match']:.2f} | {s['bleu']:.2f} |")
    s = report["overall"]
    lines.append(f"| **all** | {s['count']} | {s['exact_match']:.2f} | {s['bleu']:.2f} |")
    return "\n".join(lines)


def sacrebleu_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Cased, detokenised corpus BLEU and chrF as WMT reports them: sacrebleu's defaults (13a
    tokenisation, no lower-casing; chrF with character 6-grams, beta 2) on plain text, with the
    signature strings that say so."""
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    if not hypotheses:
        return {"bleu": 0.0, "chrf": 0.0, "count": 0}
    return {
        "bleu": round(float(bleu.corpus_score(hypotheses, [references]).score), 2),
        "chrf": round(float(chrf.corpus_score(hypotheses, [references]).score), 2),
        "count": len(hypotheses),
    }


def sacrebleu_signatures() -> dict:
    """The signature strings of `sacrebleu_scores`' metrics (version, tokeniser, case...)."""
    out = {}
    for name, metric in (("bleu", sacrebleu.metrics.BLEU()), ("chrf", sacrebleu.metrics.CHRF())):
        metric.corpus_score(["a"], [["a"]])  # the signature names the reference count once scored
        out[name] = str(metric.get_signature())
    return out


def text_quality_report(hypotheses, references, source_words) -> dict:
    """`{"overall", "by_length": {bucket: {bleu, chrf, count}}, "signatures"}`: sacreBLEU and
    chrF of detokenised, cased text, by source length in words (whitespace-separated)."""
    report = {
        "overall": sacrebleu_scores(hypotheses, references),
        "by_length": {},
        "signatures": sacrebleu_signatures(),
    }
    for low, high in LENGTH_BUCKETS:
        idx = [i for i, n in enumerate(source_words) if low <= n <= high]
        if idx:
            report["by_length"][bucket_label(low, high)] = sacrebleu_scores(
                [hypotheses[i] for i in idx], [references[i] for i in idx]
            )
    return report


def format_text_report(report: dict, title: str = "") -> str:
    """`text_quality_report` as a Markdown table, signatures below it."""
    lines = [title] if title else []
    lines.append("| source words | sentences | BLEU | chrF |")
    lines.append("|---|---:|---:|---:|")
    for bucket, s in report["by_length"].items():
        lines.append(f"| {bucket} | {s['count']} | {s['bleu']:.2f} | {s['chrf']:.2f} |")
    s = report["overall"]
    lines.append(f"| **all** | {s['count']} | {s['bleu']:.2f} | {s['chrf']:.2f} |")
    lines.append("")
    lines += [f"{name}: {sig}" for name, sig in report["signatures"].items()]
    return "\n".join(lines)
