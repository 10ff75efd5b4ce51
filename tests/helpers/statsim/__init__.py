"""Simulations of the gates' error rates and the evaluators' interval coverage (issue 23).

Each family module (`accuracy`, `seeds`, `fairness`, `calibration`, `latency`, `relative`,
`power`) exposes `rows(options) -> list[Row]`: the project's own code (the real evaluator
functions fed data drawn from a known distribution, `gates.verdicts.judge`,
`gates.review.decide`, `gates.power`) run many times, and the rate it measured beside the rate
it declares. `bench/statistics.py` prints them; `tests/gates/test_statistics.py` runs each
family at a small size in CI.
"""
