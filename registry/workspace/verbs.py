"""`Workspace`: one method per command, each returning a typed result
(`compressgate.registry.workspace`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from compressgate.registry.kernel.errors import CompressgateError, ManifestError, NotFoundError

# The results (pydantic models) are imported by the verbs that build them: a read command that
# prints catalog rows never builds their classes.
if TYPE_CHECKING:
    from compressgate.gates.ci import CiResult
    from compressgate.gates.review import ReviewStatus
    from compressgate.recipes.trust import Trust
    from compressgate.registry.catalog.records import (
        Annotations,
        AttestationRecord,
        RunRecord,
        SearchPage,
        StageRecord,
    )
    from compressgate.registry.catalog.repository import (
        AliasMove,
        AuditReport,
        JudgementRecord,
        RecordedReport,
        RunListing,
        VariantRecord,
    )
    from compressgate.registry.catalog.views import AliasResult, Diff, Lineage, VariantShow
    from compressgate.registry.governance.aliases import Resolved
    from compressgate.registry.governance.annotations import AnnotateResult
    from compressgate.registry.governance.policy import PolicyChain
    from compressgate.registry.governance.uri import ModelUri
    from compressgate.registry.results import (
        EnvListing,
        EnvSummary,
        EnvVerifyResult,
        ReproduceResult,
        ResolveResult,
        RunSummary,
        SignoffResult,
        SubmitResult,
    )
    from compressgate.registry.run.evaluate import OnDemandEvaluation
    from compressgate.registry.run.prepared import PreparedRecipe
    from compressgate.reports.model import ReportData

from compressgate.registry.governance.uri import is_uri
from compressgate.registry.workspace.base import _private_key
from compressgate.registry.workspace.sweeps import SweepVerbs

log = logging.getLogger(__name__)


class Workspace(SweepVerbs):
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
        waived: tuple[str, ...] = (),
    ) -> RunSummary:
        """Run a verified recipe: every stage output lands in the artifact store and every
        record in the catalog. The summary is built from what the engine holds."""
        from compressgate.registry.catalog.repository import safe_url
        from compressgate.registry.results import summarize_outcome
        from compressgate.registry.run import engine

        prepared = self.prepare(recipe) if isinstance(recipe, Path) else recipe
        trust = Path(prepared.trust_source or "")
        options = self._run_options(
            trust, force=force, progress=progress, on_stage=on_stage, isolate=isolate, waived=waived
        )
        outcome = engine.execute(prepared, lambda: self.catalog(write=True), options)
        self._attest(outcome)
        return summarize_outcome(outcome, safe_url(self.catalog_url))

    def submit(
        self,
        recipe: Path,
        *,
        force: bool = False,
        progress: Any = None,
        on_stage: Callable[[StageRecord], None] | None = None,
    ) -> SubmitResult:
        """Verify the signature and trust, run the recipe, judge its gates: the run's review."""
        from compressgate.registry.authoring import power_checks
        from compressgate.registry.governance.review import status
        from compressgate.registry.results import SubmitResult

        prepared = self.prepare(recipe)
        if prepared.recipe.metadata.derived_from is not None:  # a sweep proposed it: check so
            said = self.provenance(prepared)
            log.info("%s: proposed by %s, provenance verified", recipe, said)
        checks, _ = power_checks(prepared)
        summary = self.run(prepared, force=force, progress=progress, on_stage=on_stage)
        assert prepared.trust is not None
        chain = self.policy_chain()
        judge = chain if chain.current is not None else prepared.trust
        found = status(self.catalog(), summary.run_id, judge, recipe=prepared.recipe)
        return SubmitResult(
            run=summary,
            review=found.model_dump(mode="json"),
            power=[c.model_dump(mode="json") for c in checks],
        )

    def resume(
        self,
        run_id: str,
        *,
        progress: Any = None,
        on_stage: Callable[[StageRecord], None] | None = None,
    ) -> SubmitResult:
        """Run again, as a new run, a run a failing gate stopped, once its owner waived that
        gate: the stages before it come from the stage cache, the waived gate fails again on
        the same evidence and no longer stops the pipeline, and the new run's review counts
        the waiver (carried, shown as such). Recorded as a resume of the stopped run."""
        from compressgate.registry.governance.review import resumable, status
        from compressgate.registry.results import SubmitResult
        from compressgate.registry.run.reproduce import recorded_recipe

        catalog = self.catalog()
        waivers = resumable(catalog, run_id, self.judge(run_id))
        prepared = self.prepare(recorded_recipe(catalog.run(run_id)))
        gates = tuple(w["gate"] for w in waivers)
        summary = self.run(prepared, progress=progress, on_stage=on_stage, waived=gates)
        self.catalog(write=True).record_resume(
            run_id=summary.run_id, resumed_from=run_id, waivers=waivers
        )
        found = status(self.catalog(), summary.run_id, self.judge(summary.run_id))
        return SubmitResult(run=summary, review=found.model_dump(mode="json"), power=[])

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

    def annotations(self, ref: str) -> Annotations:
        """A run's (ID = run-…) or a variant's tags and description, with their history."""
        from compressgate.registry.governance.annotations import resolve_subject

        records = self.catalog()
        subject = resolve_subject(records, ref)
        return records.annotations(subject.kind, subject.id)

    def search(
        self,
        query: str,
        *,
        sort: str = "recorded",
        limit: int = 20,
        page_token: str | None = None,
    ) -> SearchPage:
        """One page of the variants `query` matches (the filter language of
        `compressgate.registry.catalog.search`), sorted, with the next page's token. A query
        or sort that is not understood is refused (exit 2) before the catalog is opened."""
        from compressgate.registry.catalog.search import parse_query, parse_sort

        parsed = parse_query(query)
        parse_sort(sort)
        return self.catalog().search(parsed, sort=sort, limit=limit, page_token=page_token)

    def tag(
        self,
        ref: str,
        tags: Sequence[str] = (),
        *,
        remove: Sequence[str] = (),
        key_path: Path | None = None,
        actor: str | None = None,
    ) -> AnnotateResult:
        """Set tags (`KEY=VALUE`) and remove tags (`remove`) of a run or a variant, as new
        events; under a policy signed with an owner's key."""
        from compressgate.registry.governance.annotations import tag_changes

        return self._annotate(ref, tag_changes(tags, remove), key_path, actor)

    def describe(
        self,
        ref: str,
        text: str | None,
        *,
        key_path: Path | None = None,
        actor: str | None = None,
    ) -> AnnotateResult:
        """Set (or with None clear) the description of a run or a variant, as a new event;
        under a policy signed with an owner's key."""
        from compressgate.registry.governance.annotations import description_change

        return self._annotate(ref, [description_change(text)], key_path, actor)

    def _annotate(
        self, ref: str, changes: Any, key_path: Path | None, actor: str | None
    ) -> AnnotateResult:
        from compressgate.registry.governance.annotations import annotate

        catalog = self.catalog(write=True)  # an older catalog is migrated first
        return annotate(
            catalog,
            self.policy_chain(),
            ref,
            changes,
            key=_private_key(key_path),
            actor=actor,
        )

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
        from compressgate.registry.governance.uri import resolve_alias

        catalog = self.catalog()
        chain = self.policy_chain()
        alias = resolve_alias(catalog, chain if chain.current is not None else None, alias)
        history = catalog.alias_history(alias)
        if not history:
            raise NotFoundError(f"alias {alias} has never pointed anywhere")
        releases = catalog.releases([m.seq for m in history])
        return [m.model_copy(update={"release": releases.get(m.seq)}) for m in history]

    def resolve(self, alias: str, *, recipe: str | None = None) -> ResolveResult:
        """Where an alias points now, verified as a deployment needs it: the move's signed
        release (under a policy), and the artifact's bytes hashed to the recorded digest (exit
        3 otherwise); exit 4 naming the aliases there are. `recipe` picks the recipe's alias
        where several recipes have one by that name. The run's review is reported as it
        stands. A `compressgate://` URI is taken too (`resolve_uri`), without `recipe`."""
        if is_uri(alias):
            _no_recipe_with_uri(alias, recipe)
            return self.resolve_uri(alias)
        return _resolve_result(self._resolved(alias, recipe), uri=None)

    def resolve_uri(self, uri: str) -> ResolveResult:
        """What a URI names now, verified: `compressgate://RECIPE@ALIAS` as `resolve(ALIAS,
        recipe=RECIPE)` resolves it; `compressgate://RECIPE/VARIANT` (RUN/SEED/STAGE or a
        sha256 prefix) a variant of RECIPE (exit 4 if it is another's), its file's bytes hashed
        to its record's digest (exit 3 otherwise), with no alias move to verify (`checked`
        says what was). Exit 2 for a malformed URI, saying the forms it takes. The workspace
        and the catalog are this one's: a URI does not name them."""
        from compressgate.registry.governance.uri import parse_uri

        parsed = parse_uri(uri)
        return _resolve_result(self._resolved_uri(parsed), uri=str(parsed))

    def _resolved(self, alias: str, recipe: str | None) -> Resolved:
        from compressgate.registry.governance.aliases import resolve

        return resolve(
            self.catalog(),
            self.policy_chain(),
            self.store,
            alias,
            recipe=recipe,
            trust=self._review_judge(),
            serve=self.root / "serve",
        )

    def _resolved_uri(self, parsed: ModelUri) -> Resolved:
        from compressgate.registry.governance.aliases import resolve_variant

        if parsed.alias is not None:
            return self._resolved(parsed.alias, parsed.recipe)
        assert parsed.variant is not None
        return resolve_variant(
            self.catalog(),
            self.store,
            parsed.recipe,
            parsed.variant,
            trust=self._review_judge(),
            serve=self.root / "serve",
        )

    @overload
    def load(
        self, ref: str, *, recipe: str | None = None, session: Literal[False] = False
    ) -> Path: ...

    @overload
    def load(self, ref: str, *, recipe: str | None = None, session: Literal[True]) -> Any: ...

    def load(self, ref: str, *, recipe: str | None = None, session: bool = False) -> Any:
        """The verified file `ref` names, or with `session` an onnxruntime CPU session on it.
        `ref` is an alias (checked as `resolve` checks it), a variant RUN/SEED/STAGE or a
        prefix of an artifact's sha256 (its bytes checked), or a `compressgate://` URI (as
        `resolve_uri` checks it). Exit 3 if the bytes do not hash to the recorded digest, 4
        for an unknown alias or variant."""
        from compressgate.registry.governance import aliases

        digest = len(ref) >= 6 and all(ch in "0123456789abcdef" for ch in ref)
        if is_uri(ref):
            from compressgate.registry.governance.uri import parse_uri

            _no_recipe_with_uri(ref, recipe)
            found = self._resolved_uri(parse_uri(ref))
            variant, path = found.variant, found.path
            self._session_needs_onnx(session, ref, variant)
        elif "/" in ref or (digest and recipe is None and not self._is_alias(ref)):
            variant = self.catalog().variant(ref)
            self._session_needs_onnx(session, ref, variant)
            path = aliases.verified_path(self.store, variant, self.root / "serve")
        else:
            found = self._resolved(ref, recipe)
            variant, path = found.variant, found.path
            self._session_needs_onnx(session, ref, variant)
        return self._onnx_session(path, variant.id) if session else path

    def _is_alias(self, name: str) -> bool:
        from compressgate.registry.governance.aliases import current_move

        try:
            current_move(self.catalog(), self.policy_chain(), name)
        except (NotFoundError, ManifestError):
            return False
        return True

    def _review_judge(self) -> Path | PolicyChain | None:
        """What a run's review is judged with: the policy chain, else the --trust file (else
        the run's own trust file); under a policy a --trust must be the policy in force."""
        chain = self.policy_chain()
        if chain.current is None:
            return self.trust_option
        if self.trust_option is not None:
            self._policy_file()  # refuses a --trust that is not the policy in force
        return chain

    @staticmethod
    def _session_needs_onnx(session: bool, ref: str, variant: VariantRecord) -> None:
        if session and variant.format != "onnx":
            raise ManifestError(
                f"{ref} is {variant.id}, a {variant.format} variant: a session needs an ONNX one",
                hint="`load` without `session` gives its verified file",
            )

    @staticmethod
    def _onnx_session(path: Path, what: str) -> Any:
        """An onnxruntime session on the CPU (imported here: only a caller that asks pays)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own, unexported, exception types
            raise CompressgateError(
                f"onnxruntime cannot load {what} ({path}): {exc}",
                hint="its bytes verified: check the installed onnxruntime against the lock",
            ) from exc

    # --- audit ------------------------------------------------------------------------------

    def verify_audit(
        self,
        *,
        checkpoint: Path | None = None,
        since: Path | None = None,
        artifacts: bool = True,
        reports: Sequence[Path] = (),
        meaning: bool = True,
        started: float | None = None,
    ) -> AuditReport:
        """Recompute the chain, every row, every artifact digest, check a checkpoint, and find
        each report file among the reports the catalog recorded.

        With `since` (a signed checkpoint file): the checkpoint's signature by an auditor, its
        event against its hash, and only what was recorded after it (`audit.verify`); the
        meaning checks too cover the records after it. `started` (`time.perf_counter()` at
        the command's start) is where the reported wall time begins."""
        import time

        from compressgate.registry.catalog.audit import (
            checkpoint_head,
            verify,
            verify_checkpoint,
        )
        from compressgate.registry.governance.meaning import verify_meaning

        started = time.perf_counter() if started is None else started
        if since is not None and checkpoint is not None:
            raise ManifestError(
                "--since and --checkpoint both name a checkpoint: give one",
                hint="--since CHECKPOINT checks what is new after it; --checkpoint checks "
                "everything and that the chain passes through it",
            )
        store = self.store if artifacts else None
        catalog = self.catalog()
        after = checkpoint_head(since) if since is not None else None
        # The hashes first: a policy row written around compressgate is named by them, or by
        # the policy chain's own check, which every later step needs.
        found = verify(catalog, store, reports=reports, since=after, started=started)
        chain = (
            self.policy_chain() if meaning or checkpoint is not None or since is not None else None
        )
        if chain is not None and chain.current is not None:
            self._policy_file()  # a --trust that is not the policy in force is refused
            trust: Trust | None = chain.current.trust
        else:
            trust = self.trust(self.trust_option) if self.trust_option is not None else None
        signed = checkpoint or since
        if signed is not None:
            # Its signature by an auditor, and its event still hashing to what it says; with
            # --since, nothing was reported before this holds.
            found = found.model_copy(
                update={"checkpoint": verify_checkpoint(catalog, signed, trust, found.head)}
            )
        checked = (
            verify_meaning(catalog, store, chain, since=after.size if after else 0)
            if meaning and chain is not None
            else None
        )
        seconds = time.perf_counter() - started
        return found.model_copy(
            update={
                "meaning": None if checked is None else checked.model_dump(mode="json"),
                "seconds": round(seconds, 4),
                "events_per_second": round(found.checked_events / seconds, 1) if seconds else 0.0,
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
        on_stage: Callable[[StageRecord], None] | None = None,
    ) -> list[CiResult]:
        """Check each recipe (given, or changed against `base`): signature, run (or reuse a run
        of the same recipe digest in the same environment), gates; one result each."""
        from compressgate.gates.ci import CiResult
        from compressgate.registry.authoring import find_trust
        from compressgate.registry.changes import recipes_to_check
        from compressgate.registry.governance.review import status

        results = []
        self.base_ref = base
        checked = recipes_to_check(
            paths, base, trust_of=lambda recipe: find_trust(recipe, self.trust_option)
        )
        for path in checked:
            try:
                prepared = self.prepare(path)
                run_id = None
                if reuse:
                    run_id = self._reusable(prepared)
                cached = run_id is not None
                if run_id is None:
                    run_id = self.run(prepared, progress=progress, on_stage=on_stage).run_id
                assert prepared.trust is not None
                chain = self.policy_chain()
                judge = chain if chain.current is not None else prepared.trust
                found = status(self.catalog(), run_id, judge, recipe=prepared.recipe)
            except CompressgateError as exc:
                results.append(CiResult.of_error(path, exc))
                continue
            results.append(CiResult.of_review(path, found, cached=cached, run_id=run_id))
        return results

    def _reusable(self, prepared: PreparedRecipe) -> str | None:
        """A recorded run `ci` may report instead of running: the newest finished run of this
        recipe digest in this environment fingerprint whose lock, code and data are the same
        as a run's would be now. The lock is checked against this environment first, as a run
        checks it (a strict mismatch is refused, exit 5)."""
        from compressgate.registry.run import engine, environment
        from compressgate.registry.run.cache import environment_sha256

        recipe = prepared.recipe
        environment.enforce(
            prepared.base / recipe.environment.lock, strict=recipe.environment.strict
        )
        catalog = self.catalog(write=True)
        digest = environment_sha256(recipe, prepared.base)
        run_id = catalog.reusable_run(prepared.sha256, digest)
        if run_id is None:
            return None
        info = catalog.run_info(run_id)
        stale = engine.stale_inputs(prepared, catalog.run(run_id), info.lock_sha256)
        return None if stale else run_id

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
        # Recorded before the file takes its name: a kill leaves no file, or a recorded one.
        recorded: list[RecordedReport] = []
        write_atomic(
            out,
            body,
            before=lambda: recorded.append(
                record_report(records, run_id, body, fmt=fmt, out=out, data=data, actor=actor)
            ),
        )
        return recorded[0]


def _no_recipe_with_uri(uri: str, recipe: str | None) -> None:
    if recipe is not None:
        raise ManifestError(
            f"{uri!r} with --recipe {recipe!r}: a URI names its recipe; name it once",
            hint="give the URI alone, or NAME --recipe RECIPE",
        )


def _resolve_result(found: Resolved, *, uri: str | None) -> ResolveResult:
    """What `alias resolve --json` prints of a resolution; a variant named directly has no
    move, so the move's fields are None."""
    from compressgate.registry.results import ResolveResult

    move, variant, run, review = found.move, found.variant, found.run, found.review
    return ResolveResult(
        alias=None if move is None else move.alias,
        variant=variant.id,
        sha256=variant.artifact_sha256,
        path=str(found.path),
        format=variant.format,
        size_bytes=variant.size_bytes,
        run_id=run.run_id,
        recipe=run.recipe,
        recipe_version=run.version,
        recipe_sha256=run.recipe_sha256,
        review="unchecked" if review is None else review.status,
        review_reasons=[found.review_problem or ""] if review is None else review.reasons,
        policy_version=found.policy_version,
        moved_at=None if move is None else move.moved_at,
        moved_by=None if move is None else move.actor,
        action=None if move is None else move.action,
        seq=None if move is None else move.seq,
        release_keyid=None if found.released is None else found.released.keyid,
        uri=uri,
        checked=list(found.checked),
    )
