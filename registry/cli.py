"""The `compressgate` command line: thin over `registry.api`.

Each command parses its arguments, makes one API call and prints. `main` is the one place that
turns a `CompressgateError` into `Error: …` (and a hint) on stderr and its exit code. Heavy
modules are imported inside the commands so that `compressgate --help` answers at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from registry.errors import CompressgateError, Issue

if TYPE_CHECKING:
    from pydantic import BaseModel

FILE = click.Path(path_type=Path, dir_okay=False)
DIR = click.Path(path_type=Path, file_okay=False)
TRUST_OPTION = click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file of owners and keys [default: trust.yaml beside the recipe].",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _emit(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        payload = data
    else:
        payload = [item.model_dump(mode="json") for item in data]
    click.echo(json.dumps(payload, indent=2))


class _Compressgate(click.Group):
    """The root group: the one place that turns our errors into messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CompressgateError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"Error: {line}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Compressgate, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compressgate")
def cli() -> None:
    """Govern model compression: signed recipes, gated decisions, an auditable catalog.

    Exit codes: 0 ok, 1 a gate failed or a review was rejected, 2 bad input,
    3 integrity failure, 4 not found, 5 environment mismatch.
    """


# --- recipe -------------------------------------------------------------------------------------


@cli.group()
def recipe() -> None:
    """Validate, explain, sign and verify recipe manifests."""


@recipe.command("validate")
@click.argument("files", nargs=-1, required=True, type=FILE)
@TRUST_OPTION
@JSON_OPTION
def recipe_validate(files: tuple[Path, ...], trust: Path | None, as_json: bool) -> None:
    """Check manifests: schema, cross-references, files, imports and owners (exit 0 or 2).

    Every problem is printed as FILE:LINE FIELD: MESSAGE. Owners are checked against the trust
    file when one is given or found beside the recipe.
    """
    from registry.api import validate_recipes

    records = validate_recipes(files, trust)
    if as_json:
        _emit(records)
    else:
        for record in records:
            if record.valid:
                click.echo(f"ok {record.file} ({record.name} v{record.version})")
            for issue in record.issues:
                click.echo(f"Error: {Issue(**issue.model_dump())}", err=True)
    failed = [r for r in records if not r.valid]
    if failed:
        sys.exit(failed[0].exit_code)


@recipe.command("schema")
def recipe_schema() -> None:
    """Print the JSON Schema of recipe manifest v1."""
    from registry.api import recipe_schema as schema

    _emit(schema())


@recipe.command("explain")
@click.argument("file", type=FILE)
@JSON_OPTION
def recipe_explain(file: Path, as_json: bool) -> None:
    """Say in plain words what a recipe does: its stages in order and who owns each gate."""
    from recipes.explain import render_text
    from registry.api import explain_recipe

    explanation = explain_recipe(file)
    if as_json:
        _emit(explanation)
    else:
        click.echo(render_text(explanation))


@recipe.command("sign")
@click.argument("file", type=FILE)
@click.option("--key", "key", type=FILE, required=True, help="Private key (OWNER.key).")
@JSON_OPTION
def recipe_sign(file: Path, key: Path, as_json: bool) -> None:
    """Sign a valid recipe, writing FILE.dsse.json (a co-signature if the file is unchanged)."""
    from registry.api import sign_recipe

    record = sign_recipe(file, key)
    if as_json:
        _emit(record)
    else:
        click.echo(f"signed {record.recipe} (sha256 {record.sha256}) with key {record.keyid}")
        click.echo(f"wrote {record.envelope}")


@recipe.command("verify")
@click.argument("file", type=FILE)
@TRUST_OPTION
@JSON_OPTION
def recipe_verify(file: Path, trust: Path | None, as_json: bool) -> None:
    """Verify a recipe's signature against the trust file (exit 0, or 3 on any failure).

    Fails on a changed byte of the recipe or of the envelope, a key not in the trust file, a
    signer without the author role or not among the recipe's owners, or no subject digest.
    """
    from registry.api import verify_recipe

    record = verify_recipe(file, trust)
    if as_json:
        _emit(record)
    else:
        signers = ", ".join(f"{s.owner} (key {s.keyid[:16]}…)" for s in record.signers)
        click.echo(
            f"verified {record.recipe}: {record.name} v{record.version}, signed by {signers}"
        )


@recipe.command("init")
@click.argument("directory", type=DIR)
@click.option("--example", default="digits", show_default=True, help="Bundled example to copy.")
def recipe_init(directory: Path, example: str) -> None:
    """Start a workspace from a bundled example: DIRECTORY/recipe.yaml and the files it names."""
    from registry.api import init_example

    for path in init_example(directory, example):
        click.echo(f"wrote {path}")


# --- keys and trust -----------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Create signing keys."""


