"""The workspace: compressgate's Python API.

A `Workspace` is one folder (`--workspace`, else $COMPRESSGATE_WORKSPACE, else ./.compressgate)
with its catalog (`--catalog URL`, else $COMPRESSGATE_CATALOG, else WORKSPACE/catalog.db), its
artifact store and the trust it judges with. It is built once per command, resolves each of
those once, and passes verified objects down — a `PreparedRecipe` (read, parsed and verified
once, with its data loaded once per seed and each gate's power computed once), an open
`Catalog` — never a path for a lower layer to read again.

    from compressgate.registry import Workspace

    with Workspace(Path(".compressgate")) as ws:
        result = ws.submit(Path("recipes/resnet.yaml"))
        print(result.review.status)

Every verb returns a typed result (`compressgate.registry.results`, or the catalog's and gates'
own records); errors are `compressgate.registry.kernel.errors` exceptions carrying exit codes.
The trust file is found by one rule (`trust_file`): `--trust`, else $COMPRESSGATE_TRUST, else
`trust.yaml` beside the recipe; for a recorded run, beside the recipe the run recorded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from compressgate.registry.kernel.errors import CompressgateError, IntegrityError, NotFoundError

# The results (pydantic models) are imported by the verbs that build them: a read command that
# prints catalog rows never builds their classes.
if TYPE_CHECKING:
    from compressgate.gates.ci import CiResult
    from compressgate.gates.review import ReviewStatus
    from compressgate.recipes.trust import Trust
    from compressgate.registry.catalog.records import AttestationRecord, RunRecord, StageRecord
    from compressgate.registry.catalog.repository import (
        AliasMove,
        AuditReport,
        Catalog,
        JudgementRecord,
        RecordedReport,
        RunListing,
    )
    from compressgate.registry.catalog.store import ArtifactStore
    from compressgate.registry.catalog.views import AliasResult, Diff, Lineage, VariantShow
    from compressgate.registry.governance.policy import PolicyChain
    from compressgate.registry.governance.review import TrustSource
    from compressgate.registry.kernel.keys import PrivateKey
    from compressgate.registry.results import (
        EnvListing,
        EnvSummary,
        EnvVerifyResult,
        ReproduceResult,
        RunSummary,
        SignoffResult,
        SubmitResult,
    )
    from compressgate.registry.run.engine import RunOptions
    from compressgate.registry.run.evaluate import OnDemandEvaluation
    from compressgate.registry.run.isolation import Outcome
    from compressgate.registry.run.prepared import PreparedRecipe
    from compressgate.reports.model import ReportData

WORKSPACE_ENV = "COMPRESSGATE_WORKSPACE"
DEFAULT_WORKSPACE = Path(".compressgate")


def workspace_dir(explicit: Path | None) -> Path:
    """`--workspace`, else $COMPRESSGATE_WORKSPACE, else ./.compressgate."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)


