"""A gate judged on a run (`compressgate.gates.judge`): any object shaped like a run record will
do, each seed is judged against its own baseline, and the decision is the seeds policy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from compressgate.evaluators.paired import non_inferiority_counts
from compressgate.evaluators.results import AccuracyResult, Estimate
from compressgate.evaluators.seeds import crossed_mean
from compressgate.gates.judge import judge_gate
from compressgate.gates.noninferiority import exact_alpha
from compressgate.gates.power import (
    SampleSizes,
    check_gate,
    every_seed_pass_probability,
    pass_probability,
)
from compressgate.gates.review import SeedJudgement, decide, evidence_digest
from compressgate.gates.verdicts import judge
from compressgate.recipes.manifest import BoundGate, NonInferiorGate, RelativeGate
from tests.helpers.statsim import seeds as simulated
from tests.helpers.statsim.seeds import Run, Stage

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


# --- `mean` reads each seed's per-sample evidence (issue 23) -------------------------------------


def shared_run(flips: list[float], *, labels: bool = True) -> tuple[Run, np.ndarray, np.ndarray]:
    """Three seeds on one test split: "down" samples (6%) each seed's candidate breaks with
    probability `flips[seed]`, "up" ones (2%) it fixes. The run as recorded, and the seeds'
    correctness (seeds × samples) of the baseline and of the candidate."""
    rng = np.random.default_rng(11)
    n = 450
    kind = rng.choice(3, size=n, p=[0.92, 0.06, 0.02])
    truth = rng.integers(0, 10, size=n)
    seeds, bases, cands = [], [], []
    for rho in flips:
        flip = rng.random(n) < rho
        base = kind != 2
        cand = np.where(kind == 1, ~flip, np.where(kind == 2, flip, True))
        seeds.append(simulated.Seed(truth, None, base, cand))
        bases.append(base)
        cands.append(cand)
    run = simulated.record(seeds)
    if not labels:
        for key, stage in run.stages.items():
            found = stage.evaluations["accuracy"]
            assert isinstance(found, AccuracyResult)
            evaluations = {
                **stage.evaluations,
                "accuracy": found.model_copy(update={"labels": None}),
            }
            run.stages[key] = simulated.Stage(stage.artifact_sha256, stage.metrics, evaluations)
    return run, np.stack(bases).astype(float), np.stack(cands).astype(float)


def test_mean_is_judged_on_the_recorded_labels_and_predictions_of_every_seed() -> None:
    gate = NonInferiorGate.model_validate(
        {"name": "accuracy", "owner": "o", "metric": "accuracy", "margin": 0.03, "seeds": "mean"}
    )
    run, base, cand = shared_run([0.4, 0.5, 0.6])
    decision = judge_gate(gate, run, "int8", baseline="baseline", decided_at=WHEN)
    level = 1 - 2 * exact_alpha(cand.shape[1], 0.03, 0.05)  # as the judge holds Tango's size
    expected = crossed_mean(cand - base, level, lowest=-1.0, highest=1.0)
    assert decision.ci_low == pytest.approx(expected.ci_low)
    assert decision.ci_high == pytest.approx(expected.ci_high)
    assert decision.estimate == pytest.approx(float(np.mean(cand - base)))
    assert decision.verdict == ("pass" if expected.ci_low > -0.03 else "fail")
    assert [s.seed for s in decision.seeds] == [0, 1, 2]  # each seed still judged on its own


def test_mean_without_recorded_labels_fails_and_judging_1_keeps_the_t_interval() -> None:
    gate = NonInferiorGate.model_validate(
        {"name": "accuracy", "owner": "o", "metric": "accuracy", "margin": 0.03, "seeds": "mean"}
    )
    run, base, cand = shared_run([0.4, 0.5, 0.6], labels=False)
    decision = judge_gate(gate, run, "int8", baseline="baseline", decided_at=WHEN)
    assert decision.verdict == "fail"
    assert "per-sample evidence" in decision.note
    # A decision recorded before issue 23 is re-derived as it was made: a t over the seeds.
    before = judge_gate(gate, run, "int8", baseline="baseline", decided_at=WHEN, judging=1)
    differences = (cand - base).mean(axis=1)
    half = stats.t.ppf(0.95, 2) * differences.std(ddof=1) / np.sqrt(3)
    assert before.ci_low == pytest.approx(differences.mean() - half)


# --- the power of `every` on a shared test split -----------------------------------------------


def test_every_on_a_shared_split_without_overlap_is_the_per_seed_power_to_the_k() -> None:
    per_seed = pass_probability(450, 0.02, 0.9, 0.03)
    assert every_seed_pass_probability(450, 0.02, 0.9, 0.03, 3) == pytest.approx(per_seed**3)


@pytest.mark.parametrize("overlap", [0.3, 1.0])
def test_every_on_a_shared_split_matches_enumeration_and_harris_bound(overlap: float) -> None:
    # By brute force over the fragile samples F and each seed's counts, with the paired
    # evaluator's own non-inferiority test deciding each (b, c).
    n, margin, discordance, k = 60, 0.1, 0.1, 3
    fragile = discordance / overlap
    decided: dict[tuple[int, int], bool] = {}

    def passes(b: int, c: int) -> bool:
        if (b, c) not in decided:
            result = non_inferiority_counts(b, c, n, margin=margin, alpha=0.05)
            decided[b, c] = result.passed
        return decided[b, c]

    # P(pass | m discordant pairs, split evenly either way), then over m | F and over F.
    given = [
        sum(stats.binom.pmf(b, m, 0.5) * passes(b, m - b) for b in range(m + 1))
        for m in range(n + 1)
    ]
    total = 0.0
    for f in range(n + 1):
        each = sum(stats.binom.pmf(m, f, overlap) * given[m] for m in range(f + 1))
        total += stats.binom.pmf(f, n, fragile) * each**k
    found = every_seed_pass_probability(n, margin, 0.9, discordance, k, overlap=overlap)
    assert found == pytest.approx(total, abs=1e-8)
    assert found >= pass_probability(n, margin, 0.9, discordance) ** k - 1e-12
