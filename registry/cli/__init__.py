"""The `compressgate` command line: thin over `compressgate.registry.api`.

Each command parses its arguments, makes one API call and prints. `main` is the one place that
turns a `CompressgateError` into `Error: …` (and a hint) on stderr and its exit code. Heavy
modules are imported inside the commands so that `compressgate --help` answers at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from compressgate.registry.kernel.errors import CompressgateError, Issue

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
RUN_TRUST_OPTION = click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file the sign-offs are checked against [default: trust.yaml beside the "
    "recipe the run recorded].",
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


class _UsageLine(click.UsageError):
    """A usage error shown as one line, `Error: … (see 'compressgate run --help')`, exit 2."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)

    def show(self, file: Any = None) -> None:
        see = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        message = " ".join(self.format_message().split()).removesuffix(".")
        click.echo(f"Error: {message}{see}", err=True)


def _one_line(error: click.UsageError) -> click.UsageError:
    # A group called without a command still prints its help, as click does.
    return error if isinstance(error, click.exceptions.NoArgsIsHelpError) else _UsageLine(error)


class _Compressgate(click.Group):
    """The root group: the one place that turns our errors into messages and exit codes."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None
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
@click.option("--strict", is_flag=True, help="Exit 2 if a gate is underpowered.")
@click.option("--no-power", "power", flag_value=False, default=True, help="Skip the power check.")
def recipe_validate(
    files: tuple[Path, ...], trust: Path | None, as_json: bool, strict: bool, power: bool
) -> None:
    """Check manifests: schema, cross-references, files, imports and owners (exit 0 or 2).

    Every problem is printed as FILE:LINE FIELD: MESSAGE. Owners are checked against the trust
    file when one is given or found beside the recipe. Each statistical gate's power at the
    test split's size is checked (the data loader runs): a gate that could never pass, or has
    less than its planned power, is flagged with the margin or sample size that would work
    (a warning; --strict makes it exit 2). --no-power skips the check (no data is loaded).
    """
    from compressgate.registry.api import validate_recipes

    records = validate_recipes(files, trust, with_power=power)
    if strict:
        records = [
            r.model_copy(update={"valid": False, "exit_code": 2})
            if r.valid and any(p["underpowered"] for p in r.power)
            else r
            for r in records
        ]
    if as_json:
        _emit(records)
    else:
        for record in records:
            if record.valid:
                click.echo(f"ok {record.file} ({record.name} v{record.version})")
            for warning in record.warnings:
                click.echo(f"warning: {record.file}: {warning}", err=True)
            for issue in record.issues:
                click.echo(f"Error: {Issue(**issue.model_dump())}", err=True)
    failed = [r for r in records if not r.valid]
    if failed:
        sys.exit(failed[0].exit_code)


@recipe.command("schema")
def recipe_schema() -> None:
    """Print the JSON Schema of recipe manifest v1."""
    from compressgate.registry.api import recipe_schema as schema

    _emit(schema())


@recipe.command("explain")
@click.argument("file", type=FILE)
@TRUST_OPTION
@JSON_OPTION
def recipe_explain(file: Path, trust: Path | None, as_json: bool) -> None:
    """Say in plain words what a recipe does: its stages in order and who owns each gate."""
    from compressgate.recipes.explain import render_text
    from compressgate.registry.api import explain_recipe

    explanation = explain_recipe(file, trust)
    if as_json:
        _emit(explanation)
    else:
        click.echo(render_text(explanation))


@recipe.command("sign")
@click.argument("file", type=FILE)
@click.option("--key", "key", type=FILE, required=True, help="Private key (OWNER.key).")
@TRUST_OPTION
@JSON_OPTION
def recipe_sign(file: Path, key: Path, trust: Path | None, as_json: bool) -> None:
    """Sign a valid recipe, writing FILE.dsse.json (a co-signature if the file is unchanged).

    The recipe is checked as `recipe validate` checks it, against the trust file if one is
    found (its owners, and the modules it allow-lists)."""
    from compressgate.registry.api import sign_recipe

    record = sign_recipe(file, key, trust)
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
    from compressgate.registry.api import verify_recipe

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
    from compressgate.registry.api import init_example

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
    from compressgate.registry.api import generate_keys

    record = generate_keys(owner, out)
    if as_json:
        _emit(record)
    else:
        click.echo(f"wrote {record.private_key} (private, mode 0600) and {record.public_key}")
        click.echo(f"keyid {record.keyid}")


@cli.group()
def trust() -> None:
    """Manage the trust file of owners, keys, roles and allow-listed modules."""


@trust.command("allow")
@click.argument("modules", nargs=-1, required=True)
@click.option("--trust", "trust_file", type=FILE, default=Path("trust.yaml"), show_default=True)
@JSON_OPTION
def trust_allow(modules: tuple[str, ...], trust_file: Path, as_json: bool) -> None:
    """Allow recipes to name factories and loaders from MODULES (and their submodules).

    Nothing else is ever imported for a recipe: without this list, only
    compressgate.recipes.examples.
    Standard-library modules cannot be allowed (a signed recipe still cannot name os:system).
    """
    from compressgate.registry.api import trust_allow as allow

    record = allow(trust_file, modules)
    if as_json:
        _emit(record)
    else:
        click.echo(f"{record.trust}: recipes may import from {', '.join(record.modules)}")


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
    from compressgate.registry.api import trust_add as add

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
    help="Where the artifact store, the stage cache and the default catalog live "
    "[default: ./.compressgate].",
)
ENVS_OPTION = click.option(
    "--envs",
    type=DIR,
    envvar="COMPRESSGATE_ENVS",
    help="Where environments built from locks are kept, one folder per lock sha256 "
    "[default: WORKSPACE/envs].",
)
CATALOG_OPTION = click.option(
    "--catalog",
    metavar="URL",
    envvar="COMPRESSGATE_CATALOG",
    help="Catalog database: a path or sqlite:///PATH, or postgresql+psycopg://USER@HOST/DB "
    "[default: WORKSPACE/catalog.db].",
)


def _stage_line(stage: Any) -> None:
    accuracy = stage.metrics.get("accuracy")
    cosine = stage.metrics.get("cosine.mean")
    score = (
        f"accuracy {accuracy.estimate:.2%} [{accuracy.ci_low:.2%}, {accuracy.ci_high:.2%}]"
        if accuracy
        else f"cosine {_plain(cosine)}"
        if cosine
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


def _plain(metric: Any) -> str:
    """An estimate near 1 (a cosine, an agreement) with its interval, to four places."""
    if metric is None:
        return "-"
    return f"{metric.estimate:.4f} [{metric.ci_low:.4f}, {metric.ci_high:.4f}]"


def _headline(summary: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """The two quality columns of the run table: accuracy and its paired change for a
    classifier; cosine to the baseline (mean, 1st percentile) for an embedding model."""
    if any("cosine.mean" in stage.metrics for stage in summary.stages):
        return (
            ("cosine mean [95% CI]", lambda s: _plain(s.metrics.get("cosine.mean"))),
            ("cosine p1 [CI]", lambda s: _plain(s.metrics.get("cosine.p1"))),
        )
    return (
        ("accuracy [95% CI]", lambda s: _interval(s.metrics.get("accuracy"))),
        (
            "Δ vs baseline [CI]",
            lambda s: _interval(s.metrics.get("paired.accuracy_difference"), signed=True),
        ),
    )


def _run_table(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    (first, first_of), (second, second_of) = _headline(summary)
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
        first,
        second,
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
        table.add_row(
            str(stage.seed),
            stage.name,
            stage.kind,
            stage.format or "-",
            _size(stage.size_bytes),
            smaller,
            f"{stage.params:,}" if stage.params is not None else "-",
            f"{stage.macs:,}" if stage.macs is not None else "-",
            first_of(stage),
            second_of(stage),
            "cached" if stage.cached else f"{stage.seconds:.1f} s",
            (stage.artifact_sha256 or "-")[:12],
        )
    Console(width=180).print(table)
    _seeds_table(summary)
    _decisions_table(summary.gates)
    click.echo(f"status: {summary.status}; recorded in the catalog {summary.record}")
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
@CATALOG_OPTION
@click.option("--force", is_flag=True, help="Recompute every stage, ignoring the stage cache.")
@click.option(
    "--isolate",
    is_flag=True,
    help="Run the stages in the environment built from the recipe's lock, as "
    "`environment.isolate: true` does.",
)
@ENVS_OPTION
@JSON_OPTION
def run(
    file: Path,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    force: bool,
    isolate: bool,
    envs: Path | None,
    as_json: bool,
) -> None:
    """Run a signed recipe: verify it, check the environment, run every stage for every seed.

    Each stage output is stored by sha256, evaluated and recorded in the catalog; a stage whose
    inputs, spec, data, code and environment match an earlier run is reused (--force
    recomputes). Stages run stage by stage across the seeds; each gate is judged when every
    seed has run its stage, and one that fails after an intermediate stage stops the run
    there (status `stopped`). Exit 1 if a gate failed (owners' approvals and waivers are
    `compressgate submit`'s review).

    Isolated (--isolate, or `environment.isolate: true`): the stages and evaluators run in a
    subprocess of a virtual environment built from the recipe's lock, kept under
    ENVS/<lock sha256>/ and reused by every later run with the same lock; this process keeps
    the catalog and the progress. Exit 5 if pip cannot install the lock.

    Prints a table, or with --json: run_id, recipe, stages (artifact_sha256, size_bytes,
    params, macs, metrics.accuracy), status, record (the catalog), isolated (lock_sha256,
    path, interpreter, built, prefix).
    """
    from compressgate.registry.api import run_recipe

    summary = run_recipe(
        file,
        trust_path=trust,
        workspace=workspace,
        force=force,
        progress=True,
        on_stage=_stage_line,
        catalog=catalog,
        isolate=isolate,
        envs=envs,
    )
    if as_json:
        _emit(summary)
    else:
        _run_table(summary)
    sys.exit(summary.exit_code)


@cli.command("reproduce")
@click.argument("run_id")
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@ENVS_OPTION
@JSON_OPTION
def reproduce(
    run_id: str,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    envs: Path | None,
    as_json: bool,
) -> None:
    """Re-run RUN_ID from scratch in a temporary store and compare every artifact digest.

    An isolated run is re-run in the same environment (its lock must have the recorded
    sha256, exit 3 otherwise). Exit 3 if any stage's artifact differs, naming the first.
    """
    from compressgate.registry.api import reproduce_run
    from compressgate.registry.kernel.errors import IntegrityError

    result = reproduce_run(
        run_id,
        trust_path=trust,
        workspace=workspace,
        progress=True,
        on_stage=_stage_line,
        catalog=catalog,
        envs=envs,
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
@CATALOG_OPTION
@click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file whose modules the recipe may import [default: trust.yaml beside the "
    "recipe the run recorded].",
)
@JSON_OPTION
def evaluate(
    variant: str,
    against: str | None,
    only: tuple[str, ...],
    workspace: Path | None,
    catalog: str | None,
    trust: Path | None,
    as_json: bool,
) -> None:
    """Measure a stored VARIANT (a prefix of its artifact sha256) against a baseline.

    The variant is found in the catalog and read back from the artifact store;
    its seed's test split is loaded again through the recorded recipe (which must be unchanged:
    exit 3) and the recipe's evaluators run on it. Prints every metric with its interval, or
    with --json: variant, against, metrics{name: estimate, ci_low, ci_high, n, method}, and
    evaluations{kind: full result}. Writes nothing.
    """
    from compressgate.registry.api import evaluate_variant

    result = evaluate_variant(
        variant, against=against, only=only, workspace=workspace, catalog=catalog, trust_path=trust
    )
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


# --- the catalog ------------------------------------------------------------------------------


@cli.group("env")
def env_group() -> None:
    """Environments built from locks: create, list, verify, export.

    An environment is a virtual environment holding exactly a lock's pins and compressgate,
    kept under ENVS/<sha256 of the lock>/ (ENVS: --envs, $COMPRESSGATE_ENVS, else
    WORKSPACE/envs). It is built in a hidden temporary folder and renamed only when complete,
    so a build killed half way is never used.
    """


@env_group.command("create")
@click.argument("lock", type=FILE)
@WORKSPACE_OPTION
@ENVS_OPTION
@JSON_OPTION
def env_create(lock: Path, workspace: Path | None, envs: Path | None, as_json: bool) -> None:
    """Build the environment of LOCK, or find it built (exit 5 if pip cannot install LOCK).

    A lock whose pins carry --hash options is installed with --require-hashes.
    """
    from compressgate.registry.api import env_create as create

    result = create(lock, workspace=workspace, envs=envs, say=_say)
    if as_json:
        _emit(result)
        return
    what = "built" if result.built else "refreshed" if result.refreshed else "reused"
    click.echo(f"{what} {result.path} in {result.seconds:.1f} s")
    click.echo(f"  interpreter {result.interpreter} (Python {result.python})")


def _say(text: str) -> None:
    click.echo(text, err=True)


@env_group.command("list")
@WORKSPACE_OPTION
@ENVS_OPTION
@JSON_OPTION
def env_list(workspace: Path | None, envs: Path | None, as_json: bool) -> None:
    """The environments in the store, and any unfinished builds (never used)."""
    from compressgate.registry.api import env_list as listing

    result = listing(workspace=workspace, envs=envs)
    if as_json:
        _emit(result)
        return
    if not result.environments:
        click.echo(f"no environments in {result.store}")
    for env in result.environments:
        click.echo(
            f"{env.lock_sha256[:16]}  Python {env.python}  {env.pins} pins"
            f"{' (hashes)' if env.require_hashes else ''}  created {env.created_at}  {env.path}"
        )
    for path in result.partial:
        click.echo(f"unfinished build (not used; the next build of its lock removes it): {path}")


@env_group.command("verify")
@click.argument("lock", type=FILE)
@WORKSPACE_OPTION
@ENVS_OPTION
@click.option(
    "--current", is_flag=True, help="Check the running interpreter instead of LOCK's environment."
)
@JSON_OPTION
def env_verify(
    lock: Path, workspace: Path | None, envs: Path | None, current: bool, as_json: bool
) -> None:
    """Check LOCK's environment package by package against LOCK (exit 5 listing every
    difference: a package missing, at another version, or installed and not locked)."""
    from compressgate.registry.api import env_verify as verify

    result = verify(lock, workspace=workspace, envs=envs, current=current)
    if as_json:
        _emit(result)
    elif result.matches:
        click.echo(f"{result.interpreter}: matches {lock} (sha256 {result.lock_sha256[:16]})")
    else:
        click.echo(
            f"{result.interpreter}: {len(result.differences)} package(s) differ from {lock}:"
        )
        for difference in result.differences:
            click.echo(f"  {difference.text}")
    sys.exit(result.exit_code)


@env_group.command("export")
@click.option("-o", "--out", type=FILE, help="Write the lock here [default: print it].")
@click.option(
    "--requires",
    metavar="DIST",
    help="Only DIST and its requirements, transitively (e.g. compressgate: the smallest lock "
    "that runs it) [default: every installed package].",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@JSON_OPTION
def env_export(out: Path | None, requires: str | None, force: bool, as_json: bool) -> None:
    """Write a lock of the running environment: exact pins, for a new recipe.

    compressgate itself and pip are left out (an environment installs the running
    compressgate); local version labels (+cpu) are noted in a comment, not pinned.
    """
    from compressgate.registry.api import env_export as export

    result = export(out, requires=requires, force=force)
    if as_json:
        _emit(result)
    elif out is None:
        click.echo(result.text, nl=False)
    else:
        click.echo(f"wrote {out}: {result.pins} pins (sha256 {result.sha256[:16]})")


@cli.group("catalog")
def catalog_group() -> None:
    """Read the catalog: runs, variants, lineage and differences (it is never edited)."""


@catalog_group.command("list")
@click.option("--recipe", metavar="NAME", help="Only runs of this recipe.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_list(
    recipe: str | None,
    limit: int,
    offset: int,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first: run_id, recipe, version, status, started, seeds, signers."""
    from compressgate.registry.api import catalog_list as listing

    runs = listing(recipe=recipe, limit=limit, offset=offset, workspace=workspace, catalog=catalog)
    if as_json:
        _emit(runs)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("run", "recipe", "status", "started", "seeds", "signers", "recipe sha256"):
        table.add_column(column)
    for r in runs:
        table.add_row(
            r.run_id,
            f"{r.recipe} v{r.version}",
            r.status,
            r.started_at,
            ",".join(map(str, r.seeds)),
            ", ".join(r.signers),
            r.recipe_sha256[:12],
        )
    Console(width=200).print(table)


