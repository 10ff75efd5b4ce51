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

`resolve_uri("compressgate://RECIPE@ALIAS")` is the one call serving code needs: the verified
file a URI names, in the workspace every command would use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compressgate.registry.results import ResolveResult
    from compressgate.registry.workspace import Workspace

__all__ = ["Workspace", "resolve_uri"]


def resolve_uri(
    uri: str,
    *,
    workspace: Path | str | None = None,
    catalog: str | None = None,
    trust: Path | str | None = None,
) -> ResolveResult:
    """What `compressgate://RECIPE@ALIAS` (or `compressgate://RECIPE/VARIANT`) names now,
    verified as `compressgate alias resolve URI` verifies it; its `.path` is the file, its bytes
    hashed just now. The workspace and catalog are found as a command finds them: `workspace`,
    else $COMPRESSGATE_WORKSPACE, else ./.compressgate; `catalog`, else $COMPRESSGATE_CATALOG,
    else the workspace's. Raises the errors the command exits with (`ManifestError` for a bad
    URI, `IntegrityError`, `NotFoundError`)."""
    from compressgate.registry.workspace import Workspace

    root = None if workspace is None else Path(workspace)
    with Workspace(root, catalog=catalog, trust=None if trust is None else Path(trust)) as ws:
        return ws.resolve_uri(uri)


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from compressgate.registry.workspace import Workspace

        return Workspace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
