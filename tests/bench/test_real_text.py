"""bench/real_text.py's quick pass on the committed sample corpus and a tiny run: every row is
there with numbers, the results files are valid. No timings are asserted."""

import json
import math
import os

import pytest

from tests.conftest import SAMPLE

# A tiny training, two exports and a reference trained for 3 steps: a minute or two.
pytestmark = pytest.mark.slow


def _number(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_quick_pass_writes_every_row_with_numbers(subword_run, tmp_path):
    from bench import real_text, report

    results = real_text.run(SAMPLE, subword_run, quick=True, out=str(tmp_path))
    items = [row["item"] for row in results["rows"]]
    assert any(i.startswith("E training") for i in items)
    assert sum(i.startswith("B serving") for i in items) == 3
    assert sum(i.startswith("B latency") for i in items) == 3
    for row in results["rows"]:
        assert _number(row["a_value"]) and _number(row["b_value"]) and row["ratio"] > 0, row
        assert len(row["load_average"]) == 3
    targeted = [row for row in results["rows"] if "target" in row]
    assert len(targeted) == 4 and all(isinstance(row["met"], bool) for row in targeted)

    memory = results["memory"]
    assert set(memory["bytes"]) == {"ours SavedModel", "reference SavedModel", "ours TFLite float",
                                    "ours TFLite int8 dynamic range"}
    assert all(v > 0 for v in memory["bytes"].values())
    # Measured in fresh processes: loading and running a model costs memory over the baseline
    # (a peak inherited from the bench process would make them all equal).
    rss = memory["peak_rss_mb"]
    assert len(rss) >= 3 and all(_number(v) and v > 0 for v in rss.values())
    baseline = rss["baseline (python + tensorflow, nothing loaded)"]
    assert rss["ours SavedModel (greedy + beam 4, batch 64)"] > baseline
    assert set(memory["tflite_bleu"]) == {"float", "int8"}

    growth = results["growth"]
    assert len(growth["ms_by_source_length"]) == len(growth["source_lengths"]) >= 2
    assert len(growth["ms_by_beam"]) == len(growth["beams"]) >= 2
    assert _number(growth["length_r2"]) and _number(growth["beam_r2"])
    assert results["reference"]["vocab_target"] > 4 and results["reference"]["train_steps"] == 3

    loaded = json.loads((tmp_path / "results-real-text.json").read_text())
    assert loaded["rows"] == json.loads(json.dumps(results["rows"]))
    table = (tmp_path / "results-real-text.md").read_text()
    assert table.count("| B serving") == 3 and table.count("| B latency") == 3 and "| E training" in table and "Peak RSS" in table
    # The bench's own report carries the real-text table when the item ran.
    combined = {"machine": {**results["machine"], "load_average_after": [0, 0, 0]},
                "gpu_note": "none", "real_text": results}
    assert "| E training" in report.markdown(combined)


def test_reference_exports_a_greedy_translate_signature(tmp_path):
    import tensorflow as tf

    from bench import reference_real

    pairs = [tuple(line.rstrip("\n").split("\t"))
             for line in open(os.path.join(SAMPLE, "train.tsv"), encoding="utf-8")][:64]
    source_vec, target_vec = reference_real.vectorizers(pairs)
    model = reference_real.build(source_vec, target_vec, 8, 8)
    assert reference_real.train(model, source_vec, target_vec, pairs, batch_size=32, max_steps=2)[0] == 2
    path = reference_real.save(model, source_vec, target_vec, str(tmp_path / "ref"), max_length=5)
    out = tf.saved_model.load(path).signatures["translate"](texts=tf.constant(["In the beginning", "And"]))
    texts = [t.decode() for t in out["text"].numpy()]
    assert len(texts) == 2 and all(len(t.split()) <= 5 for t in texts)


def test_cli_names_a_missing_split_or_run_in_one_line(tmp_path, capsys):
    from bench import real_text

    (tmp_path / "train.tsv").write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        real_text.main(["--data", str(tmp_path), "--run", str(tmp_path), "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has no valid.tsv" in err and "make data CORPUS=bible-en-fr" in err
    with pytest.raises(SystemExit) as e:
        real_text.main(["--data", SAMPLE, "--run", str(tmp_path), "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "has no model.keras" in err and "trained nmt run" in err


def test_bench_main_asks_for_the_corpus_folder_of_the_real_text_item(tmp_path, capsys):
    from bench.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--only", "real_text", "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "real_text needs --data DIR" in err and "make data CORPUS=bible-en-fr" in err


def test_time_to_quality_quick_pass_scores_both_systems_and_writes_its_files(tmp_path):
    from bench import time_to_quality

    summary = time_to_quality.main_item(SAMPLE, True, str(tmp_path))
    results = json.loads((tmp_path / "results-time-to-quality.json").read_text())
    assert results["summary"] == summary
    for name in ("ours", "reference"):
        curve = results["curves"][name]
        assert curve and all(_number(p["bleu"]) and p["seconds"] > 0 for p in curve)
        assert [p["seconds"] for p in curve] == sorted(p["seconds"] for p in curve)
    assert summary["reference_final_bleu"] == max(p["bleu"] for p in results["curves"]["reference"])
    assert summary["target"] == "<= 0.5x" and isinstance(summary["met"], bool)
    table = (tmp_path / "results-time-to-quality.md").read_text()
    assert "time to the reference's final validation BLEU" in table
    assert (tmp_path / "results-time-to-quality.png").stat().st_size > 0


def test_lenient_bleu_ignores_case_accents_and_spacing_only():
    from bench.time_to_quality import lenient, lenient_bleu

    assert lenient("Éternel,  dit-il!") == "eternel , ditil !"
    hypothesis = "Et L'Éternel parla à Moïse, et dit:"
    assert lenient_bleu([hypothesis], ["et l'eternel parla a moise , et dit :"]) == pytest.approx(100.0)
    assert lenient_bleu(["Moïse parla, et dit:"], [hypothesis]) < 50.0


def test_time_to_quality_needs_the_corpus_folder(tmp_path, capsys):
    from bench import time_to_quality

    with pytest.raises(SystemExit) as exit_:
        time_to_quality.main(["--data", str(tmp_path)])
    assert "has no train.tsv" in str(exit_.value) and "make data" in str(exit_.value)
