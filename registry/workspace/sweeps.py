"""The sweep verbs of a `Workspace` (`compressgate sweep run|status|show|report|propose`)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from compressgate.registry.kernel.errors import IntegrityError, NotFoundError
from compressgate.registry.workspace.base import WorkspaceBase

if TYPE_CHECKING:
    from compressgate.recipes.load import LoadedRecipe
    from compressgate.recipes.manifest import Recipe
    from compressgate.recipes.sweep import LoadedSweep
    from compressgate.recipes.trust import Trust
    from compressgate.registry.catalog.records import RecipeRecord, SweepRecord
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.results import ProposeResult, SweepListResult, SweepResult
    from compressgate.registry.run.prepared import PreparedRecipe
    from compressgate.reports.sweep import SweepReportData


class SweepVerbs(WorkspaceBase):
    """Sweeps: run one, read what the catalog holds of them, report, propose."""

    def sweep_run(
        self,
        path: Path,
        *,
        backend: str = "local",
        workers: int | None = None,
        address: str | None = None,
        force: bool = False,
        say: Callable[[str], None] | None = None,
    ) -> SweepResult:
        """Verify the sweep and its base recipe, then run (or resume: the same manifest bytes
        with an open sweep in the catalog) its trials to the end of its budget."""
        from compressgate.recipes.sweep import (
            base_recipe_path,
            parse_sweep,
            read_sweep,
            verify_sweep,
        )
        from compressgate.registry.kernel.digests import sha256_file
        from compressgate.registry.run import sweep as driver

        heading, document = parse_sweep(read_sweep(path), str(path))  # where its base is
        prepared = self.prepare(base_recipe_path(path, heading, document))
        trust_file = Path(prepared.trust_source or "")
        assert prepared.trust is not None
        verified = verify_sweep(path, prepared.trust, trust_source=str(trust_file))
        options = self._run_options(trust_file, force=force)
        run = driver.SweepRun(
            verified=verified,
            trust=trust_file,
            trust_sha256=sha256_file(trust_file),
            policy_sha256=options.trust_sha256,
            workspace=self.root,
            runner_key=options.runner_key,
            trusted_runners=options.trusted_runners,
            force=force,
            attest=self._attest,
            say=say or (lambda text: None),
        )
        catalog = self.catalog(write=True)
        # Ray's driver prints what its workers and raylets say (a worker killed, say) on
        # stdout, which is `--json`'s: it goes to stderr while the sweep runs.
        with contextlib.redirect_stdout(sys.stderr) if backend == "ray" else nullcontext():
            chosen = driver.backend_for(backend, workers=workers, address=address)
            try:
                sweep_id, resumed = driver.drive(run, catalog, chosen)
            finally:
                chosen.close()
        return self.sweep_show(sweep_id, resumed=resumed)

    def sweeps(self, *, limit: int = 20) -> SweepListResult:
        from compressgate.registry.results import SweepListResult

        listed = self.catalog().sweeps(limit=limit)
        return SweepListResult(sweeps=[s.model_dump(mode="json") for s in listed])

    def sweep_show(self, sweep_id: str, *, resumed: bool = False) -> SweepResult:
        """The sweep as the catalog holds it: its trials, the frontier among those that pass
        every gate and the chosen one (recorded at its end; computed now while it runs)."""
        from compressgate.registry.results import SweepResult, SweepTrialResult
        from compressgate.registry.run.sweep import choose, rule_text

        catalog = self.catalog()
        record = catalog.sweep(self._sweep_id(sweep_id))
        loaded = _recorded_sweep(record)
        sweep = loaded.sweep
        trials = catalog.sweep_trials(record.sweep_id)
        end = catalog.sweep_end(record.sweep_id)
        if end is not None:
            on, chosen, why = end.frontier, end.chosen, end.why
        else:
            picked = choose(sweep, trials)
            on, chosen, why = picked.frontier, picked.chosen, f"(so far) {picked.why}"
        return SweepResult(
            sweep_id=record.sweep_id,
            name=record.name,
            version=record.version,
            sha256=record.sha256,
            recipe_sha256=record.recipe_sha256,
            signers=record.signers,
            strategy=record.strategy,
            backend=record.backend,
            workers=int(record.settings.get("workers", 1)),
            started_at=record.started_at,
            finished_at=None if end is None else end.finished_at,
            status="running" if end is None else end.status,
            budget_trials=sweep.trials(),
            objectives=[o.model_dump(mode="json") for o in sweep.objectives],
            choose=rule_text(sweep),
            trials=[
                SweepTrialResult(
                    trial=t.trial,
                    run_id=t.run_id,
                    params=t.params,
                    status=t.status,
                    objectives=t.objectives,
                    failed_gates=t.failed_gates,
                    error=t.error,
                    attempts=t.attempts,
                    seconds=t.seconds,
                    on_frontier=t.trial in on,
                    chosen=t.trial == chosen,
                )
                for t in trials
            ],
            frontier=on,
            chosen=chosen,
            why=why,
            resumed=resumed,
        )

    def _sweep_id(self, ref: str) -> str:
        """A sweep id, or `latest`: the newest sweep."""
        if ref != "latest":
            return ref
        listed = self.catalog().sweeps(limit=1)
        if not listed:
            raise NotFoundError("no sweep recorded", hint="run one: `compressgate sweep run FILE`")
        return listed[0].sweep_id

    def sweep_report_data(self, sweep_id: str, *, links: bool = True) -> SweepReportData:
        from compressgate.gates.judge import BASELINE
        from compressgate.registry.run.determinism import now
        from compressgate.reports.sweep import SweepObjective, SweepReportData, SweepTrialRow

        shown = self.sweep_show(sweep_id)
        catalog = self.catalog()
        record = catalog.sweep(shown.sweep_id)
        sweep = _recorded_sweep(record).sweep
        base = catalog.recipe(record.recipe_sha256)
        digests: dict[str, str] = {}
        baseline: dict[str, float] = {}
        for trial in shown.trials:
            if trial.run_id is not None:  # the selection split and the float baseline's values
                run = catalog.run(trial.run_id)
                digests = {seed: d.get("test", "") for seed, d in run.data.items()}
                for objective in sweep.objectives:
                    found = [
                        s.metrics[objective.metric].estimate
                        for s in run.stages
                        if s.name == BASELINE and objective.metric in s.metrics
                    ]
                    if found and len(found) == len(run.seeds):
                        baseline[objective.metric] = sum(found) / len(found)
                break
        return SweepReportData(
            sweep_id=shown.sweep_id,
            name=shown.name,
            version=shown.version,
            sha256=shown.sha256,
            recipe_name=base.name,
            recipe_version=base.version,
            recipe_sha256=shown.recipe_sha256,
            signers=shown.signers,
            strategy=shown.strategy,
            backend=shown.backend,
            workers=shown.workers,
            started_at=shown.started_at,
            finished_at=shown.finished_at,
            status=shown.status,
            budget_trials=shown.budget_trials,
            wall_time=sweep.budget.wall_time,
            selection=sweep.selection.model_dump(mode="json") | {"digests": digests},
            axes={k: list(v) for k, v in sweep.axes.items()},
            objectives=[SweepObjective(**o) for o in shown.objectives],
            choose=shown.choose,
            trials=[
                SweepTrialRow(
                    **t.model_dump(),
                    report_href=f"{t.run_id}.html" if links and t.run_id else None,
                )
                for t in shown.trials
            ],
            frontier=shown.frontier,
            chosen=shown.chosen,
            why=shown.why,
            baseline=baseline,
            generated_at=now(),
        )

    def write_sweep_report(
        self, sweep_id: str, out: Path, fmt: str = "html", *, trials: bool = True
    ) -> list[Path]:
        """Write the sweep's report as `out`/index.FMT and, with `trials`, each trial run's own
        report beside it (RUN_ID.FMT, each recorded in the catalog as `report` records its
        files); the files written, the index first."""
        from compressgate.registry.kernel.files import write_atomic
        from compressgate.reports.sweep import render_sweep

        data = self.sweep_report_data(sweep_id, links=trials)
        if fmt != "html":
            data = data.model_copy(
                update={
                    "trials": [
                        t.model_copy(
                            update={"report_href": t.report_href and t.report_href[:-4] + fmt}
                        )
                        for t in data.trials
                    ]
                }
            )
        out.mkdir(parents=True, exist_ok=True)
        written = [out / f"index.{fmt}"]
        if trials:
            for trial in data.trials:
                if trial.run_id is not None:
                    target = out / f"{trial.run_id}.{fmt}"
                    self.write_report(trial.run_id, target, fmt)  # type: ignore[attr-defined]
                    written.append(target)
        write_atomic(written[0], render_sweep(data, fmt))  # type: ignore[arg-type]
        return written

    def provenance(self, recipe: Path | PreparedRecipe) -> str | None:
        """For a recipe a sweep proposed (`metadata.derived_from`), its provenance checked
        against this workspace's catalog (`check_provenance`); None for any other recipe."""
        prepared = self.prepare(recipe) if isinstance(recipe, Path) else recipe
        if prepared.recipe.metadata.derived_from is None:
            return None
        assert prepared.trust is not None
        return check_provenance(
            self.catalog(), prepared.recipe, prepared.trust, prepared.trust_source or ""
        )

    def sweep_propose(
        self, sweep_id: str, out: Path | None = None, *, trial: int | None = None
    ) -> ProposeResult:
        """Write the chosen trial (or `trial`) as a concrete recipe for its author to sign and
        submit: the recipe's own seeds and test split judge it, as any recipe."""
        from compressgate.recipes.sweep import proposed_recipe
        from compressgate.registry.kernel.digests import sha256_bytes
        from compressgate.registry.kernel.errors import ManifestError
        from compressgate.registry.kernel.files import write_atomic
        from compressgate.registry.results import ProposeResult

        shown = self.sweep_show(sweep_id)
        number = shown.chosen if trial is None else trial
        if number is None:
            raise NotFoundError(
                f"sweep {shown.sweep_id} chose no trial: {shown.why}",
                hint="name one with --trial N (`compressgate sweep show` lists them)",
            )
        found = next((t for t in shown.trials if t.trial == number), None)
        if found is None:
            raise NotFoundError(f"sweep {shown.sweep_id} has no trial {number}")
        if found.status != "passed":
            raise ManifestError(
                f"trial {number} of sweep {shown.sweep_id} {found.status}: only a trial that "
                "passed every gate on the selection split is proposed"
            )
        catalog = self.catalog()
        record = catalog.sweep(shown.sweep_id)
        loaded = _recorded_sweep(record)
        base = _recorded_base(catalog.recipe(record.recipe_sha256))
        data = proposed_recipe(loaded, base, found.params, trial=number, sweep_id=record.sweep_id)
        if out is None:
            out = Path(f"{base.recipe.metadata.name}-v{base.recipe.metadata.version + 1}.yaml")
        if out.exists():
            raise ManifestError(f"{out} exists; name another file with --output, or move it away")
        write_atomic(out, data)
        return ProposeResult(
            sweep_id=record.sweep_id,
            trial=number,
            recipe=str(out),
            sha256=sha256_bytes(data),
            params=found.params,
            next=f"compressgate recipe sign {out} --key KEY && compressgate submit {out}",
        )


