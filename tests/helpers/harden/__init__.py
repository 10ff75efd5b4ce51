"""Hardening scenarios (issue 8): bad input, tampering, crashes, concurrency, unsafe content.

Each module holds the scenarios of one promise and a `figures(options)` that measures them at a
given scale. `tests/hardening/test_<section>.py` runs single scenarios at a small scale in
`make test`; `tests/hardening/test_guarantees.py` runs every section's figures, which is what
`bench/hardening.py` drives through pytest (full counts, or a tenth with `--quick`, as in CI).
"""
