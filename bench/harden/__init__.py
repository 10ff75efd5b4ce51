"""Hardening scenarios (issue 8): bad input, tampering, crashes, concurrency, unsafe content.

Each module holds the scenarios of one promise and a `figures(options)` that measures them at
scale for `bench/hardening.py`; `tests/hardening/` runs the same scenarios at a smaller scale.
Modules import each other relatively so that both `python bench/hardening.py` (with `bench/`
on the path) and the tests (`bench.harden`, from the repository root) can load them.
"""
