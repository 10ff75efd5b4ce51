"""`compressgate validate FILE...`: check each YAML file as what its `kind` says it is.

A folder of recipes holds more than recipes: its trust file, signature envelopes, perhaps CI
configuration. `kind: Recipe` is checked as `recipe validate` checks it; `kind: Trust` as a trust
file (with a policy envelope, `FILE.dsse.json`, beside it: as a policy, the envelope's statement
read); `kind: Sweep` as a sweep against its base recipe; any other YAML document is skipped, as
`compressgate ci` skips it. A file that is not
YAML at all is an error at its line. This is what the pre-commit hooks run
(`.pre-commit-hooks.yaml`); `--verify` also checks each recipe's and sweep's signature, as
`recipe verify` does.

Only click is imported at start-up: the checks import what they need when they run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from compressgate.registry.cli.options import FILE, JSON_OPTION, TRUST_OPTION, printable
from compressgate.registry.kernel.errors import EXIT_BAD_INPUT, CompressgateError, Issue

if TYPE_CHECKING:
    from compressgate.registry.results import ValidationResult

RECIPE, TRUST, SWEEP = "Recipe", "Trust", "Sweep"
KINDS = (RECIPE, TRUST, SWEEP)  # the kinds this command checks; any other is skipped
Status = Literal["ok", "invalid", "skipped"]


@dataclass
class FileCheck:
    """What `validate` found in one file."""

    path: str
    kind: str | None
    status: Status
    exit_code: int = 0
    reason: str | None = None  # why it was skipped, or what the ok line says of it
    name: str | None = None  # a recipe's metadata
    version: int | None = None
    signers: list[str] = field(default_factory=list)  # with --verify, a recipe's
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hint: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "name": self.name,
            "version": self.version,
            "signers": self.signers,
            "issues": [
                {"file": i.file, "line": i.line, "field": i.path, "message": i.message}
                for i in self.issues
            ],
            "warnings": self.warnings,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Heading:
    """The top-level `apiVersion` and `kind` of a file's first YAML document (scalars only),
    and the line of `kind`."""

    api_version: str | None = None
    kind: str | None = None
    kind_line: int | None = None


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=FILE)
@TRUST_OPTION
@click.option(
    "--verify",
    is_flag=True,
    help="Also verify each recipe's and sweep's signature against the trust file (as "
    "`recipe verify`).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also say which files were skipped, and why.")
@JSON_OPTION
def validate(
    files: tuple[Path, ...], trust: Path | None, verify: bool, verbose: bool, as_json: bool
) -> None:
    """Check each YAML file as its `kind` says: recipes, trust files, sweeps; skip other YAML.

    `kind: Recipe` is checked as `recipe validate` checks it (schema, references, files,
    imports, owners); `kind: Trust` as a trust file (owners, roles, keys, modules, root
    threshold), and as a policy when a signature envelope (FILE.dsse.json) sits beside it;
    `kind: Sweep` as a sweep (its schema, its base recipe's pinned sha256, each axis against
    that recipe).
    A file named trust.yaml is always a trust file (recipes beside it are checked against it).
    Other YAML (no kind, or another kind) is skipped: -v says so. Every problem is printed as
    FILE:LINE FIELD: MESSAGE. With --verify each valid recipe's and sweep's signature is
    verified too (exit 3 if it does not verify, 4 without a trust file); trust files are not
    verified here (`trust apply` and `ci --base` check a policy's signatures). Exit 0 when
    every file passed, else the first failing file's code: 2 invalid (a manifest, or YAML that
    does not parse), 3 a signature, 4 a file not found. What the pre-commit hooks run.
    """
    checks = check_files(files, trust, verify=verify)
    if as_json:
        from compressgate.registry.cli.tables import emit

        emit({"files": [c.as_json() for c in checks], "exit_code": exit_code(checks)})
    else:
        shown: set[str] = set()
        for check in checks:
            if check.status == "ok":
                click.echo(printable(f"ok {check.path} ({check.reason})"))
            elif check.status == "skipped" and verbose:
                click.echo(printable(f"skipped {check.path}: {check.reason}"))
            for warning in check.warnings:
                click.echo(printable(f"warning: {check.path}: {warning}"), err=True)
            for issue in check.issues:
                line = f"Error: {issue}"
                if line not in shown:  # a recipe reports its broken trust file's issues too
                    shown.add(line)
                    click.echo(printable(line), err=True)
            if check.hint:
                click.echo(printable(f"hint: {check.hint}"), err=True)
    code = exit_code(checks)
    if code:
        sys.exit(code)


def exit_code(checks: list[FileCheck]) -> int:
    """The first failing file's exit code (as `recipe validate`), else 0."""
    return next((c.exit_code for c in checks if c.status == "invalid"), 0)


