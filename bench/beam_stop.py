"""When beam search stops a sentence: at the next step's bound (the default) or at the exact
bound up to `max_length` (`exact=True`), on a trained nmt run and a test file.

    python -m bench.beam_stop --run RUN --test data/bible-en-fr/test.tsv [--sentences 512]

Each pass runs in a fresh process (a traced search keeps the stopping rule it was traced with),
the two rules interleaved (ABAB), beam 4 in batches of 64 through `recipes.load(RUN).translate`
after a warm-up pass; sacreBLEU and chrF of each on the same sentences. Writes
bench/results-beam-stop.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.beam_stop", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a trained nmt run folder")
    p.add_argument("--test", required=True, help="a source<TAB>target test file")
    p.add_argument("--sentences", type=int, default=512)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=os.path.join(HERE, "results-beam-stop.json"))
    p.add_argument("--one", choices=("default", "exact"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for path, what in ((args.run, "--run"), (args.test, "--test")):
        if not os.path.exists(path):
            print(f"error: {what} {path} does not exist", file=sys.stderr)
            return 2

    import sacrebleu

    with open(args.test, encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split("\t")[:2] for line in f if "\t" in line]
    pairs = pairs[: args.sentences]
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    if args.one is not None:
        return _one_pass(args.run, sources, args.one == "exact")

    seconds, results = {False: [], True: []}, {}
    for _ in range(args.rounds):
        for exact in (False, True):
            cmd = [sys.executable, "-m", "bench.beam_stop", "--run", args.run, "--test",
                   args.test, "--sentences", str(args.sentences), "--one",
                   "exact" if exact else "default"]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            one = json.loads(proc.stdout.strip().splitlines()[-1])
            seconds[exact].append(one["seconds"])
            results[exact] = one["translations"]
    rows = {}
    for exact, name in ((False, "next-step bound (default)"), (True, "exact bound (exact=True)")):
        median = statistics.median(seconds[exact])
        rows[name] = {
            "sentences_per_second": round(len(sources) / median, 1),
            "seconds": [round(s, 2) for s in seconds[exact]],
            "bleu": round(sacrebleu.corpus_bleu(results[exact], [references]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(results[exact], [references]).score, 2),
        }
    report = {
        "run": os.path.realpath(args.run), "test": args.test, "sentences": len(sources),
        "beam": 4, "batch": 64, "load_average": os.getloadavg(), "rows": rows,
        "speedup": round(statistics.median(seconds[True]) / statistics.median(seconds[False]), 2),
        "same_translations": sum(a == b for a, b in zip(results[False], results[True], strict=True)),
    }
    tmp = f"{args.out}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.out)
    print(json.dumps(report, indent=2))
    return 0


def _one_pass(run, sources, exact) -> int:
    """One timed pass with one stopping rule, after a warm-up pass; prints a JSON line."""
    from recipes import load
    from zoo import decoding

    # The search is traced on the first call: the rule set here is the one it keeps.
    decoding.beam_search.__defaults__ = decoding.beam_search.__defaults__[:-1] + (exact,)
    translator = load(run)

    def translate():
        return [r.text for i in range(0, len(sources), 64)
                for r in translator.translate(sources[i : i + 64], beam=4)]

    translate()
    start = time.perf_counter()
    translations = translate()
    print(json.dumps({"seconds": time.perf_counter() - start, "translations": translations}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
