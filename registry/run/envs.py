"""Pinned environments: one virtual environment per lock, built once and reused.

`ensure(lock, store)` gives the environment of a lock: `STORE/<sha256 of the lock's bytes>/`,
a virtual environment holding exactly the lock's pins and compressgate itself. It is built in a
hidden temporary folder beside it (`python -m venv`, `uv pip install -r LOCK`, with
`--require-hashes` when the lock has hashes, then compressgate from a wheel of the running code,
then the marker file `compressgate-env.json`) and renamed to its digest only when all of that
succeeded: a build killed half way leaves a `.build-*` folder no run uses, swept by the next
build of the same lock. A lock file beside each environment serialises builders.

The installer is uv where it is found (the `uv` package installed beside compressgate, else
`uv` on PATH), pip otherwise; $COMPRESSGATE_INSTALLER=pip|uv chooses (a named one that is absent
is an error). uv reads no pip configuration: the find-links pip would use ($PIP_FIND_LINKS and
pip's configuration files) are passed to it, so that a lock pinning a local wheel (torch's CPU
build) installs the same file either way. bench/envs.py times both, cold and warm.

The store is WORKSPACE/envs unless `--envs` or $COMPRESSGATE_ENVS names another one (tests and
`reproduce` share one store across workspaces). The code of compressgate inside an environment
follows the running code: when its digest differs, the next `ensure` reinstalls it (no
dependencies) and says so; the locked packages are never touched after the build.

Console scripts inside an environment keep the temporary folder's path in their first line:
compressgate runs the environment's interpreter (`bin/python -m ...`), never its scripts.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from compressgate.registry.kernel.digests import sha256_bytes, sha256_file
from compressgate.registry.kernel.errors import EnvironmentMismatch, ManifestError, NotFoundError
from compressgate.registry.kernel.files import write_atomic
from compressgate.registry.run.environment import Mismatch, Pin, check, installed, read_lock

log = logging.getLogger(__name__)

ENVS_ENV = "COMPRESSGATE_ENVS"
INSTALLER_ENV = "COMPRESSGATE_INSTALLER"
MARKER = "compressgate-env.json"
DISTRIBUTION = "compressgate"
PACKAGES = ("registry", "recipes", "gates", "evaluators", "reports")
# Installed by `python -m venv` itself, not by the lock: never a difference.
_VENV_OWN = frozenset({"pip"})
_PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")
_WHEEL = ("--no-deps", "--no-build-isolation", "-q", "-w")
_SELF = ("-q", "--no-deps", "--no-index", "--force-reinstall")
_SELF_UV = ("-q", "--no-deps", "--no-index", "--reinstall")


@dataclass(frozen=True)
class Env:
    """A built environment: where it is, which lock it holds, and what `ensure` did."""

    digest: str
    path: Path
    marker: dict[str, Any]
    built: bool = False  # built by this call
    refreshed: bool = False  # compressgate reinstalled by this call
    seconds: float = 0.0

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def describe(self) -> dict[str, Any]:
        """What a run record says of the environment it ran in."""
        return {
            "lock_sha256": self.digest,
            "path": str(self.path),
            "interpreter": str(self.python),
            "python": self.marker.get("python"),
            "compressgate_sha256": self.marker.get("compressgate_sha256"),
            "built": self.built,
            "refreshed": self.refreshed,
            "prepare_seconds": round(self.seconds, 3),
        }


def store_dir(workspace: Path, explicit: Path | None = None) -> Path:
    """`--envs`, else $COMPRESSGATE_ENVS, else WORKSPACE/envs."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get(ENVS_ENV) or workspace / "envs")


def lock_digest(lock: Path) -> str:
    try:
        return sha256_file(lock)
    except FileNotFoundError:
        raise NotFoundError(f"lock file {lock} not found") from None


def code_digest() -> str:
    """sha256 over every file of compressgate's packages as the running interpreter has them."""
    files: dict[str, str] = {}
    for root in _package_roots():
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[f"{root.name}/{path.relative_to(root)}"] = sha256_file(path)
    return sha256_bytes(json.dumps(files, sort_keys=True).encode())