@keys.command("generate")
@click.option("--owner", required=True, help="Owner name, as in recipes and the trust file.")
@click.option("--out", "out", type=DIR, required=True, help="Folder for the key files.")
@JSON_OPTION
def keys_generate(owner: str, out: Path, as_json: bool) -> None:
    """Write OUT/OWNER.key (private, mode 0600) and OUT/OWNER.pub.json (public, with keyid)."""
    from registry.api import generate_keys

    record = generate_keys(owner, out)
    if as_json:
        _emit(record)
    else:
        click.echo(f"wrote {record.private_key} (private, mode 0600) and {record.public_key}")
        click.echo(f"keyid {record.keyid}")


@cli.group()
def trust() -> None:
    """Manage the trust file of owners, keys and roles."""


@trust.command("add")
@click.option("--trust", "trust_file", type=FILE, default=Path("trust.yaml"), show_default=True)
@click.option("--owner", required=True, help="Owner name.")
@click.option("--key", "key", type=FILE, required=True, help="Public key (OWNER.pub.json).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["author", "approver", "auditor", "releaser"]),
    help="author signs recipes, approver signs approvals and waivers, auditor signs "
    "checkpoints, releaser moves aliases. Repeat for several.",
)
@JSON_OPTION
def trust_add(
    trust_file: Path, owner: str, key: Path, roles: tuple[str, ...], as_json: bool
) -> None:
    """Add an owner's public key and roles to the trust file (created when missing)."""
    from registry.api import trust_add as add

    record = add(trust_file, owner, key, roles)  # type: ignore[arg-type]
    if as_json:
        _emit(record)
    else:
        click.echo(
            f"{record.trust}: {record.owner} holds key {record.keyid[:16]}… "
            f"with roles {', '.join(record.roles)}"
        )


# --- run and reproduce --------------------------------------------------------------------------

WORKSPACE_OPTION = click.option(
    "--workspace",
    type=DIR,
    envvar="COMPRESSGATE_WORKSPACE",
    help="Where runs, the artifact store and the stage cache live [default: ./.compressgate].",
)


def _stage_line(stage: Any) -> None:
    accuracy = stage.metrics.get("accuracy")
    score = (
        f"accuracy {accuracy.estimate:.2%} [{accuracy.ci_low:.2%}, {accuracy.ci_high:.2%}]"
        if accuracy
        else ""
    )
    how = "cached" if stage.cached else f"{stage.seconds:.1f} s"
    click.echo(
        f"seed {stage.seed} · {stage.name} [{stage.kind}] {score} · "
        f"{_size(stage.size_bytes)} · {how}",
        err=True,
    )


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _run_table(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary.recipe.name} v{summary.recipe.version} · {summary.run_id}")
    for column in (
        "seed",
        "stage",
        "kind",
        "format",
        "size",
        "vs float ONNX",
        "params",
        "MACs",
        "accuracy [95% CI]",
        "Δ vs baseline [CI]",
        "time",
        "sha256",
    ):
        table.add_column(
            column, justify="right" if column in ("size", "params", "MACs") else "left"
        )
    reference: dict[int, int] = {}
    for stage in summary.stages:
        if stage.kind == "baseline" and "onnx_size_bytes" in stage.details:
            reference[stage.seed] = stage.details["onnx_size_bytes"]
        ratio = reference.get(stage.seed)
        smaller = f"{ratio / stage.size_bytes:.1f}x smaller" if ratio and stage.size_bytes else "-"
        if stage.kind == "baseline" and ratio:
            smaller = f"is {_size(ratio)}"
        accuracy = stage.metrics.get("accuracy")
        table.add_row(
            str(stage.seed),
            stage.name,
            stage.kind,
            stage.format or "-",
            _size(stage.size_bytes),
            smaller,
            f"{stage.params:,}" if stage.params is not None else "-",
            f"{stage.macs:,}" if stage.macs is not None else "-",
            _interval(accuracy),
            _interval(stage.metrics.get("paired.accuracy_difference"), signed=True),
            "cached" if stage.cached else f"{stage.seconds:.1f} s",
            (stage.artifact_sha256 or "-")[:12],
        )
    Console(width=180).print(table)
    _seeds_table(summary)
    click.echo(f"status: {summary.status}; record: {summary.record}")
    for mismatch in summary.environment_mismatches:
        click.echo(f"warning: environment differs from the lock: {mismatch}")


def _interval(metric: Any, *, signed: bool = False) -> str:
    if metric is None:
        return "-"
    sign = "+" if signed else ""
    return f"{metric.estimate:{sign}.2%} [{metric.ci_low:{sign}.1%}, {metric.ci_high:{sign}.1%}]"


def _seeds_table(summary: Any) -> None:
    """Accuracy and its change over the seeds, per stage (mean, t interval, worst seed)."""
    if not summary.aggregate:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"over {len(summary.seeds)} seeds: mean with t interval, worst seed")
    for column in ("stage", "accuracy", "worst", "Δ vs baseline", "worst Δ", "exemplars"):
        table.add_column(column)
    for name, metrics in summary.aggregate.items():
        row = [name]
        for metric in ("accuracy", "paired.accuracy_difference"):
            value = metrics.get(metric)
            signed = "+" if metric != "accuracy" else ""
            row += (
                [
                    f"{value.mean:{signed}.2%} [{value.ci_low:{signed}.1%}, "
                    f"{value.ci_high:{signed}.1%}]",
                    f"{value.worst:{signed}.2%} (seed {value.worst_seed})",
                ]
                if value is not None
                else ["-", "-"]
            )
        found = summary.exemplars.get(name)
        row.append(f"{found['count']} of {found['n']}" if found else "-")
        table.add_row(*row)
    Console(width=180).print(table)


