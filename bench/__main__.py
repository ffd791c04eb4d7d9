"""`python -m bench [--quick] [--data DIR --run RUN]`: runs items 1-4 and writes results.json,
results.md, scaling.png; with --data (a folder of train/valid/test.tsv, e.g. data/bible-en-fr from
`make data CORPUS=bible-en-fr`) also item 5, real text against a Keras tutorial-style reference
(bench/real_text.py; --run: a trained run of configs/nmt-real-text.json, default runs/nmt/latest).
`--only time_to_quality --data DIR` trains both systems from scratch (about an hour;
bench/time_to_quality.py).

The nmt model for inference and scaling is `runs/nmt/latest` when it exists; otherwise a small
run trained under bench/tmp (train_size=4000, epochs=2: quality does not matter for speed),
reused by later runs, and exported there.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from bench import export_stamp
from recipes import config as recipes_config

HERE = os.path.dirname(os.path.abspath(__file__))
TMP = os.path.join(HERE, "tmp")
BENCH_RUN = ["train_size=4000", "validation_size=200", "test_size=200", "epochs=2", "run_id=bench"]


def _run(args, env=None):
    print("  $ " + " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, env={**os.environ, **(env or {})})


def prepare_model():
    """(run folder, exports root, which) for the inference and scaling items."""
    latest = recipes_config.latest_run("nmt")
    if os.path.isdir(latest):
        run_dir, which = os.path.realpath(latest), latest
    else:
        run_dir = os.path.join(TMP, "runs", "nmt", "bench")
        which = "bench/tmp run (train_size=4000, epochs=2; quality irrelevant for speed)"
        if not os.path.exists(os.path.join(run_dir, "model.keras")):
            _run(["-m", "recipes", "train", "nmt", *BENCH_RUN], env={"ZOO_RUNS": os.path.join(TMP, "runs")})
    exports = os.path.join(TMP, "exports")
    stamp = os.path.join(exports, "exported-from.txt")
    stamp_text = export_stamp(run_dir)
    if not (os.path.exists(stamp) and open(stamp, encoding="utf-8").read() == stamp_text):
        _run(["-m", "export", "nmt", "--run", run_dir, "--out", exports])
        with open(stamp, "w", encoding="utf-8") as f:
            f.write(stamp_text)
    return run_dir, exports, which


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny repeats: a smoke pass, not figures")
    p.add_argument("--out", default=HERE, help="where results.json/.md and scaling.png go")
    p.add_argument("--only", nargs="*", default=None,
                   help="subset of: layers training inference scaling profile step_precision "
                        "real_text time_to_quality (an hour, so only when named; needs --data)")
    p.add_argument("--data", default=None,
                   help="real_text: folder with train.tsv, valid.tsv, test.tsv (make data "
                        "CORPUS=bible-en-fr builds data/bible-en-fr)")
    p.add_argument("--run", default=None,
                   help="real_text: a trained nmt run of the real-text configuration "
                        "(default runs/nmt/latest)")
    args = p.parse_args(argv)
    q = args.quick
    # step_precision times real-text-sized models (a minute): a figure, never a smoke pass.
    want = set(args.only or ["layers", "training", "profile", "inference", "scaling"]
               + ([] if q else ["step_precision"]) + (["real_text"] if args.data else []))
    if "time_to_quality" in want and not (args.data and os.path.isdir(args.data)):
        p.error(f"time_to_quality needs --data DIR, a folder with train.tsv and valid.tsv "
                f"(got {args.data!r}; make data CORPUS=bible-en-fr builds data/bible-en-fr)")
    if "real_text" in want:
        if not args.data or not os.path.isdir(args.data):
            p.error(f"real_text needs --data DIR, a folder with train.tsv, valid.tsv and test.tsv "
                    f"(got {args.data!r}; make data CORPUS=bible-en-fr builds data/bible-en-fr)")
        args.run = args.run or recipes_config.latest_run("nmt")
        if not os.path.exists(os.path.join(args.run, "model.keras")):
            p.error(f"real_text: --run {args.run} has no model.keras; train one with python -m "
                    "recipes train nmt config=configs/nmt-real-text.json data=DIR")
    t_start = time.time()

    os.makedirs(TMP, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    from bench import report, timing

    # The generated corpus is cached under the runs root: keep the bench's copy in bench/tmp.
    recipes_config.RUNS_ROOT = os.path.join(TMP, "runs")

    results = {"machine": timing.machine(), "quick": q}
    results["machine"]["load_average_before"] = results["machine"].pop("load_average")
    results["gpu_note"] = (
        "No GPU on this machine: items 1-3 ran on CPU only; no GPU figures or MFU recorded."
        if not results["machine"]["gpu"] else "GPU present; figures above are CPU-only."
    )

    if "layers" in want:
        print("== 1. layers (forward + backward)", flush=True)
        from bench import layers

        results["layers"] = layers.run(repeats=3 if q else 9, inner=1 if q else 3,
                                       **({"batch": 8, "tq": 4, "tv": 8, "d": 16} if q else {}))

    if {"training", "profile"} & want:
        from bench import training
        from recipes.nmt import NmtConfig

        config = NmtConfig(train_size=4000, validation_size=200, test_size=200)
        if "training" in want:
            print("== 2. training step, ours vs tutorial-style reference", flush=True)
            results["training"] = training.run(
                config, batch_count=2 if q else 8, repeats=1 if q else 4,
                variants=training.VARIANTS[:1] if q else training.VARIANTS)
        if "profile" in want:
            print("== profile of our training step", flush=True)
            results["profile_top"] = training.profile(
                config, os.path.join(args.out, "profile.txt"), batch_count=2 if q else 4,
                rounds=1 if q else 2)

    if {"inference", "scaling"} & want:
        run_dir, exports, which = prepare_model()
        results["model"] = which
        if "inference" in want:
            print("== 3. inference: SavedModel vs TFLite", flush=True)
            from bench import inference
            from recipes.nmt import NmtConfig, load_pairs

            config = NmtConfig(**json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8")))
            sentences = [s for s, _ in load_pairs(config)[2][:64]]
            results["inference"] = inference.run(exports, sentences, batch=16 if q else 64,
                                                 repeats=2 if q else 3,
                                                 latency_repeats=3 if q else 10)
        if "scaling" in want:
            print("== 4. scaling of decode time", flush=True)
            from bench import scaling
            from recipes.nmt.inference import Translator

            translator = Translator.from_run(run_dir)
            kwargs = dict(lengths=(10, 50), beams=(1, 2), steps=5, repeats=1) if q else {"repeats": 3}
            results["scaling"] = scaling.run(translator.model, len(translator.source_vocab), **kwargs)
            scaling.plot(results["scaling"], os.path.join(args.out, "scaling.png"))

    if "step_precision" in want:
        print("== 5. a real-text training step by precision and XLA", flush=True)
        from bench import step_precision

        results["step_precision"] = step_precision.run(
            out=os.path.join(args.out, "results-step-precision.json"))

    if "real_text" in want:
        print("== 6. real text against a Keras tutorial-style reference", flush=True)
        from bench import real_text

        results["real_text"] = real_text.run(args.data, os.path.realpath(args.run), q, args.out)

    if "time_to_quality" in want:
        print("== 7. time to quality on real text, ours against the reference", flush=True)
        from bench import time_to_quality

        results["time_to_quality"] = time_to_quality.main_item(args.data, q, args.out)

    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_seconds"] = round(time.time() - t_start, 1)
    # Written whole or not at all: a killed bench leaves the previous results in place.
    recipes_config.write_json(os.path.join(args.out, "results.json"), results)
    markdown = report.markdown(results)
    from recipes.training import write_text_durable

    write_text_durable(os.path.join(args.out, "results.md"), markdown)
    print(markdown)
    print(f"wrote {args.out}/results.json and results.md in {results['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