def _no_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite catalog whose file does not exist (yet)."""
    prefix = "sqlite:///"
    return url.startswith(prefix) and not Path(url.removeprefix(prefix)).is_file()


def _private_key(path: Path | None) -> PrivateKey | None:
    from compressgate.registry.kernel.keys import load_private_key

    return None if path is None else load_private_key(path)


def is_run_id(ref: str) -> bool:
    return ref.startswith("run-") and "/" not in ref


class WorkspaceBase:
    """What a workspace holds, each resolved once: its folder, catalog, artifact store, trust
    files, and recipes prepared (read, parsed, verified) against them. `Workspace` adds the
    verbs."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        catalog: str | None = None,
        trust: Path | None = None,
        envs: Path | None = None,
        key: Path | None = None,
    ) -> None:
        self.root = workspace_dir(root)
        self.catalog_option = catalog
        self.trust_option = trust
        self.envs_option = envs
        self.key_option = key  # the runner's private key: attests runs under a policy
        self.base_ref: str | None = None  # `ci --base`: trust as the protected branch has it
        self._catalog: Catalog | None = None
        self._writable = False
        self._trusts: dict[Path, Trust] = {}
        self._chain: PolicyChain | None = None

    # --- what a workspace holds, opened once --------------------------------------------------

    @cached_property
    def catalog_url(self) -> str:
        from compressgate.registry.catalog.repository import catalog_url

        return catalog_url(self.root, self.catalog_option)

    def catalog(self, *, write: bool = False) -> Catalog:
        """The catalog, opened on first use and kept open. Reading needs it to exist and be of
        the current schema (exit 4, exit 5); `write` creates it, or migrates an older one."""
        from compressgate.registry.catalog.repository import Catalog

        if self._catalog is not None and (self._writable or not write):
            return self._catalog
        if self._catalog is not None:  # opened to read, now to write: migrate it in place
            self._catalog.migrate()
            self._writable = True
            return self._catalog
        self._catalog = Catalog(self.catalog_url, create=write, migrate=write)
        self._writable = write
        return self._catalog

    @cached_property
    def store(self) -> ArtifactStore:
        from compressgate.registry.catalog.store import ArtifactStore

        return ArtifactStore(self.root)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- trust ------------------------------------------------------------------------------

    def policy_chain(self) -> PolicyChain:
        """The catalog's policy versions, each verified (exit 3 for one that does not count);
        empty where there is no catalog yet or it has no policy (the unsigned regime)."""
        from compressgate.registry.governance.policy import PolicyChain, load_chain

        if self._chain is None:
            if self._catalog is None and _no_sqlite_file(self.catalog_url):
                return PolicyChain(())  # nothing to open: no catalog yet
            try:
                catalog = self.catalog()
            except NotFoundError:
                return PolicyChain(())
            self._chain = load_chain(catalog)
        return self._chain

    def judge(self, run_id: str) -> TrustSource:
        """What a run's sign-offs are checked with: the policy chain, else (unsigned regime)
        the run's trust file, loaded only if there is a sign-off to check."""
        chain = self.policy_chain()
        if chain.current is None:
            return self.run_trust(run_id)
        self._policy_file()  # a --trust that is not the policy in force is refused
        return chain

    def _judge_option(self) -> Path | PolicyChain | None:
        chain = self.policy_chain()
        if chain.current is None:
            return self.trust_option
        self._policy_file()  # a --trust that is not the policy in force is refused
        return chain

    def _policy_file(self) -> Path | None:
        """Under a policy, the policy in force as a file (its exact bytes from the catalog); a
        `--trust` file must be exactly it (exit 3 otherwise): a trust file is a proposal."""
        from compressgate.registry.governance.policy import materialize
        from compressgate.registry.kernel.digests import sha256_file

        current = self.policy_chain().current
        if current is None:
            return None
        if self.trust_option is not None:
            given = sha256_file(self.trust_option) if self.trust_option.is_file() else None
            if given != current.sha256:
                raise IntegrityError(
                    f"{self.trust_option} is not the catalog's policy in force (version "
                    f"{current.version}, sha256 {current.sha256[:16]}…): a trust file is only "
                    "a proposal here",
                    hint="leave out --trust; propose a change with `compressgate trust propose "
                    "FILE`, signed by the root owners",
                )
        return materialize(self.root, current)

    def trust_file(self, recipe: Path) -> Path:
        """The trust for `recipe`: the catalog's policy in force; without one (the unsigned
        regime), `--trust`, else $COMPRESSGATE_TRUST, else trust.yaml beside it; none is
        exit 4."""
        from compressgate.registry.authoring import require_trust

        policy = self._policy_file()
        if policy is not None:
            return policy
        found = require_trust(
            recipe, self.trust_option, ": a run verifies the recipe's signature first"
        )
        return found if self.base_ref is None else self._base_trust(found)

    def _base_trust(self, found: Path) -> Path:
        """`ci --base REF` without a catalog policy: the trust file as the protected branch has
        it, never the pull request's. A trust file the pull request changed counts only as the
        next version of a signed policy on the base, signed by that policy's root threshold;
        one the base does not have, or any other change, is refused (exit 3)."""
        from compressgate.recipes.policy import (
            check_on_its_own,
            check_policy,
            envelope_path,
            parse_policy,
        )
        from compressgate.registry.changes import file_at
        from compressgate.registry.kernel.digests import sha256_bytes
        from compressgate.registry.kernel.dsse import Envelope
        from compressgate.registry.kernel.files import write_atomic

        assert self.base_ref is not None
        base = file_at(self.base_ref, found)
        if base is None:
            raise IntegrityError(
                f"{found}: {self.base_ref} has no such trust file; a trust file added by the "
                "change under review is not trusted to judge it",
                hint="add the trust file on the protected branch first (or adopt a policy in "
                "the catalog: `compressgate trust init`)",
            )
        mine = found.read_bytes()
        if mine != base:
            try:
                previous_envelope = file_at(self.base_ref, envelope_path(found))
                if previous_envelope is None:
                    raise IntegrityError(f"{self.base_ref}: {found.name} is not a signed policy")
                previous = check_on_its_own(
                    base,
                    Envelope.from_json(previous_envelope, source=f"{self.base_ref}:{found.name}"),
                    source=f"{self.base_ref}:{found.name}",
                )
                raw = envelope_path(found).read_bytes()
                parse_policy(mine, str(found))
                signed = Envelope.from_json(raw, source=str(envelope_path(found)))
                check_policy(mine, signed, source=str(found), previous=previous)
            except (CompressgateError, OSError) as exc:
                raise IntegrityError(
                    f"{found} differs from {self.base_ref}'s: the change under review changes "
                    f"the trust it is judged by, which only the base policy's root owners may "
                    f"do ({exc})",
                    hint="sign the new trust file as the next version (`compressgate trust "
                    "sign --offline`) with the base policy's root threshold",
                ) from None
            base = mine  # the next version, signed by the base policy's root threshold
        target = self.root / "policy" / f"base-{sha256_bytes(base)[:16]}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, base)
        return target

    def trust(self, path: Path) -> Trust:
        """The trust file at `path`, loaded once per workspace."""
        from compressgate.recipes.trust import load_trust

        if path not in self._trusts:
            self._trusts[path] = load_trust(path)
        return self._trusts[path]

    def run_trust_file(self, run_id: str) -> Path:
        """The trust file a recorded run is judged with: `--trust`, else trust.yaml beside the
        recipe the run recorded."""
        from compressgate.registry.governance.review import trust_path_for

        policy = self._policy_file()
        if policy is not None:
            return policy
        return trust_path_for(self.catalog(), run_id, self.trust_option)

    def run_trust(self, run_id: str) -> Callable[[], Trust]:
        """The trust of a recorded run, loaded only when a sign-off must be checked."""
        return lambda: self.trust(self.run_trust_file(run_id))

    # --- recipes ----------------------------------------------------------------------------

    def prepare(self, path: Path) -> PreparedRecipe:
        """The recipe at `path`, its signature verified against its trust file (exit 3 before
        any work): read once, parsed once, handed down from here."""
        from compressgate.recipes.signing import verify_recipe
        from compressgate.registry.run.prepared import PreparedRecipe

        trust_file = self.trust_file(path)
        trust = self.trust(trust_file)
        verified = verify_recipe(path, trust, trust_source=str(trust_file))
        return PreparedRecipe(verified.loaded, trust, str(trust_file), verified)

    def runner(self) -> tuple[PrivateKey, str] | None:
        """Under a policy, the runner's key (`key`) and its owner, who must hold the `runner`
        role (exit 3 without a key, or with another's); None under the unsigned regime."""
        from compressgate.registry.kernel.keys import load_private_key

        current = self.policy_chain().current
        if current is None:
            return None
        if self.key_option is None:
            raise IntegrityError(
                f"a run under the catalog's policy v{current.version} is attested by its runner: "
                "no key given",
                hint="give --key RUNNER_KEY (an owner with the 'runner' role), or set "
                "$COMPRESSGATE_RUNNER_KEY",
            )
        key = load_private_key(self.key_option)
        owner = current.trust.keys_with_role("runner").get(key.public)
        if owner is None:
            who = current.trust.owner_of(key.public)
            raise IntegrityError(
                f"key {key.public.keyid[:16]}… "
                + (f"of '{who}' lacks" if who else "is not in the policy and lacks")
                + f" the 'runner' role in policy v{current.version}: it cannot attest a run",
                hint="a runner's key attests runs; the policy's root owners grant the role",
            )
        return key, owner

    def _run_options(self, trust: Path, *, attested: bool = True, **settings: Any) -> RunOptions:
        """The options of a run; `attested` (under a policy): it needs a runner's key."""
        from compressgate.registry.run.engine import RunOptions

        current = self.policy_chain().current
        if current is not None and attested:
            self.runner()  # exit 3 before any work without a runner's key
            settings["runner_key"] = self.key_option
            settings["trusted_runners"] = tuple(
                k.public_hex for k in current.trust.keys_with_role("runner")
            )
        return RunOptions(
            workspace=self.root,
            trust=trust,
            catalog=self.catalog_option,
            envs=self.envs_option,
            **settings,
        )

    def _attest(self, outcome: Outcome) -> None:
        """Under a policy, the runner's signed statement of the finished run, recorded."""
        from compressgate.registry.governance.attestation import attest

        current = self.policy_chain().current
        found = self.runner()
        if current is None or found is None:
            return
        key, owner = found
        catalog = self.catalog(write=True)
        info = catalog.run_info(outcome.record.run_id)
        head = catalog.head()
        envelope = attest(
            outcome.record,
            list(outcome.decisions),
            key,
            owner=owner,
            environment_sha256=info.environment_sha256,
            lock_sha256=info.lock_sha256,
            policy=(current.version, current.sha256),
            head=(head.size, head.sha256),
        )
        catalog.record_attestation(
            run_id=outcome.record.run_id,
            owner=owner,
            keyid=key.public.keyid,
            policy_version=current.version,
            envelope=envelope.to_json().decode("utf-8"),
        )


