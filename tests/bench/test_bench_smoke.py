"""The bench functions run on tiny shapes and write valid JSON. No timings are asserted."""

import json
import os

import keras
import numpy as np
import pytest

from bench import layers, report, scaling, timing
from zoo.seq2seq import Seq2Seq

# XLA compilations and a model build: minutes on a loaded 2-core machine.
pytestmark = pytest.mark.slow


def test_interleaved_returns_a_median_per_callable():
    calls = []
    times = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               repeats=3, warmup=1)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    # Interleaved, warm-up included; every other round in reverse order.
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]


def test_layers_and_scaling_on_tiny_shapes_write_valid_json(tmp_path):
    results = {"machine": timing.machine(), "quick": True, "gpu_note": "none"}
    results["machine"]["load_average_before"] = results["machine"].pop("load_average")
    results["machine"]["load_average_after"] = [0.0, 0.0, 0.0]
    results["layers"] = layers.run(batch=2, tq=3, tv=4, d=8, repeats=1, inner=1)
    assert {(r["layer"], r["mode"]) for r in results["layers"]} == {
        ("luong_dot", "graph"), ("luong_dot", "xla"), ("bahdanau", "graph"), ("bahdanau", "xla")}

    keras.utils.set_random_seed(0)
    model = Seq2Seq(12, 10, embedding_dim=4, units=6)
    model.build()
    results["scaling"] = scaling.run(model, 12, lengths=(3, 6), beams=(1, 2), steps=3, repeats=1)
    assert len(results["scaling"]["ms_by_beam"]) == 2
    scaling.plot(results["scaling"], str(tmp_path / "scaling.png"))
    assert (tmp_path / "scaling.png").stat().st_size > 0

    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    loaded = json.loads(path.read_text())
    assert loaded["machine"]["cores"] >= 1 and loaded["machine"]["cpu"]
    table = report.markdown(loaded)
    assert "luong_dot" in table and "beam" in table


def test_reference_model_trains_one_step():
    from bench.training import ReferenceSeq2Seq
    from zoo.losses import masked_loss

    model = ReferenceSeq2Seq(12, 10, embedding_dim=4, units=6)
    model.compile(optimizer="adam", loss=masked_loss)
    x = {"source": np.array([[3, 4, 0]], np.int32), "target_in": np.array([[1, 5, 6]], np.int32)}
    loss = model.train_on_batch(x, np.array([[5, 6, 2]], np.int32))
    assert np.isfinite(loss)


def test_decoder_steps_times_every_form_and_counts_less_work_without_input_feeding():
    from bench import decoder_steps

    result = decoder_steps.run(
        batch=2, source_length=3, target_length=2, units=8, embedding_dim=4, vocab=10, repeats=1
    )
    rows = {row["form"]: row for row in result["rows"]}
    assert len(rows) == 6 and rows["reference"]["time_vs_reference"] == 1.0
    assert all(row["ms_per_step"] > 0 for row in rows.values())
    macs = {form: row["forward_macs_per_token"] for form, row in rows.items()}
    # Input feeding widens the LSTM's input by `units`: 4 * units**2 more per token.
    assert macs["luong_dot, input feeding"] - macs["luong_dot, no input feeding"] == 4 * 8 * 8
    assert macs["bahdanau, input feeding"] > macs["luong_dot, input feeding"]


def test_a_cached_export_is_stale_once_the_code_that_builds_it_changes(tmp_path, monkeypatch):
    import bench

    for package in ("zoo", "export"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "a.py").write_text("x = 1\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_text("weights")
    monkeypatch.setattr(bench, "ROOT", str(tmp_path))
    first = bench.export_stamp(str(run))
    assert bench.export_stamp(str(run)) == first
    (tmp_path / "export" / "a.py").write_text("x = 2\n")
    assert bench.export_stamp(str(run)) != first
    (tmp_path / "export" / "a.py").write_text("x = 1\n")
    os.utime(run / "model.keras", (1, 1))
    assert bench.export_stamp(str(run)) != first