@catalog_group.command("show")
@click.argument("ref", metavar="ID")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_show(ref: str, workspace: Path | None, catalog: str | None, as_json: bool) -> None:
    """Show a run (ID = run-…) or a variant (RUN/SEED/STAGE or an artifact sha256 prefix).

    For a run, --json exports its full record exactly as the executor held it: recipe,
    environment, data digests, every stage with metrics and evaluations, aggregates, timing.
    """
    from compressgate.registry import api

    if api.is_run_id(ref):
        record, decisions, where = api.catalog_show_run(ref, workspace=workspace, catalog=catalog)
        if as_json:
            _emit(record)
            return
        _run_table(api.summarize(record, where))
        _decisions_table([d.model_dump() for d in decisions])
        return
    shown = api.catalog_show_variant(ref, workspace=workspace, catalog=catalog)
    if as_json:
        _emit(shown)
        return
    v = shown.variant
    click.echo(f"variant {v.id} [{v.kind}, {v.format}] artifact {v.artifact_sha256}")
    click.echo(f"  parent {v.parent_sha256 or '-'} · recipe {v.recipe_sha256[:12]}")
    click.echo(f"  size {_size(v.size_bytes)} · params {v.params} · MACs {v.macs}")
    click.echo(f"  evaluations: {', '.join(shown.evaluations) or '-'}")
    click.echo(f"  aliases: {', '.join(shown.aliases) or '-'}")
    click.echo("  promotable: yes" if shown.promotable else f"  promotable: no ({shown.problem})")
    _metric_table(v.metrics)
    _decisions_table([d.model_dump() for d in shown.decisions])