def _package_roots() -> list[Path]:
    import importlib

    return [
        Path(str(importlib.import_module(f"compressgate.{name}").__file__)).parent
        for name in PACKAGES
    ]


def find(lock: Path, store: Path) -> Env | None:
    """The complete environment of `lock` in `store`, or None (nothing is built)."""
    digest = lock_digest(lock)
    return _complete(store / digest, digest)


def _complete(path: Path, digest: str) -> Env | None:
    try:
        marker = json.loads((path / MARKER).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("lock_sha256") != digest:
        return None
    return Env(digest, path, marker)


@dataclass(frozen=True)
class Installer:
    """What installs packages into an environment: uv (`command` is its binary) or the running
    interpreter's pip."""

    name: str  # "uv" or "pip"
    command: tuple[str, ...]
    version: str

    def install(self, python: Path, *args: str) -> list[str]:
        """The command line that installs `args` into the environment of `python`."""
        if self.name == "uv":
            return [
                *self.command,
                "pip",
                "install",
                "--python",
                str(python),
                "--no-progress",
                "--compile-bytecode",  # as pip does: no compiling at every run's imports
                *_find_links(),
                *args,
            ]
        return [*self.command, "--python", str(python), "install", "--progress-bar", "off", *args]

    def describe(self) -> str:
        return f"{self.name} {self.version}"

    def failure(self, output: str) -> tuple[str | None, str]:
        """The package the installer's output names, and its reason."""
        return uv_failure(output) if self.name == "uv" else pip_failure(output)


def installer() -> Installer:
    """uv where it is found, else pip; $COMPRESSGATE_INSTALLER (`uv`, `pip` or `auto`) chooses."""
    wanted = os.environ.get(INSTALLER_ENV, "auto").strip().lower() or "auto"
    if wanted not in {"auto", "uv", "pip"}:
        raise ManifestError(
            f"${INSTALLER_ENV}={wanted!r} is not an installer",
            hint=f"set ${INSTALLER_ENV} to uv, pip or auto (uv where it is found, else pip)",
        )
    uv = _uv_binary() if wanted != "pip" else None
    if uv is not None:
        return Installer("uv", (uv,), _uv_version(uv))
    if wanted == "uv":
        raise EnvironmentMismatch(
            f"${INSTALLER_ENV}=uv but uv is not installed beside compressgate nor on PATH",
            hint="install it (`pip install uv`) or unset the variable to fall back to pip",
        )
    return Installer("pip", (sys.executable, *_PIP), _pip_version())


def _uv_binary() -> str | None:
    try:
        import uv  # the PyPI package ships the binary

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _uv_version(uv: str) -> str:
    done = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False)
    words = done.stdout.split()
    return words[1] if done.returncode == 0 and len(words) > 1 else "unknown"