@cli.command("run")
@click.argument("file", type=FILE)
@TRUST_OPTION
@WORKSPACE_OPTION
@click.option("--force", is_flag=True, help="Recompute every stage, ignoring the stage cache.")
@JSON_OPTION
def run(file: Path, trust: Path | None, workspace: Path | None, force: bool, as_json: bool) -> None:
    """Run a signed recipe: verify it, check the environment, run every stage for every seed.

    Each stage output is stored by sha256 and evaluated; a stage whose inputs, spec, data,
    code and environment match an earlier run is reused (--force recomputes). Prints a table,
    or with --json: run_id, recipe, stages (artifact_sha256, size_bytes, params, macs,
    metrics.accuracy), status.
    """
    from registry.api import run_recipe

    summary = run_recipe(
        file,
        trust_path=trust,
        workspace=workspace,
        force=force,
        progress=True,
        on_stage=_stage_line,
    )
    if as_json:
        _emit(summary)
    else:
        _run_table(summary)


@cli.command("reproduce")
@click.argument("run_id")
@TRUST_OPTION
@WORKSPACE_OPTION
@JSON_OPTION
def reproduce(run_id: str, trust: Path | None, workspace: Path | None, as_json: bool) -> None:
    """Re-run RUN_ID from scratch in a temporary store and compare every artifact digest.

    Exit 3 if any stage's artifact differs, naming the first such stage.
    """
    from registry.api import reproduce_run
    from registry.errors import IntegrityError

    result = reproduce_run(
        run_id, trust_path=trust, workspace=workspace, progress=True, on_stage=_stage_line
    )
    if as_json:
        _emit(result)
    else:
        for stage in result.stages:
            mark = "identical" if stage.identical else "DIFFERS"
            recorded, reproduced = stage.recorded_sha256 or "-", stage.reproduced_sha256 or "-"
            click.echo(
                f"seed {stage.seed} · {stage.name}: {mark} ({recorded[:16]} vs {reproduced[:16]})"
            )
    if not result.identical:
        first = next(s for s in result.stages if not s.identical)
        raise IntegrityError(
            f"run {run_id} did not reproduce: stage '{first.name}' (seed {first.seed}) gave "
            f"{first.reproduced_sha256}, the run recorded {first.recorded_sha256}"
        )
    if not as_json:
        click.echo(
            f"run {run_id} reproduced bit for bit: {len(result.stages)} artifact(s) identical"
        )


@cli.command("evaluate")
@click.argument("variant")
@click.option(
    "--against",
    metavar="BASELINE",
    help="The variant to compare with (a sha256 prefix) [default: the baseline of VARIANT's run "
    "and seed].",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="KIND",
    help="Run only this evaluator (repeat for several): accuracy, paired, calibration, "
    "fairness, classes, fidelity, robustness, latency, size.",
)
@WORKSPACE_OPTION
@JSON_OPTION
def evaluate(
    variant: str,
    against: str | None,
    only: tuple[str, ...],
    workspace: Path | None,
    as_json: bool,
) -> None:
    """Measure a stored VARIANT (a prefix of its artifact sha256) against a baseline.

    The variant is found in the workspace's run records and read back from the artifact store;
    its seed's test split is loaded again through the recorded recipe (which must be unchanged:
    exit 3) and the recipe's evaluators run on it. Prints every metric with its interval, or
    with --json: variant, against, metrics{name: estimate, ci_low, ci_high, n, method}, and
    evaluations{kind: full result}. Writes nothing.
    """
    from registry.api import evaluate_variant

    result = evaluate_variant(variant, against=against, only=only, workspace=workspace)
    if as_json:
        _emit(result)
        return
    click.echo(
        f"{result.stage} {result.variant[:12]} (run {result.run_id}, seed {result.seed}) "
        f"against {result.against_stage} {result.against[:12]} (run {result.against_run_id})"
    )
    _metric_table(result.metrics)


def _metric_table(metrics: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("metric", "estimate", "interval", "n", "method"):
        table.add_column(column, justify="right" if column in ("estimate", "n") else "left")
    for name, m in metrics.items():
        interval = (
            "exact"
            if m.method == "exact"
            else f"[{_number(m.ci_low)}, {_number(m.ci_high)}] ({m.confidence:.0%})"
        )
        table.add_row(name, f"{_number(m.estimate)} {m.unit}".strip(), interval, str(m.n), m.method)
    Console(width=200).print(table)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


# --- entry point ------------------------------------------------------------------------------


def main() -> None:
    """The console script."""
    cli(prog_name="compressgate")