def _decisions_table(decisions: Sequence[dict[str, Any]]) -> None:
    """The gate decisions (as `Decision` dicts), one row per gate and seed."""
    if not decisions:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gate decisions")
    for column in ("seed", "gate", "stage", "metric", "estimate", "interval", "verdict", "owner"):
        table.add_column(column)
    for d in decisions:
        low, high = d["ci_low"], d["ci_high"]
        interval = f"[{_opt(low)}, {_opt(high)}]" if low is not None or high is not None else "-"
        table.add_row(
            str(d["seed"]),
            d["gate"],
            d["stage"],
            d["metric"],
            _opt(d["estimate"]),
            interval,
            f"{d['verdict']} ({d['note']})",
            d["owner"],
        )
    Console(width=200).print(table)


def _opt(value: float | None) -> str:
    return "-" if value is None else _number(value)


@catalog_group.command("lineage")
@click.argument("variant")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_lineage(
    variant: str, workspace: Path | None, catalog: str | None, as_json: bool
) -> None:
    """Show a variant's ancestry, baseline first, with its recipe, signers and environment."""
    from compressgate.registry.api import catalog_lineage as lineage

    found = lineage(variant, workspace=workspace, catalog=catalog)
    if as_json:
        _emit(found)
        return
    run = found.run
    click.echo(
        f"recipe {run.recipe} v{run.version} ({run.recipe_sha256[:12]}) signed by "
        f"{', '.join(run.signers) or 'nobody'}; run {run.run_id} by {run.actor}"
    )
    click.echo(
        f"environment {run.environment_sha256[:12]} (python {run.python}), "
        f"lock {run.lock_sha256[:12] or '-'}"
    )
    for depth, v in enumerate(found.chain):
        accuracy = v.metrics.get("accuracy")
        score = f" · accuracy {accuracy.estimate:.2%}" if accuracy else ""
        click.echo(
            f"{'  ' * depth}{'└─ ' if depth else ''}{v.stage} [{v.kind}, {v.format}] "
            f"{v.artifact_sha256[:12]} · {_size(v.size_bytes)}{score}"
        )


