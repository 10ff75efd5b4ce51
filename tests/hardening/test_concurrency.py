"""Concurrency end to end through the CLI (issue 8), the scenario of
`tests/helpers/harden/concurrency.py`: submitters started together on one workspace and one
catalog, then processes moving one alias together. Every submitter exits 0 with its run recorded
once; `audit verify` passes; the alias's history holds exactly the moves the processes reported,
each following the one before, and the alias points to the last.

The scenario itself is one of the hardening guarantees (tests/hardening/test_guarantees.py):
`python bench/hardening.py --only concurrency` runs it with 4 submitters on SQLite and 16 on
PostgreSQL (4 each with `--quick`, in CI). The tests here check how it judges what it saw.
"""

from __future__ import annotations

from collections import Counter

from tests.helpers.harden.concurrency import SEEDS, Result, plan


def test_submitters_share_recipes_two_by_two_and_spread_over_the_seeds() -> None:
    jobs = plan(16)
    assert len(jobs) == 16
    assert set(Counter(name for name, _ in jobs).values()) == {2}
    assert {seed for _, seed in jobs} == set(range(SEEDS))
    assert all(seed == int(name.split("-")[1]) % SEEDS for name, seed in jobs)
    assert plan(2) == [("team-0", 0), ("team-1", 1)]


def test_every_count_short_of_its_tries_is_a_missed_guarantee() -> None:
    whole = Result("sqlite", 4, submitted_ok=4, runs_tried=4, runs_ok=4, audits=4, audits_ok=4,
                   movers=12, movers_ok=12, moves_tried=9, moves_ok=9)  # fmt: skip
    assert [f.met for f in whole.figures()] == [True] * 5
    short = Result("sqlite", 4, submitted_ok=4, runs_tried=4, runs_ok=4, audits=4, audits_ok=4,
                   movers=12, movers_ok=11, moves_tried=9, moves_ok=9)  # fmt: skip
    missed = [f.name for f in short.figures() if not f.met]
    assert missed == ["sqlite ×4: promote/rollback processes end cleanly"]


def test_a_catalog_filled_beforehand_is_judged_on_its_moves_alone() -> None:
    moves = Result("catalog", 4, with_submits=False, audits=1, audits_ok=1, movers=4, movers_ok=4)
    names = [f.name for f in moves.figures()]
    assert names == [
        "catalog ×4: audit verify after submits and each move round",
        "catalog ×4: promote/rollback processes end cleanly",
        "catalog ×4: alias moves reported = recorded, linked",
    ]
    # nothing moved is not a guarantee kept: a figure with no tries is missed
    assert [f.met for f in moves.figures()] == [True, True, False]
