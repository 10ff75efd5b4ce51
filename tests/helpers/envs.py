"""Checks on a cached run environment (a venv built from a lock by `compressgate env`)."""

from __future__ import annotations

from pathlib import Path

from compressgate.registry.run import envs


def untouched(env: Path) -> tuple[bytes, list[tuple[str, int]]]:
    """The marker's bytes and every installed distribution's name and mtime."""
    site = env / "lib" / "python3.11" / "site-packages"
    installed = sorted((p.name, p.stat().st_mtime_ns) for p in site.iterdir())
    return (env / envs.MARKER).read_bytes(), installed
