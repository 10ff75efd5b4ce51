"""Gates judged on a run record, in the catalog's terms.

`compressgate.gates.judge.judge_gate` judges a gate on every seed of a run and decides it over
the seeds; here each seed's judgement also becomes the catalog's row (`JudgementRecord`), bound
to the digest of the judged variant's recorded metrics. The engine judges each stage's gates
this way as soon as every seed has run the stage.
"""

from __future__ import annotations

from compressgate.gates.judge import judge_gate
from compressgate.gates.power import PowerCheck, SampleSizes
from compressgate.gates.review import GateDecision, evidence_digest
from compressgate.gates.verdicts import recording
from compressgate.recipes.manifest import GateSpec
from compressgate.registry.catalog.records import RunRecord
from compressgate.registry.catalog.repository import JudgementRecord, document
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.run.determinism import now
from compressgate.registry.run.variants import BASELINE


def judge_for_catalog(
    gate: GateSpec,
    record: RunRecord,
    name: str,
    sizes: SampleSizes | None = None,
    decided_at: str | None = None,
    power: PowerCheck | None = None,
) -> tuple[list[JudgementRecord], GateDecision]:
    """`gate` judged on stage `name` of every seed of `record` against that seed's baseline:
    each seed's decision row, and the gate's decision over the seeds by its seeds policy (with
    its power check at `sizes`), both decided at `decided_at` (default: now)."""
    when = decided_at or now()
    decision = judge_gate(
        gate, record, name, baseline=BASELINE, decided_at=when, sizes=sizes, power=power
    )
    # The rule as recorded names the judging method, for the audit to re-derive it by.
    decision = decision.model_copy(update={"rule": recording(gate)})
    decision = decision.model_copy(update={"evidence_sha256": evidence_digest(decision)})
    judgements: list[JudgementRecord] = []
    for judged in decision.seeds:
        metrics = {
            k: v.model_dump(mode="json") for k, v in record.stage(judged.seed, name).metrics.items()
        }
        judgements.append(
            JudgementRecord(
                run_id=record.run_id,
                seed=judged.seed,
                gate=gate.name,
                variant_id=judged.variant_id,
                stage=name,
                artifact_sha256=judged.artifact_sha256,
                metric=gate.metric,
                rule=recording(gate),
                owner=gate.owner,
                # the digest of the variant's recorded metrics, as the catalog holds it
                evidence_sha256=sha256_bytes(document(metrics).encode("utf-8")),
                decided_at=when,
                **judged.model_dump(exclude={"seed", "variant_id", "artifact_sha256"}),
            )
        )
    return judgements, decision
