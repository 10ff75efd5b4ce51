"""The sweep driver's pure parts: what the sampler asks (deterministic by batch, resumable, no
repeats), the Pareto frontier (against a brute-force check), the choice and its why, and the
selection split carved from the training data."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
import torch

from compressgate.recipes.data import Split, Splits
from compressgate.recipes.sweep import Sweep
from compressgate.registry.catalog.records import SweepTrialRecord
from compressgate.registry.run.sweep import ask_batch, choose, frontier, rule_text
from compressgate.registry.run.trial import Selection, carve

AXES = {
    "stages[prune].sparsity": [0.5, 0.625, 0.75, 0.875],
    "stages[int8].method": ["static", "dynamic"],
    "stages[int8].keep_float": [["first", "last"], []],
}


def sweep(**changes: Any) -> Sweep:
    body: dict[str, Any] = {
        "apiVersion": "compressgate/v1",
        "kind": "Sweep",
        "metadata": {"name": "s", "version": 1, "owners": ["ml-platform"]},
        "recipe": {"path": "recipe.yaml", "sha256": "0" * 64},
        "axes": AXES,
        "objectives": [
            {"metric": "size.bytes", "stage": "export", "goal": "minimize"},
            {"metric": "latency.batch_64.speedup_p50", "stage": "export", "goal": "maximize"},
        ],
        "strategy": {"kind": "grid", "seed": 0, "batch": 2},
    }
    body.update(changes)
    return Sweep.model_validate(body)


def trial(
    number: int, params: dict[str, Any], status: str = "passed", **objectives: float
) -> SweepTrialRecord:
    return SweepTrialRecord(
        sweep_id="sweep-x",
        trial=number,
        run_id=None,
        params=params,
        status=status,
        objectives={k.replace("__", "."): v for k, v in objectives.items()},
        failed_gates=[] if status != "failed" else ["accuracy"],
        error=None,
        attempts=1,
        seconds=1.0,
        recorded_at="2026-12-03T00:00:00Z",
    )


def key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


# --- what the sampler asks ------------------------------------------------------------------


def test_a_grid_asks_every_variant_once_in_a_seeded_order() -> None:
    s = sweep()
    asked: list[dict[str, Any]] = []
    history: list[SweepTrialRecord] = []
    for batch in range(8):
        got = ask_batch(s, batch, history, 2)
        history += [trial(len(history) + i, p, size__bytes=1.0) for i, p in enumerate(got)]
        asked += got
    grid = [dict(zip(AXES, v, strict=True)) for v in itertools.product(*AXES.values())]
    assert sorted(map(key, asked)) == sorted(map(key, grid))
    assert ask_batch(s, 8, history, 2) == []  # the space is exhausted: nothing more is asked
    # another seed, another order; the same seed, the same one
    other = ask_batch(sweep(strategy={"kind": "grid", "seed": 1, "batch": 2}), 0, [], 2)
    assert ask_batch(s, 0, [], 2) == asked[:2]
    assert [key(p) for p in other] != [key(p) for p in asked[:2]]


@pytest.mark.parametrize("kind", ["random", "tpe", "nsga2"])
def test_each_strategy_asks_the_same_batch_from_the_same_history(kind: str) -> None:
    objectives = (
        [{"metric": "size.bytes", "stage": "export", "goal": "minimize"}] if kind == "tpe" else None
    )
    changes: dict[str, Any] = {
        "strategy": {"kind": kind, "seed": 3, "batch": 4},
        "budget": {"trials": 12},
    }
    if objectives:
        changes["objectives"] = objectives
    s = sweep(**changes)
    first = ask_batch(s, 0, [], 4)
    assert len({key(p) for p in first}) == 4  # no variant twice
    history = [
        trial(
            i,
            p,
            "passed" if i % 2 else "failed",
            size__bytes=100.0 - i,
            latency__batch_64__speedup_p50=1.0 + i,
        )
        for i, p in enumerate(first)
    ]
    again = ask_batch(s, 1, history, 4)
    assert again == ask_batch(s, 1, history, 4)  # a resumed sweep asks exactly this again
    assert not {key(p) for p in again} & {key(p) for p in first}
    for params in again:
        assert all(params[a] in values for a, values in AXES.items())


# --- the frontier and the choice --------------------------------------------------------------


def brute_frontier(s: Sweep, trials: list[SweepTrialRecord]) -> list[int]:
    signs = [1 if o.goal == "minimize" else -1 for o in s.objectives]
    ok = [t for t in trials if t.status == "passed"]

    def point(t: SweepTrialRecord) -> list[float]:
        return [g * t.objectives[o.metric] for g, o in zip(signs, s.objectives, strict=True)]

    def dominated(t: SweepTrialRecord) -> bool:
        return any(
            all(a <= b for a, b in zip(point(u), point(t), strict=True)) and point(u) != point(t)
            for u in ok
        )

    return sorted(t.trial for t in ok if not dominated(t))


def test_the_frontier_is_the_non_dominated_passing_trials() -> None:
    s = sweep()
    rng = np.random.default_rng(7)
    grid = [dict(zip(AXES, v, strict=True)) for v in itertools.product(*AXES.values())]
    for _ in range(20):
        trials = [
            trial(
                i,
                p,
                str(rng.choice(["passed", "passed", "failed"])),
                size__bytes=float(rng.integers(1000, 9000)),
                latency__batch_64__speedup_p50=float(rng.uniform(1, 8)),
            )
            for i, p in enumerate(grid)
        ]
        assert frontier(s, trials) == brute_frontier(s, trials)


def test_the_choice_follows_the_rule_and_says_why() -> None:
    s = sweep(
        choose={
            "objective": "size.bytes",
            "constraints": [{"metric": "latency.batch_64.speedup_p50", "min": 5.0}],
        }
    )
    p = [dict(zip(AXES, v, strict=True)) for v in itertools.product(*AXES.values())]
    trials = [
        trial(0, p[0], size__bytes=1000.0, latency__batch_64__speedup_p50=3.0),  # smallest, slow
        trial(1, p[1], size__bytes=2000.0, latency__batch_64__speedup_p50=5.5),  # chosen
        trial(2, p[2], size__bytes=3000.0, latency__batch_64__speedup_p50=7.0),
        trial(3, p[3], size__bytes=2500.0, latency__batch_64__speedup_p50=5.0),  # dominated
        trial(4, p[4], "failed", size__bytes=10.0, latency__batch_64__speedup_p50=9.0),
        trial(5, p[5], "crashed"),
    ]
    picked = choose(s, trials)
    assert picked.frontier == [0, 1, 2]
    assert picked.chosen == 1
    assert rule_text(s) == "smallest size.bytes with latency.batch_64.speedup_p50 >= 5"
    assert picked.why.startswith(
        "smallest size.bytes with latency.batch_64.speedup_p50 >= 5: trial 1, size.bytes 2,000"
    )
    assert "among 2 of 3 frontier trials" in picked.why
    none = choose(s, [t for t in trials if t.trial in (0, 4, 5)])
    assert none.chosen is None and none.frontier == [0]
    assert none.why == f"no frontier trial meets the rule: {rule_text(s)}"
    nothing = choose(s, [t for t in trials if t.trial in (4, 5)])
    assert (nothing.frontier, nothing.chosen) == ([], None)
    assert nothing.why == "no trial passed every gate (1 failed a gate, 1 crashed, of 2)"


# --- the selection split ------------------------------------------------------------------------


def test_the_selection_split_is_carved_from_train_and_the_test_split_is_left_out() -> None:
    n = 400
    train = Split(
        x=torch.arange(n, dtype=torch.float32).reshape(n, 1),
        y=torch.tensor([i % 4 for i in range(n)]),
        ids=torch.arange(n),
    )
    test = Split(x=torch.full((50, 1), -1.0), y=torch.zeros(50, dtype=torch.long))
    splits = Splits(train=train, calibration=test, test=test, class_names=("a", "b", "c", "d"))
    carved = carve(splits, Selection(0.2, 0), 0)
    assert len(carved.test) == 80 and len(carved.train) == 320
    assert torch.bincount(carved.test.y).tolist() == [20, 20, 20, 20]  # stratified
    assert carved.test.ids is not None and carved.train.ids is not None
    together = torch.cat([carved.test.ids, carved.train.ids]).sort().values
    assert together.tolist() == list(range(n))  # a partition of train
    assert not (carved.test.x < 0).any()  # nothing of the test split
    assert carved.provenance["selection"] == "0.2 of train, seed 0"
    assert torch.equal(carve(splits, Selection(0.2, 0), 0).test.ids, carved.test.ids)
    assert not torch.equal(carve(splits, Selection(0.2, 1), 0).test.ids, carved.test.ids)