class Workspace(WorkspaceBase):
    """A workspace: one method per command, each returning a typed result."""

    # --- running ----------------------------------------------------------------------------

    def run(
        self,
        recipe: Path | PreparedRecipe,
        *,
        force: bool = False,
        progress: Any = None,
        on_stage: Callable[[StageRecord], None] | None = None,
        isolate: bool = False,
    ) -> RunSummary:
        """Run a verified recipe: every stage output lands in the artifact store and every
        record in the catalog. The summary is built from what the engine holds."""
        from compressgate.registry.catalog.repository import safe_url
        from compressgate.registry.results import summarize_outcome
        from compressgate.registry.run import engine

        prepared = self.prepare(recipe) if isinstance(recipe, Path) else recipe
        trust = Path(prepared.trust_source or "")
        options = self._run_options(
            trust, force=force, progress=progress, on_stage=on_stage, isolate=isolate
        )
        outcome = engine.execute(prepared, lambda: self.catalog(write=True), options)
        self._attest(outcome)
        return summarize_outcome(outcome, safe_url(self.catalog_url))

    def submit(self, recipe: Path, *, force: bool = False, progress: Any = None) -> SubmitResult:
        """Verify the signature and trust, run the recipe, judge its gates: the run's review."""
        from compressgate.registry.authoring import power_checks
        from compressgate.registry.governance.review import status
        from compressgate.registry.results import SubmitResult

        prepared = self.prepare(recipe)
        checks, _ = power_checks(prepared)
        summary = self.run(prepared, force=force, progress=progress)
        assert prepared.trust is not None
        chain = self.policy_chain()
        judge = chain if chain.current is not None else prepared.trust
        found = status(self.catalog(), summary.run_id, judge, recipe=prepared.recipe)
        return SubmitResult(
            run=summary,
            review=found.model_dump(mode="json"),
            power=[c.model_dump(mode="json") for c in checks],
        )

    def reproduce(
        self,
        run_id: str,
        *,
        progress: Any = None,
        on_stage: Callable[[StageRecord], None] | None = None,
    ) -> ReproduceResult:
        """Re-run a recorded run from scratch and compare every stage's artifact digest."""
        from compressgate.registry.results import reproduce_result
        from compressgate.registry.run.reproduce import reproduce

        trust = self.trust_file(Path(self.catalog().run(run_id).recipe.path))
        # A reproduction records nothing here (its run lives in a temporary store): no runner.
        options = self._run_options(trust, attested=False, progress=progress, on_stage=on_stage)
        _, again, comparisons = reproduce(run_id, options)
        return reproduce_result(run_id, again, comparisons)

    def evaluate(
        self, variant: str, *, against: str | None = None, only: Sequence[str] = ()
    ) -> OnDemandEvaluation:
        """Measure a stored variant against a baseline with the recipe's evaluators (or
        `only`); nothing is written."""
        from compressgate.registry.run.evaluate import evaluate_variant

        return evaluate_variant(
            self.root,
            variant,
            against,
            only,
            catalog=self.catalog_option,
            trust_path=self.trust_option,
        )

    # --- pinned environments ----------------------------------------------------------------

    @property
    def envs_dir(self) -> Path:
        from compressgate.registry.run import envs

        return envs.store_dir(self.root, self.envs_option)

    def env_create(self, lock: Path, *, say: Callable[[str], None] | None = None) -> EnvSummary:
        """Build the environment of `lock` (or find it built)."""
        from compressgate.registry.results import env_summary
        from compressgate.registry.run import envs

        return env_summary(envs.ensure(lock, self.envs_dir, say=say))

    def env_list(self) -> EnvListing:
        from compressgate.registry.results import env_listing

        return env_listing(self.envs_dir)

    def env_verify(self, lock: Path, *, current: bool = False) -> EnvVerifyResult:
        """The environment of `lock` (or, with `current`, the running interpreter's), package by
        package against the lock."""
        from compressgate.registry.results import env_verification

        return env_verification(lock, self.envs_dir, current=current)

    # --- the catalog ------------------------------------------------------------------------

    def runs(
        self, *, recipe: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RunListing]:
        """Runs, newest first, optionally of one recipe, a page at a time."""
        return self.catalog().runs(recipe=recipe, limit=limit, offset=offset)

    def show_run(self, run_id: str) -> tuple[RunRecord, list[JudgementRecord], str]:
        """A run's full record (the JSON export), its per-seed gate outcomes, and where it is."""
        from compressgate.registry.catalog.repository import safe_url

        records = self.catalog()
        return records.run(run_id), records.judgements(run_id=run_id), safe_url(records.url)

    def attestation(self, run_id: str) -> AttestationRecord | None:
        """The run's attestation by its runner, if it has one (under a policy)."""
        return self.catalog().attestations([run_id]).get(run_id)

    def show_variant(self, ref: str) -> VariantShow:
        from compressgate.registry.governance.aliases import show_variant

        return show_variant(self.catalog(), ref, self._judge_option())

    def lineage(self, ref: str) -> Lineage:
        from compressgate.registry.catalog.views import Lineage

        records = self.catalog()
        chain = records.lineage(ref)
        return Lineage(run=records.run_info(chain[-1].run_id), chain=chain)

    def diff(self, ref_a: str, ref_b: str) -> Diff:
        from compressgate.registry.catalog.views import diff

        records = self.catalog()
        return diff(records.variant(ref_a), records.variant(ref_b))

    # --- aliases ----------------------------------------------------------------------------

    def promote(
        self,
        ref: str,
        alias: str,
        *,
        reason: str = "",
        actor: str | None = None,
        key_path: Path | None = None,
    ) -> AliasResult:
        """Point an alias at a variant of an approved run (exit 1 otherwise); under a policy,
        signed with a releaser's key."""
        from compressgate.registry.governance.aliases import promote

        catalog = self.catalog(write=True)
        return promote(
            catalog,
            ref,
            alias,
            reason=reason or "promoted",
            actor=actor,
            trust=self._judge_option(),
            key=_private_key(key_path),
        )

    def rollback(
        self,
        alias: str,
        *,
        to: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        key_path: Path | None = None,
    ) -> AliasResult:
        """Move an alias back to its previous known-good variant (or to `to`); under a policy,
        signed with a releaser's key."""
        from compressgate.registry.governance.aliases import rollback

        catalog = self.catalog(write=True)
        return rollback(
            catalog,
            alias,
            to=to,
            reason=reason,
            actor=actor,
            trust=self._judge_option(),
            key=_private_key(key_path),
        )

    def alias_history(self, alias: str) -> list[AliasMove]:
        from compressgate.registry.governance.aliases import resolve_alias

        catalog = self.catalog()
        chain = self.policy_chain()
        alias = resolve_alias(catalog, chain if chain.current is not None else None, alias)
        history = catalog.alias_history(alias)
        if not history:
            raise NotFoundError(f"alias {alias} has never pointed anywhere")
        releases = catalog.releases([m.seq for m in history])
        return [m.model_copy(update={"release": releases.get(m.seq)}) for m in history]

    # --- audit ------------------------------------------------------------------------------

    def verify_audit(
        self,
        *,
        checkpoint: Path | None = None,
        artifacts: bool = True,
        reports: Sequence[Path] = (),
        meaning: bool = True,
    ) -> AuditReport:
        """Recompute the chain, every row, every artifact digest, check a checkpoint, and find
        each report file among the reports the catalog recorded."""
        import time

        from compressgate.registry.catalog.audit import verify, verify_checkpoint
        from compressgate.registry.governance.meaning import verify_meaning

        started = time.perf_counter()
        store = self.store if artifacts else None
        catalog = self.catalog()
        # The hashes first: a policy row written around compressgate is named by them, or by
        # the policy chain's own check, which every later step needs.
        found = verify(catalog, store, reports=reports)
        chain = self.policy_chain() if meaning or checkpoint is not None else None
        if chain is not None and chain.current is not None:
            self._policy_file()  # a --trust that is not the policy in force is refused
            trust: Trust | None = chain.current.trust
        else:
            trust = self.trust(self.trust_option) if self.trust_option is not None else None
        if checkpoint is not None:
            found = found.model_copy(
                update={"checkpoint": verify_checkpoint(catalog, checkpoint, trust, found.head)}
            )
        checked = verify_meaning(catalog, store, chain) if meaning and chain is not None else None
        seconds = time.perf_counter() - started
        return found.model_copy(
            update={
                "meaning": None if checked is None else checked.model_dump(mode="json"),
                "seconds": round(seconds, 4),
                "events_per_second": round(found.events / seconds, 1) if seconds else 0.0,
            }
        )

    def checkpoint(self, key_path: Path) -> bytes:
        """A signed checkpoint (DSSE envelope JSON) of the catalog's head."""
        from compressgate.registry.catalog.audit import checkpoint
        from compressgate.registry.kernel.keys import load_private_key

        return checkpoint(self.catalog(), load_private_key(key_path))

    # --- gated review -----------------------------------------------------------------------

    def review(self, run_id: str | None = None, *, limit: int = 10) -> list[ReviewStatus]:
        """The review status of a run (or of the newest `limit` runs), sign-offs checked now."""
        from compressgate.registry.governance.review import status

        records = self.catalog()
        ids = [run_id] if run_id else [r.run_id for r in records.runs(limit=limit)]
        return [status(records, rid, self.judge(rid)) for rid in ids]

    def sign_off(
        self,
        run_id: str,
        gate: str,
        *,
        kind: str,
        key_path: Path | None = None,
        envelope_path: Path | None = None,
        reason: str | None = None,
        expires: str | None = None,
        out: Path | None = None,
    ) -> SignoffResult:
        """Sign with the owner's key (or take a signed envelope) and record an approval or
        waiver of one gate of one run."""
        from compressgate.registry.governance.review import parse_expiry, signing_inputs, status
        from compressgate.registry.governance.review import sign_off as record
        from compressgate.registry.kernel.files import write_atomic
        from compressgate.registry.results import SignoffResult

        key, envelope = signing_inputs(key_path, envelope_path)
        when = parse_expiry(expires) if expires else None
        records = self.catalog(write=True)
        from compressgate.registry.governance.policy import PolicyChain

        trust = self.judge(run_id)
        if not isinstance(trust, PolicyChain):
            trust = self.trust(self.run_trust_file(run_id))
        checked, signed = record(
            records,
            run_id,
            gate,
            kind=kind,  # type: ignore[arg-type]
            trust=trust,
            key=key,
            envelope=envelope,
            reason=reason,
            expires=when,
            source=str(envelope_path) if envelope_path else "the sign-off",
        )
        found = status(records, run_id, trust)
        if out is not None:
            write_atomic(out, signed.to_json())
        return SignoffResult(
            signoff=checked.model_dump(mode="json"),
            review=found.model_dump(mode="json"),
            envelope=str(out) if out else None,
        )

    def ci(
        self,
        paths: Sequence[Path],
        *,
        base: str | None = None,
        reuse: bool = True,
        progress: Any = None,
    ) -> list[CiResult]:
        """Check each recipe (given, or changed against `base`): signature, run (or reuse a run
        of the same recipe digest in the same environment), gates; one result each."""
        from compressgate.gates.ci import CiResult
        from compressgate.registry.changes import recipes_to_check
        from compressgate.registry.governance.review import status
        from compressgate.registry.run.cache import environment_sha256

        results = []
        self.base_ref = base
        for path in recipes_to_check(paths, base):
            try:
                prepared = self.prepare(path)
                run_id = None
                if reuse:
                    digest = environment_sha256(prepared.recipe, prepared.base)
                    run_id = self.catalog(write=True).reusable_run(prepared.sha256, digest)
                cached = run_id is not None
                if run_id is None:
                    run_id = self.run(prepared, progress=progress).run_id
                assert prepared.trust is not None
                chain = self.policy_chain()
                judge = chain if chain.current is not None else prepared.trust
                found = status(self.catalog(), run_id, judge, recipe=prepared.recipe)
            except CompressgateError as exc:
                results.append(CiResult.of_error(path, exc))
                continue
            results.append(CiResult.of_review(path, found, cached=cached, run_id=run_id))
        return results

    # --- reports ----------------------------------------------------------------------------

    def report_data(self, run_id: str, *, checkpoint: Path | None = None) -> ReportData:
        """Everything a report of `run_id` shows, each record read from the catalog once; the
        recorded recipe's signature is checked now against the trust file."""
        from compressgate.registry.reporting import gather

        chain = self.policy_chain()
        if chain.current is not None:
            self._policy_file()  # a --trust that is not the policy in force is refused
            return gather(self.catalog(), run_id, checkpoint=checkpoint, chain=chain)
        return gather(self.catalog(), run_id, trust=self.trust_option, checkpoint=checkpoint)

    def report(self, run_id: str, fmt: str = "html", *, checkpoint: Path | None = None) -> bytes:
        """The report of `run_id` in `fmt` (html, md, json, card)."""
        from compressgate.reports.render import render

        return render(self.report_data(run_id, checkpoint=checkpoint), fmt)

    def write_report(
        self,
        run_id: str,
        out: Path,
        fmt: str = "html",
        *,
        checkpoint: Path | None = None,
        actor: str | None = None,
    ) -> RecordedReport:
        """Render the report of `run_id` to the file `out` and record it in the catalog (the
        sha256 of its bytes, a new event unless those bytes are recorded already), so that
        `audit verify --report FILE` can tell it from a changed copy."""
        from compressgate.registry.kernel.files import write_atomic
        from compressgate.registry.reporting import record_report
        from compressgate.reports.render import check_format, render

        check_format(fmt)
        records = self.catalog(write=True)  # an older catalog is migrated before it is read
        data = self.report_data(run_id, checkpoint=checkpoint)
        body = render(data, fmt)
        write_atomic(out, body)
        return record_report(records, run_id, body, fmt=fmt, out=out, data=data, actor=actor)
