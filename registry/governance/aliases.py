"""Aliases (`production`, `staging`): promotion of approved variants, and rollback.

An alias points to a variant by an event in the catalog; it is never edited. Promotion records
a move to a variant whose run's review is `approved` (every gate passed, was approved or was
waived by its owner, as checked now against the trust file) and which every gate judged: each
gate's stage is the variant's own or one before it, at least one its own; and whose own seed
passed every gate (with `seeds: mean` or `worst` a run may pass a gate that one of its seeds
failed: that seed's variants are not promoted, unless the gate says `promotion: run`).
Rollback records a move back to the alias's previous known-good variant: the newest earlier
target that was not itself rolled back from and whose run is still approved (a waiver may have
expired since).

Under a catalog's policy every move is signed by a releaser's key (`release`): the actor is the
key's owner, and the signed release is recorded with the move. Under the unsigned regime (no
policy) a move needs no key and `actor` is free text, as before.

`resolve` answers a deployment's question, what an alias is now: the latest move's release
checked as `audit verify` checks it, the variant's artifact bytes hashed to the recorded digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressgate.gates.review import ReviewStatus
from compressgate.registry.catalog.repository import (
    AliasMove,
    Catalog,
    RunInfo,
    VariantRecord,
    safe_url,
)
from compressgate.registry.catalog.store import Artifact, ArtifactStore, StoredFile
from compressgate.registry.catalog.views import AliasResult, VariantShow
from compressgate.registry.governance.policy import PolicyChain
from compressgate.registry.governance.release import (
    Move,
    Released,
    authorize,
    check_move,
    check_release,
    release_envelope,
)
from compressgate.registry.governance.review import TrustSource, load_trust_for, status
from compressgate.registry.governance.uri import check_alias, resolve_alias
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.dsse import Envelope
from compressgate.registry.kernel.errors import (
    CompressgateError,
    IntegrityError,
    ManifestError,
    NotFoundError,
    Refused,
)
from compressgate.registry.kernel.keys import PrivateKey

Judge = Path | PolicyChain | None  # a trust file option (unsigned regime) or the policy chain


@dataclass(frozen=True)
class GateStatus:
    variant: VariantRecord
    review: ReviewStatus | None
    problem: str | None  # None: the variant may be promoted

    @property
    def passed(self) -> bool:
        return self.problem is None


def _source(catalog: Catalog, run: str, trust: Judge) -> TrustSource:
    if isinstance(trust, PolicyChain) and trust.current is not None:
        return trust
    return load_trust_for(catalog, run, trust if isinstance(trust, Path) else None)


def gate_status(catalog: Catalog, variant: VariantRecord, trust: Judge) -> GateStatus:
    """Whether `variant` may be promoted: its run is no sweep's trial, its review is `approved`
    (every gate passed, was approved or waived by its owner), every gate judged its stage or one
    before it, at least one its own stage, and its own seed passed every gate (a gate with
    `promotion: run` takes the decision over the seeds instead; a waived failure is waived for
    every seed)."""
    run = variant.run_id
    trial = catalog.sweep_of_run(run)
    if trial is not None:  # judged on a selection split, picked among many: never released
        return GateStatus(
            variant,
            None,
            f"run {run} is trial {trial[1]} of sweep {trial[0]}: a sweep's trials are ranked on "
            f"a selection split, not judged for release (`compressgate sweep propose {trial[0]} "
            f"--trial {trial[1]}`, signed and submitted, is: its gates judge it on the test "
            "split)",
        )
    found = status(catalog, run, _source(catalog, run, trust))
    if found.status != "approved":
        return GateStatus(
            variant, found, f"run {run} is {found.status}: {'; '.join(found.reasons)}"
        )
    chain = {v.stage for v in catalog.lineage(variant.id)}
    later = [g.decision for g in found.gates if g.decision.stage not in chain]
    if later:
        shown = ", ".join(f"'{d.gate}' (after {d.stage})" for d in later)
        return GateStatus(
            variant,
            found,
            f"gate(s) {shown} judge a stage after '{variant.stage}': promote the variant they "
            "judged, or a later one",
        )
    if not any(g.decision.stage == variant.stage for g in found.gates):
        return GateStatus(
            variant,
            found,
            f"no gate judged stage '{variant.stage}' of run {run}: only a variant a gate has "
            "passed can be promoted",
        )
    failed = _failed_seed(found, variant.seed)
    if failed:
        return GateStatus(
            variant,
            found,
            f"seed {variant.seed} failed gate(s) {failed} on its own (the seeds policy passed "
            "the run): only a variant whose own seed passed may be promoted, unless the gate "
            "says 'promotion: run'",
        )
    return GateStatus(variant, found, None)


def _failed_seed(found: ReviewStatus, seed: int) -> str:
    """The gates (named, with their seeds policy) that `seed` failed on its own, where the gate
    promotes by seed (`promotion: seed`, the default) and its failure was not waived."""
    failed = []
    for g in found.gates:
        decision = g.decision
        if decision.rule.get("promotion", "seed") != "seed" or g.state == "waived":
            continue
        if any(s.seed == seed and s.verdict == "fail" for s in decision.seeds):
            failed.append(f"'{decision.gate}' ({decision.policy})")
    return ", ".join(failed)


def show_variant(catalog: Catalog, ref: str, trust: Judge) -> VariantShow:
    """A variant with its per-seed judgements, the evaluations recorded for its stage, the
    aliases pointing at it, and whether it may be promoted (and if not, why)."""
    variant = catalog.variant(ref)
    try:
        found = gate_status(catalog, variant, trust)
        promotable, problem = found.passed, found.problem
    except NotFoundError as exc:  # no trust file to check the sign-offs with
        promotable, problem = False, str(exc)
    judgements = catalog.judgements(run_id=variant.run_id)
    run = catalog.run(variant.run_id)
    notes = catalog.annotations("variant", variant.id)
    return VariantShow(
        variant=variant,
        decisions=[j for j in judgements if j.seed == variant.seed],
        evaluations=list(run.stage(variant.seed, variant.stage).evaluations),
        aliases=[name for name, move in catalog.aliases().items() if move.variant_id == variant.id],
        promotable=promotable,
        problem=problem,
        tags=notes.tags,
        description=notes.description,
        annotations=notes.history,
    )


def promote(
    catalog: Catalog,
    ref: str,
    alias: str,
    *,
    reason: str,
    actor: str | None = None,
    trust: Judge = None,
    key: PrivateKey | None = None,
) -> AliasResult:
    """Point `alias` at the variant `ref`: the move, and whether the alias changed."""
    chain = _policy(trust, key, actor)
    check_alias(alias)
    alias = _scoped(catalog, chain, alias, catalog.variant(ref))
    _authorize(catalog, chain, key, alias, catalog.variant(ref))
    best = _best_record(catalog, ref, trust)
    variant = best.variant
    if not best.passed:
        raise Refused(
            f"variant {variant.id} ({variant.artifact_sha256[:12]}) cannot be promoted to "
            f"{alias}: {best.problem}",
            hint=f"`compressgate review status {variant.run_id}` shows each gate and its owner",
        )
    current = catalog.alias(alias)
    if current is not None and current.variant_id == variant.id:
        return AliasResult(alias=alias, changed=False, move=current)
    previous = current.variant_id if current else None
    release = _release(catalog, chain, key, alias, "promote", variant, previous, reason)
    move = catalog.move_alias(
        alias,
        variant,
        action="promote",
        reason=reason,
        actor=str(release["owner"]) if release else actor,
        expected_previous=previous,
        release=release,
    )
    return AliasResult(alias=alias, changed=True, move=move)


def rollback(
    catalog: Catalog,
    alias: str,
    *,
    to: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    trust: Judge = None,
    key: PrivateKey | None = None,
) -> AliasResult:
    """Move `alias` back to its previous known-good variant, or to `to`."""
    chain = _policy(trust, key, actor)
    check_alias(alias)
    alias = resolve_alias(catalog, chain, alias)
    history = catalog.alias_history(alias)
    if not history:
        raise NotFoundError(
            f"alias {alias} has never pointed anywhere",
            hint="`compressgate promote VARIANT --alias NAME` sets it",
        )
    current = history[-1].variant_id
    if to is not None:
        target = catalog.variant(to)
        _authorize(catalog, chain, key, alias, target)
        if target.id == current:
            raise ManifestError(f"alias {alias} already points to {target.id}; nothing changed")
        checked = gate_status(catalog, target, trust)
        if not checked.passed:
            raise Refused(f"cannot roll {alias} back to {target.id}: {checked.problem}")
    else:
        target = _known_good(catalog, alias, history, trust)
        _authorize(catalog, chain, key, alias, target)
    why = reason or f"rolled back from {current}"
    release = _release(catalog, chain, key, alias, "rollback", target, current, why)
    move = catalog.move_alias(
        alias,
        target,
        action="rollback",
        reason=why,
        actor=str(release["owner"]) if release else actor,
        expected_previous=current,
        release=release,
    )
    return AliasResult(alias=alias, changed=True, move=move)


def _policy(trust: Judge, key: PrivateKey | None, actor: str | None) -> PolicyChain | None:
    """The policy chain a move is signed under (None: the unsigned regime); under a policy a
    move without a key is refused and `actor` is not taken."""
    if not isinstance(trust, PolicyChain) or trust.current is None:
        return None
    if key is None:
        raise IntegrityError(
            f"an unsigned alias move is refused: the catalog's policy v{trust.current.version} "
            "is in force",
            hint="sign the move with a releaser's key: --key KEY",
        )
    if actor is not None and actor != trust.current.trust.owner_of(key.public):
        raise ManifestError(
            f"--actor {actor!r} is not taken under a trust policy: the actor is the owner of "
            "the key that signs the move",
            hint="leave out --actor (and $COMPRESSGATE_ACTOR)",
        )
    return trust


def _authorize(
    catalog: Catalog,
    chain: PolicyChain | None,
    key: PrivateKey | None,
    alias: str,
    variant: VariantRecord,
) -> None:
    """Before anything else is judged: the key may move `alias` to a variant of this run under
    the policy in force (exit 3 otherwise); nothing under the unsigned regime."""
    if chain is None or chain.current is None:
        return
    assert key is not None
    policy = chain.current
    authorize(
        [key.public],
        policy.trust,
        policy.version,
        alias,
        variant.run_id,
        list(catalog.run_info(variant.run_id).signers),
        f"the move of {alias} signed with key {key.public.keyid[:16]}…",
    )


def _check_attested(
    catalog: Catalog, chain: PolicyChain, alias: str, variant: VariantRecord
) -> None:
    """Under a policy, the variant's run was attested by a runner the policy trusted when it
    was recorded, and the statement still matches the catalog; a run from before the policy
    (the unsigned regime) passes unless the alias's rule names its runners (`attested_by`)."""
    from compressgate.registry.governance.attestation import check_attestation

    assert chain.current is not None
    rule = chain.current.trust.alias_rule(alias)
    run_id = variant.run_id
    found = catalog.attestations([run_id]).get(run_id)
    started = catalog.run_seq(run_id) or 0
    if found is None:
        if chain.at(started) is None and rule.attested_by is None:
            return  # recorded under the unsigned regime
        raise IntegrityError(
            f"run {run_id} has no runner's attestation: it cannot be released to {alias}",
            hint="a run under the policy is attested with the runner's --key of run/submit/ci",
        )
    policy = chain.at(found.seq)
    assert policy is not None
    envelope = Envelope.from_json(
        found.envelope.encode("utf-8"), source=f"run {run_id}'s attestation"
    )
    info = catalog.run_info(run_id)
    done = check_attestation(
        envelope,
        trust=policy.trust,
        policy_version=policy.version,
        record=catalog.run(run_id),
        decisions=catalog.gate_decisions(run_id),
        environment_sha256=info.environment_sha256,
        lock_sha256=info.lock_sha256,
        source=f"run {run_id}'s attestation",
    )
    if rule.attested_by is not None and done.owner not in rule.attested_by:
        raise IntegrityError(
            f"run {run_id} was attested by '{done.owner}'; alias {alias} takes runs attested by "
            f"{', '.join(rule.attested_by)} only (policy v{chain.current.version})",
            hint="run the recipe where the policy's named runner runs it (e.g. CI)",
        )


