"""Which recipes a change touched: what `compressgate ci --base REF` checks; and a file as the
base ref has it, for the trust `ci --base` judges with (`file_at`).

A recipe is a YAML file with `kind: Recipe`; it counts as changed when it, or its signature
envelope (`NAME.dsse.json`), differs from the git ref, committed or not, or is new and not
ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from compressgate.registry.kernel.errors import ManifestError, NotFoundError


def changed_recipes(base: str, root: Path | None = None) -> list[Path]:
    """The recipe manifests changed against the git ref `base` (committed or not): a YAML file
    with `kind: Recipe` that changed, or whose signature envelope did."""
    import subprocess

    import yaml

    top = toplevel(root or Path.cwd())
    commit = commit_of(base, top)
    try:
        names = subprocess.run(
            ["git", "diff", "--name-only", "--diff-filter=ACMR", commit, "--"],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        untracked = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard"],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except FileNotFoundError:
        raise NotFoundError("git is not installed: --base needs it") from None
    except subprocess.CalledProcessError as exc:
        raise ManifestError(
            f"--base {base}: git could not compare against it ({exc.stderr.strip()})",
            hint="give a ref that exists here, e.g. origin/main (fetch it first in CI)",
        ) from None
    found: dict[Path, None] = {}
    for name in [*names, *untracked]:
        path = Path(top) / name
        if name.endswith(".dsse.json"):
            path = path.with_name(path.name.removesuffix(".dsse.json"))
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            document = None
        if isinstance(document, dict) and document.get("kind") == "Recipe":
            found[path] = None
        elif document is None and name.endswith((".yaml", ".yml")) and "recipe" in path.name:
            found[path] = None  # unreadable: let validation report it
    return sorted(found)


def is_recipe(path: Path) -> bool:
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return isinstance(document, dict) and document.get("kind") == "Recipe"


def recipes_to_check(paths: Sequence[Path], base: str | None = None) -> list[Path]:
    """What `compressgate ci` checks: the files given and the recipes under the folders given;
    with `base`, only those changed against it (every changed recipe when none is given)."""
    recipes: list[Path] = []
    for path in paths:
        if path.is_dir():
            recipes += [p for p in sorted(path.rglob("*.y*ml")) if is_recipe(p)]
        else:
            recipes.append(path)
    if base is not None:
        changed = {p.resolve() for p in changed_recipes(base)}
        recipes = [p for p in recipes if p.resolve() in changed] if paths else sorted(changed)
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