@catalog_group.command("diff")
@click.argument("a")
@click.argument("b")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_diff(
    a: str, b: str, workspace: Path | None, catalog: str | None, as_json: bool
) -> None:
    """Two variants side by side: identity, stage configuration and metrics (A and B are
    RUN/SEED/STAGE or artifact sha256 prefixes)."""
    from compressgate.registry.api import catalog_diff as diff

    found = diff(a, b, workspace=workspace, catalog=catalog)
    if as_json:
        _emit(found)
        return
    from rich.console import Console
    from rich.table import Table

    for title, rows in (
        ("identity", found.identity),
        ("configuration", found.config),
        ("metrics: estimate [interval]", found.metrics),
    ):
        table = Table(title=title)
        for column in ("", found.a, found.b):
            table.add_column(column)
        for row in rows:
            mark = "" if row.same else "[bold]"
            table.add_row(f"{mark}{row.key}", _cell(row.a), _cell(row.b))
        Console(width=200).print(table)


def _cell(value: Any) -> str:
    if isinstance(value, list) and len(value) == 3 and all(isinstance(x, float) for x in value):
        return f"{_number(value[0])} [{_number(value[1])}, {_number(value[2])}]"
    return "-" if value is None else str(value)


# --- aliases ------------------------------------------------------------------------------------