def _release(
    catalog: Catalog,
    chain: PolicyChain | None,
    key: PrivateKey | None,
    alias: str,
    action: str,
    variant: VariantRecord,
    previous: str | None,
    reason: str,
) -> dict[str, object] | None:
    """The signed release of a move under the policy in force (checked as `audit verify`
    checks it), as the catalog records it; None under the unsigned regime."""
    if chain is None or chain.current is None:
        return None
    assert key is not None
    policy = chain.current
    run = catalog.run_info(variant.run_id)
    _check_attested(catalog, chain, alias, variant)
    move = Move(
        alias=alias,
        action=action,
        variant_id=variant.id,
        artifact_sha256=variant.artifact_sha256,
        run_id=variant.run_id,
        recipe_sha256=variant.recipe_sha256,
        previous_variant_id=previous,
    )
    head = catalog.head()
    owner = policy.trust.owner_of(key.public) or "?"
    envelope = release_envelope(
        move,
        key,
        owner=owner,
        reason=reason,
        head=(head.size, head.sha256),
        policy=(policy.version, policy.sha256),
    )
    released = check_release(
        envelope,
        trust=policy.trust,
        policy_version=policy.version,
        move=move,
        recipe_signers=list(run.signers),
        source=f"the {action} of {alias} signed with key {key.public.keyid[:16]}…",
    )
    return {
        "owner": released.owner,
        "keyid": released.keyid,
        "policy_version": policy.version,
        "envelope": envelope.to_json().decode("utf-8"),
    }


