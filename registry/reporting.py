"""Reading what a report of a run shows out of the catalog, each record once, and recording the
rendered report.

`gather` reads the run, its recipe as recorded with the recorded signature envelopes, the
recipe's earlier runs (each once: the history plots and the "since the previous approved run"
section share them), the variant chain and the evidence head; it checks the recorded signature
against the trust file as it is now and computes the review status; `compressgate.reports.assemble`
turns the records into the `ReportData` that `compressgate.reports.render` renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressgate.recipes.trust import Trust, load_trust
from compressgate.registry.kernel.errors import CompressgateError, IntegrityError

if TYPE_CHECKING:
    from compressgate.gates.review import ReviewStatus
    from compressgate.recipes.manifest import Recipe
    from compressgate.registry.catalog.records import RunRecord
    from compressgate.registry.catalog.repository import Catalog, RecipeRecord, RecordedReport
    from compressgate.registry.governance.policy import PolicyChain
    from compressgate.reports.model import Governance, ReportData, SignerInfo


def gather(
    catalog: Catalog,
    run_id: str,
    *,
    trust: Path | None = None,
    checkpoint: Path | None = None,
    chain: PolicyChain | None = None,
) -> ReportData:
    """Everything a report of `run_id` shows (see the module docstring), judged with the
    catalog's policy (`chain`), else (the unsigned regime) the trust file `trust`, else the one
    beside the recipe the run recorded."""
    from compressgate.recipes.load import parse_recipe
    from compressgate.registry.catalog.audit import read_checkpoint
    from compressgate.registry.governance.review import status, trust_path_of
    from compressgate.reports.assemble import HISTORY_RUNS, history, since_previous
    from compressgate.reports.model import Chain, RecipeIdentity, ReportData

    run = catalog.run(run_id)
    trust_file = trust_path_of(run, trust)
    info = catalog.run_info(run_id)
    recorded = catalog.recipe(run.recipe.sha256)
    parsed, _ = parse_recipe(recorded.content.encode("utf-8"), f"recipe {recorded.sha256[:12]}")
    trusted: Trust | None = None
    problem = None
    policy = chain.current if chain is not None else None
    if policy is not None:
        trusted = policy.trust
        trust_file = Path(f"the catalog's policy v{policy.version}")
    else:
        try:
            trusted = load_trust(trust_file)
        except CompressgateError as exc:
            problem = f"NOT verified: {exc}"
    trial = catalog.sweep_of_run(run_id)
    if trial is not None and trusted is not None:
        signers, verified, said = _trial_signature(catalog, trial, recorded, trusted, trust_file)
    else:
        signers, verified, said = _signature(catalog, recorded, trusted, trust_file, problem)
    review = status(
        catalog,
        run_id,
        chain
        if chain is not None and policy is not None
        else trusted
        if trusted is not None
        else (lambda: load_trust(trust_file)),
        record=run,
        recipe=parsed,
    )
    earlier = [
        catalog.run(listed.run_id)
        for listed in catalog.runs(recipe=run.recipe.name, limit=HISTORY_RUNS + 1)
        if listed.run_id < run.run_id
    ][:HISTORY_RUNS]
    previous = _previous_approved(
        catalog, earlier, trusted, trust_file, {recorded.sha256: (recorded, parsed)}
    )
    done = [s for s in run.stages if s.status == "done"]
    lineage: list[dict[str, Any]] = []
    if done:
        seed = run.seeds[0]
        final = [s for s in done if s.seed == seed][-1]
        lineage = [
            {"id": v.id, "stage": v.stage, "artifact_sha256": v.artifact_sha256}
            for v in catalog.lineage(f"{run_id}/{seed}/{final.name}")
        ]
    governance = _governance(catalog, run, chain)
    head = catalog.evidence_head()  # recorded reports left out: the same bytes next time
    shown = None
    if checkpoint is not None and trusted is not None:
        at, signer = read_checkpoint(checkpoint, trusted)
        shown = {"tree_size": at.size, "head_sha256": at.sha256, "signer": signer}
    return ReportData(
        run=run.model_dump(mode="json"),
        review=review,
        recipe=RecipeIdentity(
            name=run.recipe.name,
            version=run.recipe.version,
            sha256=run.recipe.sha256,
            path=run.recipe.path,
            description=" ".join(parsed.metadata.description.split()),
            owners=list(parsed.metadata.owners),
            signers=signers,
            verified=verified,
            signature=said,
            content=recorded.content,
        ),
        lock_sha256=info.lock_sha256,
        environment_sha256=info.environment_sha256,
        history=history(run, earlier),
        lineage=lineage,
        since_previous=None
        if previous is None
        else since_previous(run, recorded.content, previous[0], previous[1]),
        chain=Chain(size=head.size, head_sha256=head.sha256, checkpoint=shown),
        governance=governance,
    )


def _governance(catalog: Catalog, run: RunRecord, chain: PolicyChain | None) -> Governance:
    """The policy the run began under, its runner's attestation checked now, its packages."""
    from compressgate.registry.governance.attestation import check_attestation
    from compressgate.registry.kernel.dsse import Envelope
    from compressgate.reports.model import Governance

    fingerprint = run.environment.get("fingerprint", {})
    packages = fingerprint.get("packages", {}) if isinstance(fingerprint, dict) else {}
    current = chain.current if chain is not None else None
    began = None
    if chain is not None and current is not None:
        began = chain.at(catalog.run_seq(run.run_id) or 0)
    found = catalog.attestations([run.run_id]).get(run.run_id)
    said, attested = "no attestation: the run was recorded under the unsigned regime", False
    if began is not None:
        said = "NOT attested: no runner signed this run"
    if found is not None and chain is not None:
        policy = chain.at(found.seq)
        try:
            assert policy is not None
            info = catalog.run_info(run.run_id)
            done = check_attestation(
                Envelope.from_json(found.envelope.encode("utf-8"), source="its attestation"),
                trust=policy.trust,
                policy_version=policy.version,
                record=run,
                decisions=catalog.gate_decisions(run.run_id),
                environment_sha256=info.environment_sha256,
                lock_sha256=info.lock_sha256,
                source="its attestation",
            )
            said, attested = f"attested by {done.owner} under policy v{policy.version}", True
        except (CompressgateError, AssertionError) as exc:
            said = f"NOT verified: {exc}"
    return Governance(
        regime="policy" if began is not None else "unsigned",
        policy_version=None if began is None else began.version,
        policy_sha256=None if began is None else began.sha256,
        current_version=None if current is None else current.version,
        runner=None if found is None else found.owner,
        runner_keyid=None if found is None else found.keyid,
        attestation=said,
        attested=attested,
        packages={str(k): str(v) for k, v in sorted(packages.items())},
    )