ACTOR_OPTION = click.option(
    "--actor",
    envvar="COMPRESSGATE_ACTOR",
    help="Who is acting, for the record [default: the login name].",
)


def _move_line(move: Any) -> str:
    previous = f" (was {move.previous_variant_id})" if move.previous_variant_id else ""
    return (
        f"#{move.seq} {move.moved_at} {move.action} {move.alias} -> {move.variant_id} "
        f"[{move.artifact_sha256[:12]}]{previous} by {move.actor}: {move.reason}"
    )


@cli.command("report")
@click.argument("run_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json", "card"]),
    default="html",
    show_default=True,
    help="html: the self-contained audit report; md: for a pull request; json: the evidence "
    "bundle; card: a model card (Markdown).",
)
@click.option(
    "-o",
    "--output",
    type=FILE,
    help="Write here and record its sha256 in the catalog [default: stdout, not recorded].",
)
@click.option("--checkpoint", type=FILE, help="A signed catalog checkpoint to show (needs trust).")
@ACTOR_OPTION
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
def report(
    run_id: str,
    fmt: str,
    output: Path | None,
    checkpoint: Path | None,
    actor: str | None,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
) -> None:
    """Render the audit report of RUN_ID from the catalog: recipe identity (the signature is
    checked now), environment, stages, gates with sign-offs, plots, lineage, what changed since
    the previous approved run, and the chain head. The same run gives the same bytes.

    With -o the file's sha256 is recorded in the catalog (a new event, unless those bytes are
    recorded already), so `audit verify --report FILE` detects a changed copy; an older
    catalog is migrated first. Printed to stdout, nothing is recorded."""
    from compressgate.registry.api import report as render
    from compressgate.registry.api import write_report

    if output is None:
        body = render(
            run_id,
            fmt,
            trust_path=trust,
            checkpoint=checkpoint,
            workspace=workspace,
            catalog=catalog,
        )
        click.echo(body.decode("utf-8"), nl=False)
        return
    recorded = write_report(
        run_id,
        output,
        fmt,
        trust_path=trust,
        checkpoint=checkpoint,
        workspace=workspace,
        catalog=catalog,
        actor=actor,
    )
    click.echo(
        f"wrote {output} ({recorded.size_bytes:,} bytes), recorded in the catalog at event "
        f"{recorded.seq} (sha256 {recorded.sha256[:16]}…)"
    )