def _best_record(catalog: Catalog, ref: str, trust: Judge) -> GateStatus:
    """The gate status of the variant `ref` names. A sha256 prefix names bytes that several
    records may share (an export repeats int8's bytes; a cached stage repeats an earlier run's):
    the newest record whose gates all passed is taken, else the newest record."""
    variant = catalog.variant(ref)
    if "/" in ref:
        return gate_status(catalog, variant, trust)
    statuses = [
        gate_status(catalog, v, trust) for v in catalog.records_of_artifact(variant.artifact_sha256)
    ]
    return next((s for s in statuses if s.passed), gate_status(catalog, variant, trust))


def _known_good(
    catalog: Catalog, alias: str, history: list[AliasMove], trust: Judge
) -> VariantRecord:
    """The newest earlier target not rolled back from and whose gates all still pass."""
    current = history[-1].variant_id
    rolled_back_from = {m.previous_variant_id for m in history if m.action == "rollback"}
    for move in reversed(history[:-1]):
        if move.variant_id in rolled_back_from or move.variant_id == current:
            continue
        candidate = catalog.variant(move.variant_id)
        if gate_status(catalog, candidate, trust).passed:
            return candidate
    raise NotFoundError(
        f"alias {alias} has no earlier known-good variant to roll back to",
        hint="name one with --to VARIANT",
    )