def _trial_signature(
    catalog: Catalog,
    trial: tuple[str, int],
    recorded: RecipeRecord,
    trust: Trust,
    trust_file: Path,
) -> tuple[list[SignerInfo], bool, str]:
    """A sweep trial's recipe is signed by no one itself: it verifies when its sweep's recorded
    envelope and its base recipe's verify now, and the trial's recorded parameters applied to
    them derive exactly the recorded recipe's bytes."""
    from compressgate.recipes.load import LoadedRecipe, parse_recipe
    from compressgate.recipes.sweep import (
        LoadedSweep,
        check_sweep_signature,
        parse_sweep,
        trial_recipe,
    )
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.reports.model import SignerInfo

    sweep_id, number = trial
    signers = [SignerInfo(owner=o, keyid="?") for o in recorded.signers]
    try:
        sweep = catalog.sweep(sweep_id)
        base_record = catalog.recipe(sweep.recipe_sha256)
        base_data = base_record.content.encode("utf-8")
        base = LoadedRecipe(
            Path(base_record.path), parse_recipe(base_data, base_record.path)[0], base_data
        )
        _, base_ok, base_said = _signature(catalog, base_record, trust, trust_file, None)
        if not base_ok:
            raise IntegrityError(f"its base recipe {base_record.sha256[:12]}: {base_said}")
        data = sweep.content.encode("utf-8")
        signed = check_sweep_signature(
            data,
            sweep.envelope.encode("utf-8"),
            trust,
            base,
            source=f"sweep {sweep_id}'s recorded envelope",
            name=f"sweep {sweep_id}",
            trust_source=str(trust_file),
        )
        row = next(t for t in catalog.sweep_trials(sweep_id) if t.trial == number)
        loaded = LoadedSweep(Path(f"{sweep.name}.yaml"), parse_sweep(data, sweep_id)[0], data)
        derived, _ = trial_recipe(loaded, base, row.params, trial=number, sweep_id=sweep_id)
        if sha256_bytes(derived) != recorded.sha256:
            raise IntegrityError(
                f"the recorded recipe is not what trial {number} of sweep {sweep_id} derives"
            )
    except (CompressgateError, StopIteration) as exc:
        return signers, False, f"NOT verified: trial {number} of sweep {sweep_id}: {exc}"
    return (
        [SignerInfo(owner=s.owner, keyid=s.keyid) for s in signed],
        True,
        f"verified against {trust_file}: trial {number} of sweep {sweep_id}, derived from the "
        "signed sweep and its signed recipe",
    )


