"""The pinned environment: check the running one against a recipe's lock, and fingerprint it.

A lock is a pip requirements file of exact pins (`name==version`, comments allowed). A package
matches when the installed version equals the pin; a local label the pin does not mention
(`2.13.0+cpu` for `torch==2.13.0`) matches, as PEP 440 says. Packages installed but not
locked are recorded in the fingerprint, not judged.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import (
    EnvironmentMismatch,
    Issue,
    ManifestError,
    NotFoundError,
)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mismatch:
    """A locked package that is missing (`found` None) or at another version."""

    package: str
    wanted: str
    found: str | None

    def __str__(self) -> str:
        return f"{self.package}: wanted {self.wanted}, found {self.found or 'not installed'}"


_HASH = re.compile(r"--hash[= ](sha256|sha384|sha512):([0-9a-fA-F]+)$")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) with comments removed and `\\` continuations joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            yield start, joined
    if pending and (joined := " ".join(p.strip() for p in pending).strip()):
        yield start, joined


def read_lock(path: Path) -> tuple[Pin, ...]:
    """Parse a lock file of exact pins, each optionally with `--hash=sha256:...` options (as
    `pip-compile --generate-hashes` writes them); anything else is an error naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"lock file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"lock file {path} cannot be read: {exc}") from None
    pins: list[Pin] = []
    issues: list[Issue] = []
    for number, line in _logical_lines(text):
        requirement_text, *options = line.split(" --")
        hashes: list[str] = []
        for option in options:
            found = _HASH.match("--" + option.strip())
            if found is None:
                issues.append(
                    Issue(str(path), number, "", f"'--{option.strip()}' is not a --hash option")
                )
            else:
                hashes.append(f"{found[1]}:{found[2].lower()}")
        try:
            requirement = Requirement(requirement_text.strip())
        except InvalidRequirement as exc:
            issues.append(Issue(str(path), number, "", f"not a requirement: {exc}"))
            continue
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            issues.append(
                Issue(
                    str(path),
                    number,
                    "",
                    f"'{requirement_text.strip()}' is not an exact pin; write name==version",
                )
            )
            continue
        pins.append(Pin(requirement.name, specs[0].version, tuple(hashes)))
    if issues:
        raise ManifestError(issues=tuple(issues), hint="regenerate the lock with `make lock`")
    hashed = [p for p in pins if p.hashes]
    if hashed and len(hashed) != len(pins):
        bare = ", ".join(p.name for p in pins if not p.hashes)
        raise ManifestError(
            f"lock file {path}: some pins have --hash options and some do not ({bare})",
            hint="pip installs a hashed lock with --require-hashes: give every pin its hashes",
        )
    return tuple(pins)


def installed() -> dict[str, tuple[str, str]]:
    """Every installed distribution: canonical name → (name, version)."""
    found: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), (name, dist.version))
    return dict(sorted(found.items()))


def matches(wanted: str, found: str) -> bool:
    """Whether installed version `found` satisfies the pin `==wanted` (PEP 440 local labels)."""
    try:
        want, have = Version(wanted), Version(found)
    except InvalidVersion:
        return wanted == found
    if want.local is None:
        return want == Version(have.public)
    return want == have


def check(
    pins: tuple[Pin, ...], present: dict[str, tuple[str, str]] | None = None
) -> tuple[Mismatch, ...]:
    """Every pin the running environment (or the distributions `present`, as `installed()`
    gives them) does not satisfy."""
    present = installed() if present is None else present
    mismatches = []
    for pin in pins:
        entry = present.get(canonicalize_name(pin.name))
        if entry is None or not matches(pin.version, entry[1]):
            mismatches.append(Mismatch(pin.name, pin.version, entry[1] if entry else None))
    return tuple(mismatches)


def enforce(lock: Path, *, strict: bool) -> tuple[Mismatch, ...]:
    """Check against the lock; strict: raise EnvironmentMismatch (exit 5) listing every one."""
    mismatches = check(read_lock(lock))
    if mismatches and strict:
        listing = "\n".join(f"  {m}" for m in mismatches)
        raise EnvironmentMismatch(
            f"the environment does not match {lock} ({len(mismatches)} package(s)):\n{listing}",
            hint=f"install the lock (pip install -r {lock}), or set environment.strict: false "
            "to record the difference and run anyway",
        )
    return mismatches


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(lock: Path, *, threads: dict[str, int], seeds: tuple[int, ...]) -> dict[str, Any]:
    """What the run ran on: interpreter, machine, threads, packages, lock, determinism flags."""
    import torch

    packages = dict(installed().values())
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "lock": {"path": lock.name, "sha256": sha256_bytes(lock.read_bytes())},
        "packages": packages,
        "torch": {
            "version": torch.__version__,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        },
        "seeds": list(seeds),
        "env": {k: v for k, v in sorted(os.environ.items()) if re.match(r"(OMP|MKL)_", k)},
    }