def check_provenance(catalog: Catalog, recipe: Recipe, trust: Trust, trust_source: str) -> str:
    """A recipe a sweep proposed (`metadata.derived_from`) is what that sweep, as this catalog
    recorded it, proposes from the trial it names: the sweep's recorded bytes and signature and
    its base recipe's verify with `trust`, the trial passed every gate on the selection split
    with exactly those parameters, and re-deriving the recipe from them gives this one.
    IntegrityError (exit 3) names the first check that fails; returns what was checked."""
    from compressgate.recipes.signing import check_signature
    from compressgate.recipes.sweep import check_provenance as same_recipe
    from compressgate.recipes.sweep import check_sweep_signature

    claimed = recipe.metadata.derived_from
    assert claimed is not None
    who = f"recipe {recipe.metadata.name} v{recipe.metadata.version}"
    try:
        record = catalog.sweep(claimed.sweep_id)
    except NotFoundError:
        raise IntegrityError(
            f"{who} names sweep {claimed.sweep_id}, which this catalog has not recorded",
            hint="verify it against the workspace where the sweep ran (--workspace, --catalog)",
        ) from None
    if record.sha256 != claimed.sweep.sha256 or record.recipe_sha256 != claimed.recipe.sha256:
        raise IntegrityError(
            f"{who} names sweep {claimed.sweep_id} with sha256 {claimed.sweep.sha256} over recipe "
            f"{claimed.recipe.sha256}; the catalog recorded {record.sha256} over "
            f"{record.recipe_sha256}"
        )
    base = _recorded_base(catalog.recipe(record.recipe_sha256))
    envelopes = catalog.recipe_envelopes(record.recipe_sha256)
    problems: list[str] = []
    for index, envelope in enumerate(reversed(envelopes)):
        try:
            check_signature(
                base.data,
                envelope.encode("utf-8"),
                trust,
                source=f"envelope {index + 1}",
                name=f"recipe {base.sha256[:12]}",
                trust_source=trust_source,
            )
            break
        except IntegrityError as exc:
            problems.append(str(exc))
    else:
        raise IntegrityError(
            f"{who}: its base recipe's recorded signature does not verify: "
            f"{problems[0] if problems else 'none recorded'}"
        )
    check_sweep_signature(
        record.content.encode("utf-8"),
        record.envelope.encode("utf-8"),
        trust,
        base,
        source=f"sweep {record.sweep_id}'s recorded envelope",
        name=f"sweep {record.sweep_id}",
        trust_source=trust_source,
    )
    row = next((t for t in catalog.sweep_trials(record.sweep_id) if t.trial == claimed.trial), None)
    if row is None or row.status != "passed":
        state = "was not recorded" if row is None else row.status
        raise IntegrityError(
            f"{who} names trial {claimed.trial} of sweep {record.sweep_id}, which {state}"
        )
    if json.dumps(row.params, sort_keys=True) != json.dumps(claimed.params, sort_keys=True):
        raise IntegrityError(
            f"{who} names trial {claimed.trial} with other parameters than the catalog recorded "
            f"({row.params})"
        )
    same_recipe(recipe, _recorded_sweep(record), base)
    return f"trial {claimed.trial} of sweep {record.sweep_id} (sha256 {record.sha256[:12]})"


def _recorded_sweep(record: SweepRecord) -> LoadedSweep:
    """The sweep manifest as the catalog recorded its bytes."""
    from compressgate.recipes.sweep import LoadedSweep, parse_sweep

    data = record.content.encode("utf-8")
    return LoadedSweep(
        Path(f"{record.name}.yaml"), parse_sweep(data, f"sweep {record.sweep_id}")[0], data
    )


def _recorded_base(recipe: RecipeRecord) -> LoadedRecipe:
    """The base recipe as the catalog recorded its bytes."""
    from compressgate.recipes.load import LoadedRecipe, parse_recipe

    data = recipe.content.encode("utf-8")
    return LoadedRecipe(Path(recipe.path), parse_recipe(data, recipe.path)[0], data)