def check_files(
    paths: tuple[Path, ...], trust: Path | None = None, *, verify: bool = False
) -> list[FileCheck]:
    """Check each file as its kind says, in the order given; problems are results, not raised."""
    from compressgate.recipes.trust import TRUST_FILE_NAME

    checks: list[FileCheck] = []
    recipes: list[tuple[int, Path]] = []
    for path in paths:
        try:
            content, text = _read(path)
            heading = read_heading(text, str(path))
        except CompressgateError as exc:
            checks.append(_failed(path, None, exc))
            continue
        kind = heading.kind
        if kind is None and path.name == TRUST_FILE_NAME:
            kind = TRUST  # what recipes beside it are checked against: an empty one breaks them
        if kind == RECIPE:
            recipes.append((len(checks), path))
            checks.append(FileCheck(str(path), kind, "ok"))  # replaced below
        elif kind == TRUST:
            checks.append(_check_trust(path, content, text))
        elif kind == SWEEP:
            checks.append(_check_sweep(path, content, trust, verify=verify))
        else:
            checks.append(_unknown_kind(path, heading, text))
    if recipes:
        _check_recipes(checks, recipes, trust, verify=verify)
    return checks


def _read(path: Path) -> tuple[bytes, str]:
    """The file's bytes and text; missing is exit 4, unreadable or not UTF-8 exit 2."""
    from compressgate.registry.kernel.errors import ManifestError, NotFoundError

    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: not found") from None
    except OSError as exc:  # a folder, a symbolic link loop, no permission to read, …
        raise ManifestError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return content, content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a UTF-8 text file ({exc})") from None


def read_heading(text: str, source: str) -> Heading:
    """The `apiVersion` and `kind` of the text's first YAML document, read as events (nothing is
    built, so no alias is expanded); the whole text is read, and a YAML syntax error anywhere
    is a ManifestError at its line, worded as a manifest's are."""
    import yaml

    found: dict[str, tuple[str, int | None]] = {}
    depth = 0  # of collections open
    root_mapping = done = False
    position = 0  # of the next node in the root mapping: even a key, odd its value
    key: str | None = None
    try:
        for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if done or isinstance(event, yaml.DocumentEndEvent):
                done = True  # a later document is read for its syntax only
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                if depth == 1:  # a mapping or list in the root mapping ended
                    position += 1
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            if depth == 0:
                root_mapping = isinstance(event, yaml.MappingStartEvent)
            elif depth == 1 and root_mapping:
                scalar = event.value if isinstance(event, yaml.ScalarEvent) else None
                if position % 2 == 0:
                    key = scalar
                elif key is not None and scalar is not None and key not in found:
                    mark = event.start_mark
                    found[key] = (scalar, mark.line + 1 if mark is not None else None)
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
            elif depth == 1:
                position += 1
    except yaml.YAMLError as exc:
        raise _syntax_error(text, source, exc) from None
    api = found.get("apiVersion")
    kind, line = found.get("kind", (None, None))
    return Heading(api[0] if api else None, kind, line)