def _signature(
    catalog: Catalog,
    recorded: RecipeRecord,
    trust: Trust | None,
    trust_file: Path,
    problem: str | None,
) -> tuple[list[SignerInfo], bool, str]:
    """The recorded recipe's signers, whether a recorded envelope verifies now, and what the
    check said; the newest envelope that verifies wins."""
    from compressgate.recipes.signing import check_signature
    from compressgate.reports.model import SignerInfo

    envelopes = catalog.recipe_envelopes(recorded.sha256)
    signers = [SignerInfo(owner=o, keyid="?") for o in recorded.signers]
    said = problem or "NOT verified: no envelope recorded"
    if trust is None:
        return signers, False, said
    for index, envelope in reversed(list(enumerate(envelopes))):
        try:
            signed = check_signature(
                recorded.content.encode("utf-8"),
                envelope.encode("utf-8"),
                trust,
                source=f"recorded envelope {index + 1} of {len(envelopes)}",
                name=f"recipe {recorded.sha256[:12]}",
                trust_source=str(trust_file),
            )
        except CompressgateError as exc:
            if said.endswith("no envelope recorded"):
                said = f"NOT verified: {exc}"
            continue
        where = f"recorded envelope {index + 1} of {len(envelopes)}"
        return (
            [SignerInfo(owner=s.owner, keyid=s.keyid) for s in signed],
            True,
            f"verified against {trust_file} ({where})",
        )
    return signers, False, said


def _previous_approved(
    catalog: Catalog,
    earlier: list[RunRecord],
    trust: Trust | None,
    trust_file: Path,
    known: dict[str, tuple[RecipeRecord, Recipe]],
) -> tuple[RunRecord, str] | None:
    """The newest earlier run of the recipe whose review is approved now, with its recipe's
    recorded text (from `known`, the recipe records read already, when it is one of them)."""
    from compressgate.registry.governance.review import status

    for before in earlier:
        try:
            found: ReviewStatus = status(
                catalog,
                before.run_id,
                trust if trust is not None else (lambda: load_trust(trust_file)),
                record=before,
                recipe=known[before.recipe.sha256][1] if before.recipe.sha256 in known else None,
            )
        except CompressgateError:
            continue
        if found.status == "approved":
            sha = before.recipe.sha256
            return before, (known[sha][0] if sha in known else catalog.recipe(sha)).content
    return None


def record_report(
    catalog: Catalog,
    run_id: str,
    body: bytes,
    *,
    fmt: str,
    out: Path,
    data: ReportData,
    actor: str | None = None,
) -> RecordedReport:
    """Record the report file `out` (its bytes' sha256) before it takes its name: the caller
    renames it into place only once this returns, so a report file exists only if the catalog
    recorded it."""
    from importlib.metadata import PackageNotFoundError, version

    from compressgate.registry.catalog.repository import ReportEntry, default_actor, now
    from compressgate.registry.kernel.digests import sha256_bytes

    try:
        tool = f"compressgate {version('compressgate')}"
    except PackageNotFoundError:
        tool = "compressgate"
    return catalog.record_report(
        ReportEntry(
            sha256=sha256_bytes(body),
            run_id=run_id,
            format=fmt,
            size_bytes=len(body),
            path=str(out.resolve()),
            head_size=data.chain.size,
            rendered_at=now(),
            actor=actor or default_actor(),
            tool=tool,
        )
    )
