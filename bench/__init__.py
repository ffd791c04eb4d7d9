"""`make bench`: speed of the zoo side by side with what users would pick instead.

Every figure is a ratio measured in one run, A and B interleaved (ABAB...), medians of several
repeats after a warm-up. `python -m bench [--quick]` writes bench/results.json, bench/results.md
and bench/scaling.png.
"""

import hashlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_stamp(run_dir):
    """What a cached export of `run_dir` depends on: the run's weights (path, modification time)
    and the code that builds the graphs (every .py file of zoo/ and export/), so a changed
    decoder or search is exported again instead of timed in its old form."""
    digest = hashlib.sha256()
    for package in ("zoo", "export"):
        for folder, _, files in sorted(os.walk(os.path.join(ROOT, package))):
            for name in sorted(f for f in files if f.endswith(".py")):
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + f.read())
    weights = os.path.getmtime(os.path.join(run_dir, "model.keras"))
    return f"{os.path.realpath(run_dir)} {weights} code {digest.hexdigest()[:16]}"
