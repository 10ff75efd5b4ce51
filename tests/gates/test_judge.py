"""A gate judged on a run (`compressgate.gates.judge`): any object shaped like a run record will
do, each seed is judged against its own baseline, and the decision is the seeds policy's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from compressgate.evaluators.results import Estimate, EvaluationResult
from compressgate.gates.judge import judge_gate
from compressgate.gates.power import SampleSizes, check_gate
from compressgate.gates.review import SeedJudgement, decide, evidence_digest
from compressgate.gates.verdicts import judge
from compressgate.recipes.manifest import BoundGate, RelativeGate

RUN = "run-20261123T100000Z-aaaaaa"
WHEN = "2026-11-23T10:01:00Z"


def accuracy(value: float) -> Estimate:
    return Estimate(
        estimate=value,
        ci_low=value - 0.02,
        ci_high=value + 0.015,
        n=450,
        method="wilson",
        higher_is_better=True,
    )


@dataclass
class Stage:
    artifact_sha256: str | None
    metrics: Mapping[str, Estimate]
    evaluations: Mapping[str, EvaluationResult] = field(default_factory=dict)


@dataclass
class Run:
    """Not the catalog's run record: the gates need nothing of the registry."""

    run_id: str
    seeds: Sequence[int]
    stages: dict[tuple[int, str], Stage]

    def stage(self, seed: int, name: str) -> Stage:
        return self.stages[seed, name]


def run_of(baselines: list[float], candidates: list[float]) -> Run:
    stages = {}
    for seed, (base, value) in enumerate(zip(baselines, candidates, strict=True)):
        stages[seed, "baseline"] = Stage(f"{seed:063x}b", {"accuracy": accuracy(base)})
        stages[seed, "int8"] = Stage(f"{seed:064x}", {"accuracy": accuracy(value)})
    return Run(RUN, list(range(len(candidates))), stages)


def test_each_seed_is_judged_against_its_own_baseline() -> None:
    gate = RelativeGate.model_validate(
        {"name": "drop", "owner": "ml-lead", "metric": "size.bytes", "max_drop": 3000}
    )
    # The same candidate size, against baselines of 95 and 99 kB: only seed 1 drops too much.
    run = Run(RUN, [0, 1], {})
    for seed, base in enumerate((95_000.0, 99_000.0)):
        run.stages[seed, "baseline"] = Stage(f"{seed:063x}b", {"size.bytes": Estimate.exact(base)})
        run.stages[seed, "int8"] = Stage(f"{seed:064x}", {"size.bytes": Estimate.exact(95_000.0)})
    decision = judge_gate(gate, run, "int8", baseline="baseline", decided_at=WHEN)
    expected = [
        judge(
            gate, {"size.bytes": Estimate.exact(95_000.0)}, {"size.bytes": Estimate.exact(base)}, {}
        )
        for base in (95_000.0, 99_000.0)
    ]
    assert [s.verdict for s in decision.seeds] == [e.verdict for e in expected] == ["pass", "fail"]
    assert [s.threshold for s in decision.seeds] == [e.threshold for e in expected]
    assert [(s.seed, s.variant_id, s.artifact_sha256) for s in decision.seeds] == [
        (0, f"{RUN}/0/int8", f"{0:064x}"),
        (1, f"{RUN}/1/int8", f"{1:064x}"),
    ]
    assert decision.verdict == "fail"  # every seed must pass


def test_the_decision_is_the_seeds_policys_with_its_time_and_evidence_digest() -> None:
    gate = BoundGate.model_validate(
        {"name": "floor", "owner": "ml-lead", "metric": "accuracy", "min": 0.955, "seeds": "worst"}
    )
    values = [0.98, 0.972, 0.99]
    run = run_of([0.99] * 3, values)
    decision = judge_gate(gate, run, "int8", baseline="baseline", decided_at=WHEN)
    per_seed = [
        SeedJudgement(
            seed=seed,
            variant_id=f"{RUN}/{seed}/int8",
            artifact_sha256=f"{seed:064x}",
            **judge(gate, {"accuracy": accuracy(v)}, {}, {}).model_dump(),
        )
        for seed, v in enumerate(values)
    ]
    by_hand = decide(
        gate, RUN, "int8", per_seed, [accuracy(v) for v in values], [accuracy(0.99)] * 3
    )
    assert decision.verdict == by_hand.verdict == "fail"  # the worst seed: 0.972 - 0.02 < 0.955
    assert decision.estimate == pytest.approx(0.972)
    assert decision.model_dump(exclude={"decided_at", "evidence_sha256"}) == by_hand.model_dump(
        exclude={"decided_at", "evidence_sha256"}
    )
    assert decision.decided_at == WHEN
    assert decision.power is None  # no sample sizes, no power check
    assert decision.evidence_sha256 == evidence_digest(decision)


def test_the_power_check_at_the_sample_sizes_is_part_of_the_evidence() -> None:
    gate = BoundGate.model_validate(
        {"name": "floor", "owner": "ml-lead", "metric": "accuracy", "min": 0.9}
    )
    sizes = SampleSizes(test=450)
    run = run_of([0.99], [0.97])
    decision = judge_gate(gate, run, "int8", baseline="baseline", decided_at=WHEN, sizes=sizes)
    check = check_gate(gate, sizes)
    assert check is not None
    assert decision.power == check.model_dump(mode="json")
    without = judge_gate(gate, run, "int8", baseline="baseline", decided_at=WHEN)
    assert decision.evidence_sha256 == evidence_digest(decision) != without.evidence_sha256