def _syntax_error(text: str, source: str, exc: Exception) -> CompressgateError:
    """The error `parse_yaml` reports for the text (so that it reads as a manifest's would);
    the parser's own where the two parsers disagree."""
    from compressgate.recipes.yamldoc import parse_yaml
    from compressgate.registry.kernel.errors import ManifestError

    try:
        parse_yaml(text, source)
    except CompressgateError as error:
        return error
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    message = f"invalid YAML: {getattr(exc, 'problem', None) or ' '.join(str(exc).split())}"
    return ManifestError(issues=(Issue(source, line, "", message),))


def _failed(path: Path, kind: str | None, exc: CompressgateError) -> FileCheck:
    issues = list(getattr(exc, "issues", ()))
    if not issues:  # a message that names the file already does not name it twice
        issues = [Issue(str(path), None, "", str(exc).removeprefix(f"{path}: "))]
    return FileCheck(str(path), kind, "invalid", exc.exit_code, issues=issues, hint=exc.hint)


def _unknown_kind(path: Path, heading: Heading, text: str) -> FileCheck:
    """Skipped, unless it is a compressgate document without a kind, with a kind misspelt, or
    that a manifest's parser refuses (a `!!python/...` tag, aliases that expand too far)."""
    import difflib

    from compressgate.recipes.yamldoc import parse_yaml

    kind = heading.kind
    ours = (heading.api_version or "").startswith("compressgate/")
    if ours:
        try:
            parse_yaml(text, str(path))
        except CompressgateError as exc:
            return _failed(path, kind, exc)
    if kind is None:
        if ours:
            message = "required, but missing: a compressgate document says what it is"
            issue = Issue(str(path), 1, "kind", f"{message} ({', '.join(KINDS)})")
            return FileCheck(str(path), None, "invalid", EXIT_BAD_INPUT, issues=[issue])
        return FileCheck(str(path), None, "skipped", reason="no kind: not a compressgate manifest")
    close = [k for k in KINDS if k.lower() == kind.lower()]
    close = close or difflib.get_close_matches(kind, KINDS, n=1, cutoff=0.85)
    if close:
        message = f"unknown kind '{kind}' (did you mean '{close[0]}'?); known: {', '.join(KINDS)}"
        issue = Issue(str(path), heading.kind_line, "kind", message)
        return FileCheck(str(path), kind, "invalid", EXIT_BAD_INPUT, issues=[issue])
    return FileCheck(str(path), kind, "skipped", reason=f"kind '{kind}' is not checked here")


def _check_trust(path: Path, content: bytes, text: str) -> FileCheck:
    """A trust file's own checks (no catalog); with an envelope beside it, a policy's: its root
    role declared, and the envelope a policy statement (its signatures are not checked)."""
    from compressgate.recipes.policy import envelope_path, parse_policy, proposed_version
    from compressgate.recipes.trust import parse_trust
    from compressgate.registry.kernel import dsse
    from compressgate.registry.kernel.errors import IntegrityError
    from compressgate.registry.kernel.files import read_input

    envelope = envelope_path(path)
    try:
        trust = parse_trust(text, str(path))
    except CompressgateError as exc:
        return _failed(path, TRUST, exc)
    owners = f"{len(trust.owners)} owner(s)"
    if not envelope.is_file():
        return FileCheck(str(path), TRUST, "ok", reason=f"trust file: {owners}")
    try:
        parse_policy(content, str(path))
        signed = dsse.Envelope.from_json(read_input(envelope, "envelope"), source=str(envelope))
        if signed.payload_type != dsse.INTOTO_PAYLOAD_TYPE:
            raise IntegrityError(f"{envelope}: payloadType is {signed.payload_type!r}, not in-toto")
        version, _ = proposed_version(signed, str(envelope))
    except CompressgateError as exc:
        return _failed(path, TRUST, exc)
    assert trust.root is not None  # parse_policy checked it
    reason = (
        f"trust policy: {owners}, root threshold {trust.root.threshold}; "
        f"{envelope.name} signs it as version {version}"
    )
    return FileCheck(str(path), TRUST, "ok", reason=reason)