def _scoped(catalog: Catalog, chain: PolicyChain | None, alias: str, variant: VariantRecord) -> str:
    """Under a policy an alias belongs to one recipe: NAME becomes RECIPE:NAME (the variant's
    recipe), unless the policy shares NAME across recipes; a RECIPE:NAME given must be the
    variant's recipe's. Under the unsigned regime, as given."""
    if chain is None or chain.current is None:
        return alias
    recipe = catalog.run_info(variant.run_id).recipe
    scope, _, name = alias.rpartition(":")
    if chain.current.trust.alias_rule(name).shared:
        if scope:
            raise ManifestError(f"alias {name} is shared across recipes by the policy: give {name}")
        return name
    if scope and scope != recipe:
        raise IntegrityError(
            f"alias {alias} belongs to recipe {scope}; {variant.id} is a variant of {recipe}",
            hint=f"an alias moves only between variants of its recipe: {recipe}:{name}",
        )
    return f"{recipe}:{name}"


# --- serving: where an alias (or a variant named directly) points now, verified ---------------


@dataclass(frozen=True)
class Resolved:
    """Where an alias points now, each part checked: the move's release (under a policy), the
    variant's record, the artifact's bytes at `path`; and its run's review as it stands. A
    variant named directly (a `compressgate://RECIPE/VARIANT` URI) has no move: `move` is None
    and so is what its release would have said. `checked` says in words what was verified."""

    move: AliasMove | None
    variant: VariantRecord
    run: RunInfo
    path: Path
    released: Released | None  # None: moved under the unsigned regime, or no move
    policy_version: int | None  # the version the move was signed under
    review: ReviewStatus | None  # None: it could not be checked (`review_problem` says why)
    review_problem: str | None
    checked: tuple[str, ...]


