"""The workspace: compressgate's Python API.

A `Workspace` is one folder (`--workspace`, else $COMPRESSGATE_WORKSPACE, else ./.compressgate)
with its catalog (`--catalog URL`, else $COMPRESSGATE_CATALOG, else WORKSPACE/catalog.db), its
artifact store and the trust it judges with. It is built once per command, resolves each of
those once, and passes verified objects down — a `PreparedRecipe` (read, parsed and verified
once, with its data loaded once per seed and each gate's power computed once), an open
`Catalog` — never a path for a lower layer to read again.

    from compressgate.registry import Workspace

    with Workspace(Path(".compressgate")) as ws:
        result = ws.submit(Path("recipes/resnet.yaml"))
        print(result.review.status)

Every verb returns a typed result (`compressgate.registry.results`, or the catalog's and gates'
own records); errors are `compressgate.registry.kernel.errors` exceptions carrying exit codes.
The trust is found by one rule (`trust_file`): the catalog's signed policy in force, when it has
one (a `--trust` file must then be that policy, byte for byte); else `--trust`, else
$COMPRESSGATE_TRUST, else `trust.yaml` beside the recipe (for a recorded run, beside the recipe
the run recorded), and under `ci --base` as the base ref has it.

The package: `base` holds what a workspace holds and resolves once (folder, catalog, store,
the trust it judges with: the catalog's policy, or under the unsigned regime a trust file; the
runner's key; recipes prepared against them); `verbs` adds one method per command.
"""

from compressgate.registry.workspace.base import (
    DEFAULT_WORKSPACE,
    WORKSPACE_ENV,
    WorkspaceBase,
    is_run_id,
    workspace_dir,
)
from compressgate.registry.workspace.verbs import Workspace

__all__ = [
    "DEFAULT_WORKSPACE",
    "WORKSPACE_ENV",
    "Workspace",
    "WorkspaceBase",
    "is_run_id",
    "workspace_dir",
]