def _find_links() -> list[str]:
    """`--find-links` options for uv: pip's own, from $PIP_FIND_LINKS and pip's configuration
    (uv reads $UV_FIND_LINKS itself)."""
    places = os.environ.get("PIP_FIND_LINKS", "").split()
    done = subprocess.run(
        [sys.executable, *_PIP, "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        env=child_environ(),
    )
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            places += value.strip().strip("'\"").split()
    return [arg for place in dict.fromkeys(places) for arg in ("--find-links", place)]


def ensure(lock: Path, store: Path, *, say: Any = None) -> Env:
    """The environment of `lock`, built if missing; compressgate refreshed if its code changed.

    `say(text)` hears what is being done (a build takes a minute or more). Raises
    EnvironmentMismatch (exit 5) when pip cannot install the lock, naming the package and
    pip's reason, ManifestError (exit 2) for a lock that is not exact pins.
    """
    started = time.perf_counter()
    pins = read_lock(lock)
    digest = lock_digest(lock)
    store.mkdir(parents=True, exist_ok=True)
    code = code_digest()
    with _exclusive(store / f".{digest}.lock"):
        found = _complete(store / digest, digest)
        if found is not None:
            log.info("environment %s: reused (%s)", digest[:12], found.path)
            if found.marker.get("compressgate_sha256") == code:
                return Env(digest, found.path, found.marker, seconds=time.perf_counter() - started)
            if say:
                say(f"environment {digest[:12]}: compressgate changed, reinstalling it")
            marker = _install_self(found.python, code, dict(found.marker))
            write_atomic(found.path / MARKER, _json(marker))
            return Env(
                digest, found.path, marker, refreshed=True, seconds=time.perf_counter() - started
            )
        if (store / digest).exists():
            # Only a rename of a finished build makes this name, and the marker is written
            # before it: a folder without one is not ours to use or remove.
            raise EnvironmentMismatch(
                f"{store / digest} exists but is not a complete environment (no {MARKER})",
                hint=f"remove {store / digest} and run again",
            )
        for leftover in store.glob(f".build-{digest[:16]}-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # a builder killed half way
        if say:
            say(f"building environment {digest[:12]} from {lock} ({len(pins)} pins)")
        partial = Path(tempfile.mkdtemp(prefix=f".build-{digest[:16]}-", dir=store))
        try:
            marker = _build(partial, lock, pins, digest, code)
            write_atomic(partial / MARKER, _json(marker))  # last: it makes the folder complete
            partial.rename(store / digest)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return Env(digest, store / digest, marker, built=True, seconds=time.perf_counter() - started)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    target: Path, lock: Path, pins: tuple[Pin, ...], digest: str, code: str
) -> dict[str, Any]:
    # No pip or setuptools of venv's own: the environment holds the lock and compressgate,
    # nothing else. The running pip installs into it (`pip --python`).
    _run(
        [sys.executable, "-m", "venv", "--without-pip", str(target)],
        what="python -m venv",
        lock=lock,
    )
    python = target / "bin" / "python"
    hashed = ["--require-hashes"] if pins and all(p.hashes for p in pins) else []
    tool = installer()
    _run(
        tool.install(python, *hashed, "-r", str(lock)),
        what=f"{tool.name} install",
        lock=lock,
        failure=tool.failure,
    )
    marker = {
        "lock_sha256": digest,
        "lock": str(lock.resolve()),
        "pins": len(pins),
        "require_hashes": bool(hashed),
        "python": _python_version(python),
        "pip": _pip_version(),
        "installer": tool.describe(),
        "created_at": _now(),
    }
    return _install_self(python, code, marker) | {"lock_sha256": digest}


def _install_self(python: Path, code: str, marker: dict[str, Any]) -> dict[str, Any]:
    """Install a wheel of the running compressgate into the environment (no dependencies:
    the lock provides them)."""
    with tempfile.TemporaryDirectory(prefix="compressgate-wheel-") as scratch:
        source = Path(scratch) / "src"
        for root in _package_roots():
            shutil.copytree(
                root,
                source / "compressgate" / root.name,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        (source / "pyproject.toml").write_text(_pyproject(), encoding="utf-8")
        wheels = Path(scratch) / "dist"
        _run(
            [sys.executable, *_PIP, "wheel", *_WHEEL, str(wheels), str(source)],
            what="building a wheel of compressgate",
            lock=None,
        )
        (wheel,) = wheels.glob("*.whl")
        tool = installer()
        _run(
            tool.install(python, *(_SELF_UV if tool.name == "uv" else _SELF), str(wheel)),
            what="installing compressgate into the environment",
            lock=None,
            failure=tool.failure,
        )
        return marker | {
            "compressgate_version": _own_version(),
            "compressgate_sha256": code,
            "compressgate_wheel_sha256": sha256_file(wheel),
            "installed_at": _now(),
        }


def _pyproject() -> str:
    return (
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{DISTRIBUTION}"\nversion = "{_own_version()}"\n'
        'requires-python = ">=3.11"\n\n'
        '[project.scripts]\ncompressgate = "compressgate.registry.cli:main"\n\n'
        '[tool.setuptools.packages.find]\ninclude = ["compressgate*"]\nnamespaces = true\n\n'
        '[tool.setuptools.package-data]\n"*" = ["py.typed", "*.yaml", "*.json", "*.lock", "*.j2"]\n'
        '"compressgate.reports" = ["templates/*"]\n'
    )


def _own_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _pip_version() -> str:
    try:
        return importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _python_version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-I", "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def child_environ() -> dict[str, str]:
    """The parent's environment variables without those that would let its packages leak in."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(
    command: list[str],
    *,
    what: str,
    lock: Path | None,
    failure: Callable[[str], tuple[str | None, str]] | None = None,
) -> None:
    log.info("%s: %s", what, " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=child_environ())
    if done.returncode == 0:
        return
    package, reason = (failure or pip_failure)(done.stdout + "\n" + done.stderr)
    source = f" from {lock}" if lock is not None else ""
    culprit = f" on {package}" if package else ""
    raise EnvironmentMismatch(
        f"could not build the environment{source}: {what} failed{culprit}: {reason}",
        hint=f"fix or remove the pin in {lock}, or regenerate it with `compressgate env export`"
        if lock is not None
        else "check that setuptools is installed where compressgate runs",
    )


_REQUIREMENT = re.compile(
    r"(?:requirement|for|of|building wheel for|build wheel for)\s+"
    r"([A-Za-z0-9][A-Za-z0-9._\-]*(?:\[[^\]]*\])?(?:[=<>!~]=?[^\s);,]+)?)",
    re.IGNORECASE,
)


def pip_failure(output: str) -> tuple[str | None, str]:
    """The package pip names and its own reason, from pip's output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    if any("DO NOT MATCH THE HASHES" in line for line in errors):
        index = next(i for i, line in enumerate(lines) if "DO NOT MATCH THE HASHES" in line)
        culprit = next((line for line in lines[index + 1 :] if " from " in line), "")
        package = culprit.split(" from ", 1)[0].strip() or None
        got = next((line.split() for line in lines[index:] if line.startswith("Got")), [])
        reported = f" (got {got[-1]})" if len(got) > 1 else ""
        return package, f"its hash does not match the lock's{reported}"
    reason = errors[0] if errors else (lines[-1] if lines else "no output")
    for line in errors or lines[-3:]:
        found = _REQUIREMENT.search(line)
        if found:
            return found[1].rstrip("."), reason
    return None, reason


_QUOTED = re.compile(r"`([A-Za-z0-9][A-Za-z0-9._\-]*(?:\[[^\]]*\])?==[^`\s]+)`")
_REQUIRED = re.compile(r"you require ([A-Za-z0-9][A-Za-z0-9._\-]*==[^\s,]+)")


def uv_failure(output: str) -> tuple[str | None, str]:
    """The package uv names and its own reason, from uv's output: its `error:` and `cause:`
    paragraphs, which it wraps to the terminal's width."""
    text = " ".join(output.split())
    said = [part.strip() for part in re.split(r"(?:^| )(?:error|cause|Caused by): ", text)[1:]]
    if any(part.startswith("Hash mismatch") for part in said):
        found = _QUOTED.search(text)
        computed = re.search(r"Computed: (?:sha256:)?([0-9a-f]+)", text)
        return (found[1] if found else None), "its hash does not match the lock's" + (
            f" (got {computed[1]})" if computed else ""
        )
    reason = said[-1] if said else (text[-300:] or "no output")
    found = _REQUIRED.search(text) or _QUOTED.search(text)
    return (found[1].rstrip(".,") if found else None), reason


def installed_in(python: Path) -> dict[str, tuple[str, str]]:
    """Every distribution installed in the environment of `python`: canonical name → (name,
    version), read by that interpreter."""
    done = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib.metadata as m, json; print(json.dumps(sorted("
            "[d.metadata['Name'], d.version] for d in m.distributions() if d.metadata['Name'])))",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=child_environ(),
    )
    if done.returncode != 0:
        raise EnvironmentMismatch(
            f"the interpreter {python} does not run: {done.stderr.strip()[-300:]}",
            hint="remove the environment's folder; the next run rebuilds it",
        )
    found: dict[str, tuple[str, str]] = {}
    for name, version in json.loads(done.stdout):
        found.setdefault(canonicalize_name(name), (name, version))
    return found


@dataclass(frozen=True)
class Difference:
    """A package the environment and its lock disagree on."""

    package: str
    wanted: str | None  # None: installed, not in the lock
    found: str | None  # None: locked, not installed

    def __str__(self) -> str:
        if self.wanted is None:
            return f"{self.package}: installed {self.found}, not in the lock"
        return str(Mismatch(self.package, self.wanted, self.found))


def differences(pins: tuple[Pin, ...], present: dict[str, tuple[str, str]]) -> list[Difference]:
    """Every locked package missing or at another version, and every extra one."""
    out = [Difference(m.package, m.wanted, m.found) for m in check(pins, present)]
    locked = {canonicalize_name(p.name) for p in pins}
    for key, (name, version) in present.items():
        if key not in locked and key not in _VENV_OWN and key != DISTRIBUTION:
            out.append(Difference(name, None, version))
    return out


def is_built(path: Path) -> bool:
    """Whether `path` is a complete environment (its marker written, its build finished)."""
    return (path / MARKER).is_file()


def verify(lock: Path, store: Path) -> tuple[Env, list[Difference]]:
    """The environment of `lock` against the lock, package by package."""
    pins = read_lock(lock)
    env = find(lock, store)
    if env is None:
        raise NotFoundError(
            f"no environment of {lock} in {store} (lock sha256 {lock_digest(lock)[:12]})",
            hint=f"build it with `compressgate env create {lock}`",
        )
    return env, differences(pins, installed_in(env.python))


def listing(store: Path) -> tuple[list[Env], list[Path]]:
    """The complete environments in `store`, and the leftovers of builds that never finished."""
    if not store.is_dir():
        return [], []
    envs, partial = [], []
    for path in sorted(store.iterdir()):
        if path.name.startswith(".build-") and path.is_dir():
            partial.append(path)
        elif path.is_dir() and not path.name.startswith("."):
            env = _complete(path, path.name)
            if env is not None:
                envs.append(env)
    return envs, partial


def export_pins(requires: str | None = None) -> list[tuple[str, str, str]]:
    """The running environment as exact pins: (name, pinned version, installed version).

    With `requires`, only that distribution's requirements, transitively (markers evaluated
    here, extras left out): the smallest lock that runs it. compressgate itself is never
    pinned (every environment installs the running code) nor is pip.
    """
    present = installed()
    if requires is None:
        chosen: set[str] = set(present)
    else:
        chosen = set()
        todo = [canonicalize_name(requires)]
        if todo[0] not in present:
            raise NotFoundError(f"{requires} is not installed here", hint="name an installed one")
        while todo:
            key = todo.pop()
            if key in chosen or key not in present:
                continue
            chosen.add(key)
            for text in importlib.metadata.distribution(present[key][0]).requires or []:
                requirement = Requirement(text)
                if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                    todo.append(canonicalize_name(requirement.name))
    out = []
    for wanted in sorted(chosen - {canonicalize_name(DISTRIBUTION)} - _VENV_OWN):
        name, version = present[wanted]
        out.append((name, Version(version).public, version))
    return out


def render_lock(pins: list[tuple[str, str, str]], *, requires: str | None) -> str:
    scope = f"{requires} and its requirements" if requires else "every installed package"
    lines = [
        f"# Exported by `compressgate env export` on {_now()}: {scope}, exact pins.",
        f"# Python {sys.version.split()[0]} on {sys.platform}. Local version labels (+cpu)",
        "# are noted, not pinned: `==2.13.0` takes 2.13.0+cpu where that is what pip finds.",
    ]
    for name, pinned, actual in pins:
        note = f"  # installed: {actual}" if actual != pinned else ""
        lines.append(f"{name}=={pinned}{note}")
    return "\n".join(lines) + "\n"


def write_lock(path: Path, text: str, *, force: bool) -> None:
    if path.exists() and not force:
        raise ManifestError(f"{path} exists", hint="choose another path, or pass --force")
    write_atomic(path, text.encode("utf-8"))


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