def resolve(
    catalog: Catalog,
    chain: PolicyChain,
    store: ArtifactStore,
    alias: str,
    *,
    recipe: str | None = None,
    trust: Judge = None,
    serve: Path,
) -> Resolved:
    """Where `alias` (of `recipe`, when several recipes have one by that name) points now,
    once its move's release verifies, the variant's record names the move's artifact and the
    bytes in the store hash to it (exit 3 otherwise); exit 4 naming the aliases there are. The
    run's review is reported as it stands, not required."""
    move = current_move(catalog, chain, alias, recipe)
    variant = moved_variant(catalog, move)
    released, version = verify_move(catalog, chain, move, variant)
    run = catalog.run_info(variant.run_id)
    if recipe is not None and run.recipe != recipe:
        raise NotFoundError(
            f"alias {move.alias} points at a variant of recipe {run.recipe}, not {recipe}",
            hint=f"`compressgate alias resolve {alias} --recipe {run.recipe}`",
        )
    path = verified_path(store, variant, serve)
    review, problem = _review(catalog, run.run_id, trust)
    checked = (
        "the move was made under the unsigned regime (no policy): it has no release to check"
        if released is None
        else f"the move's release, signed by {released.owner} (key {released.keyid[:16]}…), "
        f"counts under policy v{version}",
        f"variant {variant.id}'s record names the move's artifact",
        _bytes_checked(variant),
    )
    return Resolved(move, variant, run, path, released, version, review, problem, checked)


def resolve_variant(
    catalog: Catalog,
    store: ArtifactStore,
    recipe: str,
    ref: str,
    *,
    trust: Judge = None,
    serve: Path,
) -> Resolved:
    """The variant `ref` of `recipe` names (`variant_of`), once its file's bytes hash to the
    artifact digest its record holds (exit 3 otherwise, as for an alias). Named directly, it
    went through no alias: there is no move, and no release, to verify. The run's review is
    reported as it stands, not required, as `resolve` reports it."""
    variant = variant_of(catalog, recipe, ref)
    run = catalog.run_info(variant.run_id)
    path = verified_path(store, variant, serve)
    review, problem = _review(catalog, run.run_id, trust)
    checked = (
        f"variant {variant.id} is of recipe {recipe}",
        _bytes_checked(variant),
        "named directly, not through an alias: no move or release to check",
    )
    return Resolved(None, variant, run, path, None, None, review, problem, checked)


