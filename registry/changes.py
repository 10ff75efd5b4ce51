"""Which recipes a change touched: what `compressgate ci --base REF` checks; and a file as the
base ref has it, for the trust `ci --base` judges with (`file_at`).

A recipe is a YAML file with `kind: Recipe`; it counts as changed when it, its signature
envelope (`NAME.dsse.json`), any file its signature covers (lock, checkpoints, ONNX baseline and
its external data, local modules) or its trust file differs from the git ref, committed or not,
or is new and not ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from compressgate.registry.kernel.errors import ManifestError, NotFoundError


def changed_files(base: str, root: Path | None = None) -> tuple[Path, set[Path]]:
    """The work tree's top folder and every file that differs from the git ref `base`
    (committed or not: added, changed, renamed, deleted, or new and not ignored), resolved."""
    top = toplevel(root or Path.cwd())
    commit = commit_of(base, top)
    names = _git(base, top, "diff", "--name-only", "--no-renames", commit, "--")
    untracked = _git(base, top, "ls-files", "--others", "--exclude-standard")
    return Path(top).resolve(), {(Path(top) / name).resolve() for name in [*names, *untracked]}


def _git(base: str, top: str, *args: str) -> list[str]:
    import subprocess

    try:
        return subprocess.run(
            ["git", *args], cwd=top, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except FileNotFoundError:
        raise NotFoundError("git is not installed: --base needs it") from None
    except subprocess.CalledProcessError as exc:
        raise ManifestError(
            f"--base {base}: git could not compare against it ({exc.stderr.strip()})",
            hint="give a ref that exists here, e.g. origin/main (fetch it first in CI)",
        ) from None


def changed_recipes(
    base: str,
    root: Path | None = None,
    *,
    candidates: Sequence[Path] | None = None,
    trust_of: Callable[[Path], Path | None] | None = None,
) -> list[Path]:
    """The recipes changed against the git ref `base`: a YAML file with `kind: Recipe` that
    changed, or whose signature envelope did, or any file its signature covers (lock,
    checkpoints, ONNX baseline, local modules: the envelope's subjects and the manifest's
    references), or its trust file (`trust_of(recipe)`) or that file's envelope. `candidates`
    are the recipes to consider (every recipe in the work tree when None)."""
    top, changed = changed_files(base, root)
    if candidates is None:
        listed = _git(base, str(top), "ls-files", "--cached", "--others", "--exclude-standard")
        candidates = [
            top / name
            for name in listed
            if name.endswith((".yaml", ".yml")) and (top / name).is_file()
        ]
    found: dict[Path, None] = {}
    for path in candidates:
        resolved = path.resolve()
        own = {resolved, resolved.with_name(resolved.name + ".dsse.json")}
        if own & changed:
            if is_recipe(path) or (not _readable_yaml(path) and "recipe" in path.name):
                found[path] = None  # an unreadable one: let validation report it
            continue
        if not is_recipe(path):
            continue
        trust = trust_of(path) if trust_of is not None else None
        if trust is not None:
            trusted = trust.resolve()
            if {trusted, trusted.with_name(trusted.name + ".dsse.json")} & changed:
                found[path] = None
                continue
        if any(dependency in changed for dependency in dependencies(path)):
            found[path] = None
    return sorted(found)


def dependencies(path: Path) -> set[Path]:
    """The files a recipe's signature covers besides the manifest (resolved): the subjects its
    envelope lists and the files its manifest references now. A manifest that does not parse,
    or an envelope that does not, adds nothing: validation reports them."""
    from compressgate.recipes.load import parse_recipe
    from compressgate.recipes.signing import envelope_path
    from compressgate.recipes.subjects import referenced
    from compressgate.registry.kernel.dsse import Envelope, parse_statement
    from compressgate.registry.kernel.errors import CompressgateError

    base = path.parent
    names: set[str] = set()
    with suppress(CompressgateError, OSError):
        names.update(referenced(parse_recipe(path.read_bytes(), str(path))[0], base))
    envelope = envelope_path(path)
    with suppress(CompressgateError, OSError):
        statement = parse_statement(
            Envelope.from_json(envelope.read_bytes(), source=str(envelope)).payload,
            source=str(envelope),
        )
        names.update(name for name, _ in statement.subjects[1:])
    return {(base / name).resolve() for name in names if name}


def _readable_yaml(path: Path) -> bool:
    import yaml

    try:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return True


def is_recipe(path: Path) -> bool:
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return isinstance(document, dict) and document.get("kind") == "Recipe"


def recipes_to_check(
    paths: Sequence[Path],
    base: str | None = None,
    *,
    trust_of: Callable[[Path], Path | None] | None = None,
) -> list[Path]:
    """What `compressgate ci` checks: the files given and the recipes under the folders given;
    with `base`, only those changed against it (`changed_recipes`: the recipe, its envelope,
    a file its signature covers, or its trust file; every such recipe when none is given)."""
    recipes: list[Path] = []
    for path in paths:
        if path.is_dir():
            recipes += [p for p in sorted(path.rglob("*.y*ml")) if is_recipe(p)]
        else:
            recipes.append(path)
    if base is not None:
        return changed_recipes(base, candidates=recipes if paths else None, trust_of=trust_of)
    return recipes


def file_at(base: str, path: Path) -> bytes | None:
    """The bytes of `path` (in the work tree of a git repository) as the ref `base` has them;
    None when `base` has no such file."""
    import subprocess

    resolved = path.resolve()
    top = toplevel(resolved.parent)
    relative = resolved.relative_to(Path(top).resolve()).as_posix()
    shown = subprocess.run(
        ["git", "show", f"{commit_of(base, top)}:{relative}"],
        cwd=top,
        capture_output=True,
        check=False,
    )
    return shown.stdout if shown.returncode == 0 else None


def commit_of(base: str, top: str) -> str:
    """The commit the ref `base` names, as git resolves it (exit 2 for one it cannot): what
    every later git command is given, so that a `--base` never reaches git as an option."""
    import subprocess

    if not base or base.startswith("-") or any(ord(c) < 32 for c in base):
        raise ManifestError(
            f"--base {base!r} is not a git ref", hint="give a branch, tag or commit, e.g. main"
        )
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}"],
            cwd=top,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise NotFoundError("git is not installed: --base needs it") from None
    commit = found.stdout.strip()
    if found.returncode != 0 or len(commit) not in (40, 64):
        raise ManifestError(
            f"--base {base}: git knows no commit by that name here",
            hint="give a ref that exists here, e.g. origin/main (fetch it first in CI)",
        )
    return commit


def toplevel(where: Path) -> str:
    """The top folder of the git work tree holding `where`."""
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except FileNotFoundError:
        raise NotFoundError("git is not installed: --base needs it") from None
    except subprocess.CalledProcessError as exc:
        raise ManifestError(f"{where} is not in a git repository ({exc.stderr.strip()})") from None
