"""compressgate's registry: the house around the four domain packages, in layered rooms.

    cli/         the command line: commands by noun, shared options, tables, progress
    mlflow_bridge  `export mlflow`: a run's stages, metrics and approved variant into MLflow
    workspace    `Workspace`, the Python API: a folder, its catalog, store and trust, resolved once
    authoring    recipes, keys and trust files (no workspace); results: what the API returns
    run/         the engine, stage cache, isolated worker, reproduce, environments
    governance/  review status, sign-offs, aliases, promotion and rollback
    catalog/     the append-only catalog, its records, audit checks and the artifact store
    kernel/      errors, digests, DSSE, keys, atomic files, plug-in registries

Each room imports only from the rooms below it (and from `reports`, `gates`, `evaluators` and
`recipes`, which sit between `catalog` and `kernel`); the import-linter contract in
pyproject.toml holds the code to this map, and docs/architecture.md draws it.

Kept import-light on purpose: `compressgate --help` must not pay for torch or pydantic, so
`Workspace` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compressgate.registry.workspace import Workspace

__all__ = ["Workspace"]


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from compressgate.registry.workspace import Workspace

        return Workspace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
