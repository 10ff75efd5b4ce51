"""One gate judged on one stage of a run: every seed against its own baseline, then one decision.

For each seed of the run, the gate is judged on the variant of the stage it names against that
seed's baseline (`compressgate.gates.verdicts.judge`); the seeds policy makes one decision of
those judgements (`compressgate.gates.review.decide`), which carries the gate's power check at
the run's sample sizes when they are known (`compressgate.gates.power.check_gate`), the time it
was decided and the digest of its evidence.

The run is read through two small protocols (`JudgedRun`, `JudgedStage`) that the catalog's
run record satisfies, so that this layer needs nothing of the registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from compressgate.evaluators.results import AccuracyResult, Estimate, EvaluationResult
from compressgate.gates.power import PowerCheck, SampleSizes, check_gate
from compressgate.gates.review import (
    GateDecision,
    SeedJudgement,
    SeedSamples,
    decide,
    evidence_digest,
)
from compressgate.gates.verdicts import JUDGING, Judgement, judge
from compressgate.recipes.evaluation import comparison
from compressgate.recipes.manifest import BoundGate, GateSpec, RelativeGate

BASELINE = "baseline"  # the stage every gate is judged against, in every run


class JudgedStage(Protocol):
    """What a gate reads of one seed's stage: its stored variant and what was measured of it."""

    @property
    def artifact_sha256(self) -> str | None: ...
    @property
    def metrics(self) -> Mapping[str, Estimate]: ...
    @property
    def evaluations(self) -> Mapping[str, EvaluationResult]: ...


class JudgedRun(Protocol):
    """What a gate reads of a run (`compressgate.registry.catalog.records.RunRecord` is one)."""

    @property
    def run_id(self) -> str: ...
    @property
    def seeds(self) -> Sequence[int]: ...
    def stage(self, seed: int, name: str) -> JudgedStage: ...


def _paired_metric(gate: GateSpec) -> str | None:
    """The paired change a `relative` or `non_inferior` gate reads besides its metric."""
    if isinstance(gate, BoundGate) or (isinstance(gate, RelativeGate) and gate.basis == "estimate"):
        return None
    how = comparison(gate.metric)
    return how.ratio if isinstance(gate, RelativeGate) and gate.relative else how.difference


def _samples(stage: JudgedStage, reference: JudgedStage) -> SeedSamples | None:
    """One seed's per-sample evidence of accuracy: its test labels and the predictions of the
    stage's variant and of the seed's baseline (None where they were not recorded)."""
    candidate = stage.evaluations.get("accuracy")
    baseline = reference.evaluations.get("accuracy")
    if not isinstance(candidate, AccuracyResult) or not isinstance(baseline, AccuracyResult):
        return None
    if candidate.labels is None or baseline.labels not in (None, candidate.labels):
        return None
    return SeedSamples(
        labels=candidate.labels,
        candidate=candidate.predictions,
        baseline=baseline.predictions,
        ids=candidate.ids,
    )


def variant_id(run_id: str, seed: int, stage: str) -> str:
    """The name of one seed's variant of a stage: `RUN/SEED/STAGE`."""
    return f"{run_id}/{seed}/{stage}"


def judge_gate(
    gate: GateSpec,
    run: JudgedRun,
    name: str,
    *,
    baseline: str,
    decided_at: str,
    sizes: SampleSizes | None = None,
    power: PowerCheck | None = None,
    judging: int = JUDGING,
) -> GateDecision:
    """`gate` judged on stage `name` of every seed of `run` against stage `baseline` of the
    same seed, and decided over the seeds by its seeds policy (with its power check: `power`,
    computed once by the caller, else computed here at `sizes`). `decision.seeds` holds each
    seed's judgement, in the run's seed order."""
    per_seed: list[SeedJudgement] = []
    candidates: list[Estimate | None] = []
    baselines: list[Estimate | None] = []
    differences: list[float] = []
    read = _paired_metric(gate)
    changes: list[Estimate | None] = []
    samples: list[SeedSamples | None] = []
    for seed in run.seeds:
        stage = run.stage(seed, name)
        reference = run.stage(seed, baseline)
        judged: Judgement = judge(
            gate, stage.metrics, reference.metrics, stage.evaluations, judging=judging
        )
        assert stage.artifact_sha256 is not None
        per_seed.append(
            SeedJudgement(
                seed=seed,
                variant_id=variant_id(run.run_id, seed, name),
                artifact_sha256=stage.artifact_sha256,
                **judged.model_dump(),
            )
        )
        candidates.append(stage.metrics.get(gate.metric))
        baselines.append(reference.metrics.get(gate.metric))
        if read is not None:
            changes.append(stage.metrics.get(read))
        paired = stage.metrics.get("paired.accuracy_difference")
        if paired is not None:
            differences.append(paired.estimate)
        if gate.seeds == "mean" and gate.metric == "accuracy":
            samples.append(_samples(stage, reference))
    decision = decide(
        gate,
        run.run_id,
        name,
        per_seed,
        candidates,
        baselines,
        differences if len(differences) == len(per_seed) else None,
        {} if read is None else {read: changes},
        samples or None,
        judging=judging,
    )
    check = power
    if check is None and sizes is not None:
        check = check_gate(gate, sizes)
    if check is not None:
        decision = decision.model_copy(update={"power": check.model_dump(mode="json")})
    decision = decision.model_copy(update={"decided_at": decided_at})
    return decision.model_copy(update={"evidence_sha256": evidence_digest(decision)})
