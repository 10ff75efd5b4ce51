"""Checks on a cached run environment (a venv built from a lock by `compressgate env`)."""

from __future__ import annotations

import re
from pathlib import Path

from compressgate.registry.run import envs


def untouched(env: Path) -> tuple[bytes, list[tuple[str, int]]]:
    """The marker's bytes and every installed distribution's name and mtime."""
    site = env / "lib" / "python3.11" / "site-packages"
    installed = sorted((p.name, p.stat().st_mtime_ns) for p in site.iterdir())
    return (env / envs.MARKER).read_bytes(), installed


def repin(lock: Path, **versions: str) -> None:
    """Pin each named package of `lock` to another version, its hash lines kept (the running
    environment's check compares versions; only an install reads the hashes)."""
    text = lock.read_text()
    for name, version in versions.items():
        text, count = re.subn(rf"(?m)^{re.escape(name)}==[^\s\\]+", f"{name}=={version}", text)
        assert count == 1, f"{name} is not pinned in {lock}"
    lock.write_text(text)


def add_pin(lock: Path, requirement: str) -> None:
    """Add a pin to `lock`, with a (wrong) hash when the lock's pins carry hashes, so that the
    lock stays all hashed or all bare, as `read_lock` requires."""
    text = lock.read_text()
    hashed = " --hash=sha256:" + "0" * 64 if "--hash=" in text else ""
    lock.write_text(text.rstrip("\n") + f"\n{requirement}{hashed}\n")
