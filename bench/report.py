"""results.json -> the Markdown table the README quotes."""


def _status(ok):
    return "met" if ok else "**missed**"


def markdown(r):
    m = r["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, TensorFlow {m['tensorflow']}, Keras "
        f"{m['keras']}, {m['date']}; load average before/after {m['load_average_before']} / "
        f"{m['load_average_after']} (a shared machine). GPU: {r['gpu_note']}"
        + (" **Quick pass: not figures.**" if r.get("quick") else ""),
        "",
        "| item | A | B | A vs B | target | status |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in r.get("layers", []):
        lines.append(
            f"| layer {row['layer']} fwd+bwd, {row['mode']} ({row['shape']}) | ours "
            f"{row['ours_ms']:.2f} ms | Keras {row['keras_ms']:.2f} ms | {row['ratio']:.3f}x time "
            f"| <= 1.05 | {_status(row['ratio'] <= 1.05)} |"
        )
    def _macs(row):
        ratio = row.get("macs_ratio")
        return f"; reference does {ratio:.2f}x our multiply-adds" if ratio else ""

    for row in r.get("training", []):
        lines.append(
            f"| nmt training step, {row['mode']}, {row.get('attention', 'bahdanau')} "
            f"(batch {row['batch_size']}, "
            f"{row['batches']} bucketed batches{_macs(row)}) | ours {row['ours_tokens_per_s']:.0f} tok/s | "
            f"reference {row['reference_tokens_per_s']:.0f} tok/s | {row['ratio']:.2f}x speed "
            f"| >= 1.5x | {_status(row['ratio'] >= 1.5)} |"
        )
    inf = r.get("inference")
    if inf:
        lat = inf["latency_ms"]
        ratio = inf["tflite_over_saved_model_greedy"]
        lines.append(
            f"| batch-1 latency, greedy | TFLite {lat['tflite_greedy']:.1f} ms | SavedModel "
            f"{lat['saved_model_greedy']:.1f} ms | {ratio:.2f}x time | <= 0.5 | {_status(ratio <= 0.5)} |"
        )
        lines.append(
            f"| SavedModel batch {inf['batch']} | greedy "
            f"{inf['saved_model_greedy_sentences_per_s']:.1f} sent/s | beam 4 "
            f"{inf['saved_model_beam4_sentences_per_s']:.1f} sent/s | "
            f"batch-1 beam 4: {lat['saved_model_beam4']:.1f} ms | - | - |"
        )
    sc = r.get("scaling")
    if sc:
        lines.append(
            f"| decode time vs source length {sc['source_lengths'][0]}-{sc['source_lengths'][-1]} "
            f"({sc['decode_steps']} greedy steps) | {sc['ms_by_source_length'][0]:.1f} ms | "
            f"{sc['ms_by_source_length'][-1]:.1f} ms | log-log exponent "
            f"{sc['source_length_exponent']:.2f}, {sc['ms_per_source_token']:.3f} ms/token | - | - |"
        )
        lines.append(
            f"| decode time vs beam {sc['beams'][0]}-{sc['beams'][-1]} "
            f"({sc['beam_source_length']} source tokens) | {sc['ms_by_beam'][0]:.1f} ms | "
            f"{sc['ms_by_beam'][-1]:.1f} ms | log-log exponent {sc['beam_exponent']:.2f}, "
            f"{sc['ms_per_beam']:.2f} ms/beam | - | - |"
        )
    if r.get("model"):
        lines += ["", f"Inference and scaling model: {r['model']}. Plot: bench/scaling.png."]
    if r.get("profile_top"):
        top = ", ".join(f"{p['function']} {p['share']:.0%}" for p in r["profile_top"])
        lines.append(f"Training-step profile (TensorFlow profiler, bench/profile.txt), share of "
                     f"busy op time: {top}.")
    if r.get("real_text"):
        from bench import real_text

        lines += ["", "Real text (bench/results-real-text.md):", "", real_text.markdown(r["real_text"])]
    return "\n".join(lines) + "\n"
