"""`make bench`: speed of the zoo side by side with what users would pick instead.

Every figure is a ratio measured in one run, A and B interleaved (ABAB...), medians of several
repeats after a warm-up. `python -m bench [--quick]` writes bench/results.json, bench/results.md
and bench/scaling.png.
"""