@cli.command("submit")
@click.argument("file", type=FILE)
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@click.option("--force", is_flag=True, help="Recompute every stage, ignoring the stage cache.")
@JSON_OPTION
def submit(
    file: Path,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Submit a signed recipe for gated review: verify, run, judge the gates (exit 0 or 1).

    The signature and the signers' trust are checked first (exit 3). Each statistical gate's
    power at the test split's size is checked and an underpowered gate is flagged. The run
    stops after an intermediate stage whose gate fails. The review status is `rejected`
    (exit 1), `awaiting-approval` (gates with `approval: required` wait for their owners:
    `compressgate approve`) or `approved` (exit 0).
    """
    from compressgate.registry.api import submit as run_submit

    result = run_submit(
        file, trust_path=trust, workspace=workspace, force=force, progress=True, catalog=catalog
    )
    if as_json:
        _emit(result)
    else:
        _power_lines(result.power)
        _run_table(result.run)
        _review_text(result.review)
    sys.exit(result.exit_code)


def _power_lines(checks: list[dict[str, Any]]) -> None:
    for check in checks:
        if check.get("underpowered"):
            click.echo(f"warning: gate '{check['gate']}' is underpowered: {check['message']}")


def _review_text(found: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"review of {found['run_id']} ({found['recipe']} v{found['recipe_version']}): "
        f"{found['status']}"
    )
    for column in (
        "gate",
        "owner",
        "stage",
        "seeds",
        "estimate",
        "interval",
        "threshold",
        "n",
        "verdict",
        "state",
        "sign-off",
    ):
        table.add_column(column)
    for gate in found["gates"]:
        d = gate["decision"]
        signed = [
            f"{s['kind']} by {s['owner']}" + ("" if s["counts"] else f" (void: {s['problem']})")
            for s in gate["signoffs"]
        ]
        low = "" if d["ci_low"] is None else f"{d['ci_low']:.4g}"
        high = "" if d["ci_high"] is None else f"{d['ci_high']:.4g}"
        table.add_row(
            d["gate"],
            d["owner"],
            d["stage"],
            d["policy"],
            "-" if d["estimate"] is None else f"{d['estimate']:.4g}",
            f"[{low}, {high}]" if low or high else "-",
            "-" if d["threshold"] is None else f"{d['threshold']:.4g}",
            "-" if d["n"] is None else str(d["n"]),
            d["verdict"],
            gate["state"],
            "; ".join(signed) or "-",
        )
    Console(width=200).print(table)
    for name in found["not_reached"]:
        click.echo(f"gate '{name}': not judged, the pipeline stopped before its stage")
    for reason in found["reasons"]:
        click.echo(f"- {reason}")
    click.echo(f"status: {found['status']}")


@cli.group("review")
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
    from compressgate.registry.api import review_status as statuses

    found = statuses(run_id, trust_path=trust, workspace=workspace, catalog=catalog, limit=limit)
    if as_json:
        _emit(found[0] if run_id else found)
    else:
        for item in found:
            _review_text(item.model_dump(mode="json"))
    if run_id and found[0].status == "rejected":
        sys.exit(1)


def _signoff_command(kind: str, run_id: str, gate: str, **options: Any) -> None:
    from compressgate.registry.api import sign_off

    as_json = options.pop("as_json")
    result = sign_off(run_id, gate, kind=kind, **options)
    if as_json:
        _emit(result)
        return
    s = result.signoff
    click.echo(
        f"{kind} of gate '{gate}' of {run_id} by {s['owner']} (key {s['keyid'][:16]}…) recorded"
        + (f", until {s['expires']}" if s.get("expires") else "")
    )
    if result.envelope:
        click.echo(f"wrote {result.envelope}")
    click.echo(f"run {run_id} is now {result.review['status']}")


SIGNOFF_OPTIONS = [
    click.option("--gate", required=True, help="The gate's name in the recipe."),
    click.option("--key", "key_path", type=FILE, help="The gate owner's private key."),
    click.option(
        "--envelope",
        "envelope_path",
        type=FILE,
        help="Record a sign-off the owner signed elsewhere (instead of --key).",
    ),
    click.option("--out", type=FILE, help="Also write the signed envelope here."),
    RUN_TRUST_OPTION,
    WORKSPACE_OPTION,
    CATALOG_OPTION,
    JSON_OPTION,
]


def _with(options: list[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@cli.command("approve")
@click.argument("run_id")
@_with(SIGNOFF_OPTIONS)
def approve(run_id: str, gate: str, **options: Any) -> None:
    """Sign and record the approval of a passing gate of RUN_ID by its owner.

    The envelope (DSSE, in-toto Statement) binds the run id, the judged variants' digests, the
    gate, its verdict and the evidence digest: it cannot be moved to another run. Exit 3 if
    the key is not the gate owner's approver key in the trust file, or the envelope belongs to
    another run or gate; exit 1 if the gate failed (its owner may waive it instead).
    """
    _signoff_command(
        "approval",
        run_id,
        gate,
        trust_path=options.pop("trust"),
        **options,
    )


@cli.command("waive")
@click.argument("run_id")
@_with(SIGNOFF_OPTIONS)
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
        trust_path=options.pop("trust"),
        **options,
    )


@cli.command("ci")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--base",
    metavar="REF",
    help="Check the recipes changed against this git ref (e.g. origin/main), committed or not.",
)
@click.option("--junit", type=FILE, help="Write JUnit XML here: one testcase per gate.")
@click.option("--summary", type=FILE, help="Write a Markdown summary here.")
@click.option(
    "--no-reuse", is_flag=True, help="Run every recipe, even one already run in this environment."
)
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def ci(
    paths: tuple[Path, ...],
    base: str | None,
    junit: Path | None,
    summary: Path | None,
    no_reuse: bool,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Check recipes for a merge: verify, run (or reuse a run), judge the gates, report.

    PATHS are recipe files or folders searched for them; with --base only those changed
    against REF are checked (without PATHS: every changed recipe in the repository). A run of
    the same recipe digest in the same environment is reused. Writes JUnit XML (--junit) and a
    Markdown summary (--summary, and appended to $GITHUB_STEP_SUMMARY when set). Exit: 0 all
    gates pass (approvals may still be awaited), 1 a gate failed, 2 bad input, 3 integrity
    (signature), 5 environment mismatch; with several recipes the first of 3, 5, 4, 2, 1.
    """
    import os

    from compressgate.gates.ci import exit_code, junit_xml, markdown_summary
    from compressgate.registry.api import ci_check
    from compressgate.registry.kernel.files import write_atomic

    if not paths and base is None:
        raise click.UsageError("give recipe PATHS, --base REF, or both")
    results = ci_check(
        list(paths),
        base=base,
        trust_path=trust,
        workspace=workspace,
        catalog=catalog,
        reuse=not no_reuse,
        progress=not as_json,
    )
    text = markdown_summary(results)
    if junit is not None:
        write_atomic(junit, junit_xml(results))
    if summary is not None:
        write_atomic(summary, text.encode("utf-8"))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if as_json:
        _emit(results)
    elif not results:
        click.echo("no recipe to check" + (f" changed against {base}" if base else ""))
    else:
        for result in results:
            if result.review is not None:
                _review_text(result.review.model_dump(mode="json"))
            else:
                click.echo(f"{result.path}: exit {result.exit_code}: {result.error}", err=True)
            for line in result.underpowered:
                click.echo(f"warning: underpowered gate {line}")
    sys.exit(exit_code(results))


@cli.command("promote")
@click.argument("variant")
@click.option("--alias", required=True, help="The alias to move, e.g. production.")
@click.option("--reason", default="", help="Why, for the record.")
@ACTOR_OPTION
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def promote(
    variant: str,
    alias: str,
    reason: str,
    actor: str | None,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Point ALIAS at VARIANT if its run's review is approved (exit 1 otherwise).

    Approved: every gate passed, or was approved or waived by its owner (signatures checked
    now against the trust file); and every gate judged VARIANT's stage or one before it.
    VARIANT is RUN/SEED/STAGE or an artifact sha256 prefix. The move is a new catalog event.
    """
    from compressgate.registry.api import promote_variant

    result = promote_variant(
        variant,
        alias,
        reason=reason,
        actor=actor,
        workspace=workspace,
        catalog=catalog,
        trust_path=trust,
    )
    if as_json:
        _emit(result)
    elif result.changed:
        click.echo(_move_line(result.move))
    else:
        click.echo(f"{alias} already points to {result.move.variant_id}; nothing changed")


@cli.command("rollback")
@click.argument("alias")
@click.option("--to", "to", metavar="VARIANT", help="Roll back to this variant instead.")
@click.option("--reason", default=None, help="Why, for the record.")
@ACTOR_OPTION
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def rollback(
    alias: str,
    to: str | None,
    reason: str | None,
    actor: str | None,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Move ALIAS back to its previous known-good variant (or to --to VARIANT).

    Known-good: an earlier target of the alias that was not rolled back from and whose run's
    review is still approved (a waiver may have expired). The move is a new catalog event.
    """
    from compressgate.registry.api import rollback_alias

    result = rollback_alias(
        alias,
        to=to,
        reason=reason,
        actor=actor,
        workspace=workspace,
        catalog=catalog,
        trust_path=trust,
    )
    if as_json:
        _emit(result)
    else:
        click.echo(_move_line(result.move))


@cli.group("alias")
def alias_group() -> None:
    """Read aliases and their history."""


@alias_group.command("history")
@click.argument("name")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def alias_history(name: str, workspace: Path | None, catalog: str | None, as_json: bool) -> None:
    """Every move of alias NAME, oldest first: what, who, when and why."""
    from compressgate.registry.api import alias_history as history

    moves = history(name, workspace=workspace, catalog=catalog)
    if as_json:
        _emit(moves)
    else:
        for move in moves:
            click.echo(_move_line(move))


# --- audit --------------------------------------------------------------------------------------


@cli.group("audit")
def audit_group() -> None:
    """Verify the catalog's hash chain, rows and artifacts; sign checkpoints."""


@audit_group.command("verify")
@click.option(
    "--checkpoint",
    type=FILE,
    help="A signed checkpoint: the chain must still pass through its head (needs --trust).",
)
@click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file naming the auditors whose keys sign checkpoints.",
)
@click.option("--skip-artifacts", is_flag=True, help="Do not re-hash the artifact store (faster).")
@click.option(
    "--report",
    "reports",
    type=FILE,
    multiple=True,
    help="A report file `report -o` wrote: its bytes must be recorded (repeatable).",
)
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def audit_verify(
    checkpoint: Path | None,
    trust: Path | None,
    skip_artifacts: bool,
    reports: tuple[Path, ...],
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Recompute every event's hash and link, check every row against its event and every
    artifact against its digest; exit 3 naming the first broken link. Each --report FILE must
    be a report rendered from this catalog, byte for byte (exit 3 if changed since)."""
    from compressgate.registry.api import audit_verify as verify

    report = verify(
        checkpoint=checkpoint,
        trust_path=trust,
        artifacts=not skip_artifacts,
        reports=reports,
        workspace=workspace,
        catalog=catalog,
    )
    if as_json:
        _emit(report)
        return
    click.echo(
        f"catalog {report.catalog} (schema v{report.schema_version}) verifies: "
        f"{report.events} events, {report.rows} rows, {report.artifacts} artifact blobs; "
        f"head {report.head.sha256[:16]}… ({report.events_per_second:,.0f} events/s)"
    )
    if report.checkpoint is not None:
        click.echo(
            f"extends checkpoint at event {report.checkpoint.size} "
            f"({report.checkpoint.sha256[:16]}…)"
        )
    for path, found in zip(reports, report.reports, strict=True):
        click.echo(
            f"report {path}: the {found.format} report of {found.run_id} rendered at "
            f"{found.rendered_at} by {found.actor} ({found.tool}; event {found.seq})"
        )


@audit_group.command("checkpoint")
@click.option("--key", type=FILE, required=True, help="An auditor's private key (PEM).")
@click.option("-o", "--output", type=FILE, help="Write the envelope here [default: stdout].")
@WORKSPACE_OPTION
@CATALOG_OPTION
def audit_checkpoint(
    key: Path, output: Path | None, workspace: Path | None, catalog: str | None
) -> None:
    """Sign the catalog's current head (tree size + head hash) as a DSSE envelope, to publish
    outside the database; `audit verify --checkpoint FILE` checks the catalog against it."""
    from compressgate.registry.api import audit_checkpoint as make
    from compressgate.registry.kernel.files import write_atomic

    envelope = make(key, workspace=workspace, catalog=catalog)
    if output is None:
        click.echo(envelope.decode("utf-8"), nl=False)
    else:
        write_atomic(output, envelope)
        click.echo(f"checkpoint written to {output}", err=True)


# --- entry point ------------------------------------------------------------------------------


def main() -> None:
    """The console script."""
    cli(prog_name="compressgate")