def _check_sweep(path: Path, content: bytes, trust: Path | None, *, verify: bool) -> FileCheck:
    """A sweep checked against its base recipe (and the trust file, if one is found); with
    `verify`, its signature, its base recipe's and the pin between them, as `recipe verify`."""
    from compressgate.recipes.sweep import load_sweep, verify_sweep
    from compressgate.recipes.trust import load_trust
    from compressgate.registry.authoring import find_trust, require_trust

    try:
        found = require_trust(path, trust) if verify else find_trust(path, trust)
        trusted = load_trust(found) if found else None
        if verify and trusted is not None:
            verified = verify_sweep(path, trusted, trust_source=str(found))
            loaded, signers = verified.loaded, sorted({s.owner for s in verified.signers})
        else:
            loaded, signers = load_sweep(path, trust=trusted, data=content), []
    except CompressgateError as exc:
        return _failed(path, SWEEP, exc)
    sweep = loaded.sweep
    meta = sweep.metadata
    reason = (
        f"{meta.name} v{meta.version}, a sweep of {sweep.recipe.path}: {len(sweep.axes)} "
        f"ax{'es' if len(sweep.axes) > 1 else 'is'}, {sweep.trials():,} trial(s) by "
        f"{sweep.strategy.kind}"
    )
    if signers:
        reason += f", signed by {', '.join(signers)}"
    return FileCheck(
        str(path), SWEEP, "ok", reason=reason, name=meta.name, version=meta.version, signers=signers
    )


def _check_recipes(
    checks: list[FileCheck], at: list[tuple[int, Path]], trust: Path | None, *, verify: bool
) -> None:
    """Validate the recipes as `recipe validate` does (one trust file read once), then, with
    `verify`, verify each valid one's signature; each result replaces its placeholder."""
    from compressgate.registry.authoring import validate_recipes, verify_recipe

    records = validate_recipes([path for _, path in at], trust)
    for (index, path), record in zip(at, records, strict=True):
        issues = [Issue(i.file, i.line, i.path, i.message) for i in record.issues]
        elsewhere = sorted({i.file for i in issues} - {str(path)})
        if issues and len(elsewhere) == len({i.file for i in issues}):  # its trust file's only
            message = f"not checked: its trust file {', '.join(elsewhere)} is invalid"
            issues.insert(0, Issue(str(path), None, "", message))
        check = FileCheck(
            str(path),
            RECIPE,
            "ok" if record.valid else "invalid",
            record.exit_code,
            reason=f"{record.name} v{record.version}" if record.valid else None,
            name=record.name,
            version=record.version,
            issues=issues,
            warnings=list(record.warnings),
        )
        if record.valid and verify:
            try:
                verified = verify_recipe(path, trust)
            except CompressgateError as exc:
                check = _failed(path, RECIPE, exc)
            else:
                check.signers = sorted({s.owner for s in verified.signers})
                check.reason = f"{check.reason}, signed by {', '.join(check.signers)}"
        checks[index] = check


def not_a_recipe(record: ValidationResult) -> ValidationResult:
    """`recipe validate`'s failed record of a trust file, as one issue saying what the file is
    and what checks it, in place of the recipe schema's complaints; any other record as is."""
    if record.valid:
        return record
    path = Path(record.file)
    try:
        heading = read_heading(_read(path)[1], record.file)
    except CompressgateError:
        return record
    if heading.kind != TRUST:
        return record
    from compressgate.registry.results import IssueResult

    message = (
        f"this is a trust file (kind: Trust), not a recipe: check it with `compressgate "
        f"validate {record.file}`; `compressgate trust ...` manages it"
    )
    issue = IssueResult(file=record.file, line=heading.kind_line, path="kind", message=message)
    return record.model_copy(update={"issues": [issue]})
