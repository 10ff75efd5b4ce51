"""Gated review: `compressgate submit` (run and judge a signed recipe), `review status`, and the
owners' signed sign-offs `approve` and `waive`.

`review status` is a read command that must start fast: the API call reads the catalog and
the recorded decisions only (no scipy, no torch).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    FILE,
    JSON_OPTION,
    RUN_TRUST_OPTION,
    RUNNER_KEY_OPTION,
    SIGNOFF_OPTIONS,
    TRUST_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
    with_options,
)
from compressgate.registry.cli.tables import (
    emit,
    power_lines,
    review_table,
    run_table,
    say,
    stage_line,
)


@click.command("submit")
@click.argument("file", type=FILE)
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@click.option("--force", is_flag=True, help="Recompute every stage, ignoring the stage cache.")
@RUNNER_KEY_OPTION
@JSON_OPTION
def submit(
    file: Path,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    force: bool,
    runner_key: Path | None,
    as_json: bool,
) -> None:
    """Submit a signed recipe for gated review: verify, run, judge the gates (exit 0 or 1).

    The signature and the signers' trust are checked first (exit 3). Each statistical gate's
    power at the test split's size is checked and an underpowered gate is flagged. The run
    stops after an intermediate stage whose gate fails. The review status is `rejected`
    (exit 1), `awaiting-approval` (gates with `approval: required` wait for their owners:
    `compressgate approve`) or `approved` (exit 0). Under the catalog's trust policy the run is
    attested by a runner's --key (exit 3 without one).
    """
    from compressgate.gates.review import ReviewStatus
    from compressgate.registry.cli.progress import RichProgress

    with open_workspace(workspace, catalog=catalog, trust=trust, key=runner_key) as ws:
        result = ws.submit(file, force=force, progress=RichProgress(), on_stage=stage_line)
    if as_json:
        emit(result)
    else:
        power_lines(result.power)
        run_table(result.run)
        review_table(ReviewStatus.model_validate(result.review))
    sys.exit(result.exit_code)


@click.command("resume")
@click.argument("run_id")
@WORKSPACE_OPTION
@CATALOG_OPTION
@RUNNER_KEY_OPTION
@JSON_OPTION
def resume(
    run_id: str,
    workspace: Path | None,
    catalog: str | None,
    runner_key: Path | None,
    as_json: bool,
) -> None:
    """Resume RUN_ID, which a failing gate stopped, once that gate's owner waived it.

    A new run of the same recipe (its bytes must be the ones RUN_ID ran, its signature checked
    again): the stages before the gate come from the stage cache, the waived gate fails again
    on the same evidence and no longer stops the pipeline, and the new run's review counts the
    waiver, carried from RUN_ID (shown as such; it stops counting if the evidence differs).
    Exit 1 if RUN_ID is not stopped or a gate that stopped it is not waived; then as `submit`.
    """
    from compressgate.gates.review import ReviewStatus
    from compressgate.registry.cli.progress import RichProgress

    with open_workspace(workspace, catalog=catalog, key=runner_key) as ws:
        result = ws.resume(run_id, progress=RichProgress(), on_stage=stage_line)
    if as_json:
        emit(result)
    else:
        say(f"run {result.run.run_id} resumes {run_id}")
        run_table(result.run)
        review_table(ReviewStatus.model_validate(result.review))
    sys.exit(result.exit_code)


@click.group("review")
def review_group() -> None:
    """Read the review status of runs."""


@review_group.command("status")
@click.argument("run_id", required=False)
@click.option("--limit", default=10, show_default=True, help="Runs shown without RUN_ID.")
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def review_status(
    run_id: str | None,
    limit: int,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Each gate of RUN_ID (or of the newest runs): decision, owner, sign-offs, and the run's
    status: rejected, awaiting-approval or approved. Sign-offs are checked now: a waiver past
    its expiry, or signed by a key no longer trusted, does not count. Exit 1 if RUN_ID is
    rejected."""
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        found = ws.review(run_id, limit=limit)
    if as_json:
        emit(found[0] if run_id else found)
    else:
        for item in found:
            review_table(item)
    if run_id and found[0].status == "rejected":
        sys.exit(1)


def _signoff_command(kind: str, run_id: str, gate: str, **options: Any) -> None:
    as_json = options.pop("as_json")
    with open_workspace(
        options.pop("workspace"), catalog=options.pop("catalog"), trust=options.pop("trust")
    ) as ws:
        result = ws.sign_off(run_id, gate, kind=kind, **options)
    if as_json:
        emit(result)
        return
    s = result.signoff
    say(
        f"{kind} of gate '{gate}' of {run_id} by {s['owner']} (key {s['keyid'][:16]}…) recorded"
        + (f", until {s['expires']}" if s.get("expires") else "")
    )
    if result.envelope:
        say(f"wrote {result.envelope}")
    say(f"run {run_id} is now {result.review['status']}")


@click.command("approve")
@click.argument("run_id")
@with_options(SIGNOFF_OPTIONS)
def approve(run_id: str, gate: str, **options: Any) -> None:
    """Sign and record the approval of a passing gate of RUN_ID by its owner.

    The envelope (DSSE, in-toto Statement) binds the run id, the judged variants' digests, the
    gate, its verdict and the evidence digest: it cannot be moved to another run. Exit 3 if
    the key is not the gate owner's approver key in the trust file, or the envelope belongs to
    another run or gate; exit 1 if the gate failed (its owner may waive it instead); exit 6 if
    another process recorded the same sign-off at the same moment (retry).
    """
    _signoff_command(
        "approval",
        run_id,
        gate,
        **options,
    )


@click.command("waive")
@click.argument("run_id")
@with_options(SIGNOFF_OPTIONS)
@click.option("--reason", required=True, help="Why the failing gate may be waived.")
@click.option(
    "--expires",
    metavar="DATE",
    help="YYYY-MM-DD (counts through that day, UTC) or an ISO 8601 time; after it the waiver "
    "no longer counts.",
)
def waive(run_id: str, gate: str, **options: Any) -> None:
    """Sign and record a waiver of a failing gate of RUN_ID by its owner, with a reason.

    Bound like an approval to the run, gate, verdict and evidence; exit 3 for a key that is
    not the gate owner's. A waiver with --expires stops counting after that time.
    """
    _signoff_command(
        "waiver",
        run_id,
        gate,
        **options,
    )