def variant_of(catalog: Catalog, recipe: str, ref: str) -> VariantRecord:
    """The variant `ref` names (RUN/SEED/STAGE, or a prefix of an artifact's sha256, as
    `catalog show` takes it), of `recipe`: exit 4 if it is another recipe's. Records of
    several runs may hold one artifact (a cached stage repeats an earlier run's bytes): a
    prefix takes `recipe`'s newest run's record, as `catalog show` takes the newest run's."""
    variant = catalog.variant(ref)
    recipes: dict[str, str] = {}

    def recipe_of(record: VariantRecord) -> str:
        if record.run_id not in recipes:
            recipes[record.run_id] = catalog.run_info(record.run_id).recipe
        return recipes[record.run_id]

    if "/" in ref:
        if recipe_of(variant) != recipe:
            raise NotFoundError(
                f"variant {variant.id} is of recipe {recipe_of(variant)}, not {recipe}",
                hint=f"compressgate://{recipe_of(variant)}/{ref} names it",
            )
        return variant
    records = catalog.records_of_artifact(variant.artifact_sha256)  # newest first
    mine = [r for r in records if recipe_of(r) == recipe]
    if not mine:
        others = ", ".join(sorted({recipe_of(r) for r in records}))
        raise NotFoundError(
            f"artifact {variant.artifact_sha256[:16]}… is no variant of recipe {recipe}: its "
            f"variants are of {others}",
            hint=f"compressgate://{recipe_of(variant)}/{ref} names it",
        )
    newest = [r for r in mine if r.run_id == mine[0].run_id]
    return newest[-1]  # within the run, the stage that made it first


def _review(catalog: Catalog, run_id: str, trust: Judge) -> tuple[ReviewStatus | None, str | None]:
    """The run's review as it stands, or why it could not be checked."""
    try:
        return status(catalog, run_id, _source(catalog, run_id, trust)), None
    except NotFoundError as exc:  # no trust file to check the run's sign-offs with
        return None, str(exc)


def _bytes_checked(variant: VariantRecord) -> str:
    if len(variant.files) > 1:
        return (
            f"its {len(variant.files)} files' bytes hash to their recorded digests now, and "
            "their list to the artifact's"
        )
    return f"its file's bytes hash to the recorded digest {variant.artifact_sha256[:16]}… now"


def current_move(
    catalog: Catalog, chain: PolicyChain, alias: str, recipe: str | None = None
) -> AliasMove:
    """The latest move (a promotion or a rollback) of `alias`; with `recipe`, of that recipe's
    alias by that name (RECIPE:NAME under a policy, unless the policy shares NAME). Exit 4
    naming the aliases there are."""
    if recipe is not None and ":" in alias + recipe:
        raise ManifestError(
            f"alias {alias!r} with --recipe {recipe!r}: name the recipe once",
            hint="give NAME --recipe RECIPE, or RECIPE:NAME",
        )
    check_alias(alias if recipe is None else f"{recipe}:{alias}")
    policy = chain.current
    if recipe is None:
        name = resolve_alias(catalog, chain if policy is not None else None, alias)
    elif policy is not None and not policy.trust.alias_rule(alias).shared:
        name = f"{recipe}:{alias}"
    else:  # a shared alias, or the unsigned regime, which keeps names as they were given
        name = f"{recipe}:{alias}" if catalog.alias(f"{recipe}:{alias}") else alias
    move = catalog.alias(name)
    if move is None:
        raise NotFoundError(
            f"no alias {name} in the catalog {safe_url(catalog.url)}; its aliases: "
            f"{', '.join(catalog.aliases()) or 'none yet'}",
            hint="`compressgate promote VARIANT --alias NAME` sets one",
        )
    return move


def moved_variant(catalog: Catalog, move: AliasMove) -> VariantRecord:
    """The variant a move points at, holding the artifact the move names (exit 3 otherwise)."""
    try:
        variant = catalog.variant(move.variant_id)
    except NotFoundError:
        raise IntegrityError(
            f"alias {move.alias} points at {move.variant_id}, a variant the catalog does not hold",
            hint="the move was written around compressgate; `compressgate audit verify`",
        ) from None
    if variant.artifact_sha256 != move.artifact_sha256:
        raise IntegrityError(
            f"alias {move.alias} was moved to artifact {move.artifact_sha256[:16]}…, variant "
            f"{variant.id}'s is {variant.artifact_sha256[:16]}…",
            hint="a record was changed around compressgate; `compressgate audit verify`",
        )
    return variant


def verify_move(
    catalog: Catalog, chain: PolicyChain, move: AliasMove, variant: VariantRecord
) -> tuple[Released | None, int | None]:
    """A move's signed release and the policy version it counts under, checked as `audit
    verify` checks it: against the policy in force when the move was recorded (exit 3 if it
    does not count); (None, None) for a move made under the unsigned regime."""
    policy = chain.at(move.seq)
    done = check_move(
        move,
        catalog.releases([move.seq]).get(move.seq),
        policy,
        run_id=variant.run_id,
        recipe_sha256=variant.recipe_sha256,
        recipe_signers=list(catalog.run_info(variant.run_id).signers),
        hint="the move was written around compressgate; `compressgate audit verify`",
    )
    return (None, None) if done is None or policy is None else (done, policy.version)


def verified_path(store: ArtifactStore, variant: VariantRecord, serve: Path) -> Path:
    """The variant's file (an absolute path), its bytes hashed now to the recorded digest (exit
    3 otherwise): a one-file artifact's blob in the store; for several files (ONNX weights as
    external data) the primary file of a copy under `serve/SHA256/`, side by side by name."""
    try:
        artifact = Artifact.from_dict({"sha256": variant.artifact_sha256, "files": variant.files})
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(
            f"variant {variant.id} names no usable file list ({type(exc).__name__}: {exc})",
            hint="`compressgate audit verify` finds the changed record",
        ) from None
    if len(artifact.files) == 1:
        blob = store.blob_path(artifact.sha256)
        _check_file(blob, artifact.files[0], variant)
        return blob.absolute()
    folder = serve / artifact.sha256
    if not folder.is_dir():
        for stored in artifact.files:
            _check_file(store.blob_path(stored.sha256), stored, variant)
        _copy_atomically(store, artifact, folder)
    for stored in artifact.files:
        _check_file(folder / stored.name, stored, variant)
    return (folder / artifact.primary).absolute()


def _check_file(path: Path, stored: StoredFile, variant: VariantRecord) -> None:
    what = f"variant {variant.id}'s file {stored.name} ({path})"
    if not path.is_file():
        raise IntegrityError(f"{what} is missing", hint="restore it from a backup")
    if sha256_file(path) != stored.sha256:
        raise IntegrityError(
            f"{what} no longer hashes to its recorded digest {stored.sha256[:16]}…: its bytes "
            "changed",
            hint="restore it from a backup; `compressgate audit verify` checks every artifact",
        )


def _copy_atomically(store: ArtifactStore, artifact: Artifact, folder: Path) -> None:
    """The artifact's files in `folder` (each verified as it is copied), renamed into place
    whole: a process that loses the race to make it keeps the winner's copy."""
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".copy.", dir=folder.parent))
    try:
        store.materialize(artifact, scratch)
        for stored in artifact.files:
            (scratch / stored.name).chmod(0o444)
        if not folder.exists():
            scratch.rename(folder)
    except OSError as exc:
        if not folder.is_dir():
            raise CompressgateError(
                f"cannot copy the artifact {artifact.sha256[:16]}…'s files to {folder}: {exc}",
                hint="a deployment reads a one-file artifact in place; several files need a "
                "writable workspace",
            ) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
