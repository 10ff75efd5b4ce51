"""A recipe's signature covers every file it depends on (issue 22): the lock, checkpoints, the
ONNX baseline and local modules are subjects of the statement; a changed, missing or unlisted
one is refused by name (exit 3); a local module is imported only from its signed bytes, and
`recipe validate` / `recipe explain` run no code the recipe names unless `--power` asks."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compressgate.recipes import models
from compressgate.recipes.load import load_recipe
from compressgate.recipes.signing import envelope_path, verify_recipe
from compressgate.recipes.trust import allow_modules, load_trust
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import IntegrityError, ManifestError
from tests.helpers.workspace import Invoke, Workspace

EXE = Path(sys.executable).parent / "compressgate"

LOADER = """\
from pathlib import Path
Path({marker!r}).write_text("imported")
from compressgate.recipes.examples.digits import load as _load


def load(seed, **kwargs):
    return _load(seed, **kwargs)
"""


def sign(ws: Workspace, cli: Invoke) -> dict[str, str]:
    result = cli("recipe", "sign", ws.recipe, "--key", ws.key("ml-platform"))
    assert result.exit_code == 0, result.stderr
    body = json.loads(envelope_path(ws.recipe).read_text())
    statement = json.loads(base64.b64decode(body["payload"]))
    return {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}


def verify(ws: Workspace, cli: Invoke) -> tuple[int, str]:
    result = cli("recipe", "verify", ws.recipe, "--trust", ws.trust)
    return result.exit_code, result.stdout + result.stderr


def with_local_loader(ws: Workspace, marker: Path, name: str = "localdata") -> Path:
    """The recipe's loader moved into a module beside it, which writes `marker` when run."""
    module = ws.root / f"{name}.py"
    module.write_text(LOADER.format(marker=str(marker)))
    text = ws.recipe.read_text()
    ws.recipe.write_text(text.replace("compressgate.recipes.examples.digits:load", f"{name}:load"))
    allow_modules(ws.trust, (name,))
    return module


def test_the_statement_lists_the_manifest_first_then_every_file_it_references(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    module = with_local_loader(workspace, tmp_path / "ran")
    subjects = sign(workspace, cli)
    assert list(subjects) == ["recipe.yaml", "requirements.lock", "localdata.py"]
    assert (
        subjects["recipe.yaml"]
        == load_recipe(workspace.recipe, trust=load_trust(workspace.trust)).sha256
    )
    assert subjects["requirements.lock"] == sha256_file(workspace.root / "requirements.lock")
    assert subjects["localdata.py"] == sha256_file(module)
    assert verify(workspace, cli)[0] == 0


@pytest.mark.parametrize("swap", ["requirements.lock", "localdata.py"])
def test_a_swapped_subject_is_refused_by_name(
    workspace: Workspace, cli: Invoke, tmp_path: Path, swap: str
) -> None:
    with_local_loader(workspace, tmp_path / "ran")
    sign(workspace, cli)
    target = workspace.root / swap
    target.write_bytes(target.read_bytes() + b"\n# swapped\n")
    code, out = verify(workspace, cli)
    assert code == 3
    assert f"{swap} changed since it was signed" in out
    assert "Traceback" not in out


def test_a_missing_subject_is_refused(workspace: Workspace, cli: Invoke, tmp_path: Path) -> None:
    """Even once this process imported the module (as an earlier run in it would have): the
    import system's memory of it is not the file."""
    module = with_local_loader(workspace, tmp_path / "ran")
    sign(workspace, cli)
    trust = load_trust(workspace.trust)
    with models.allowed_modules(trust.modules, verify_recipe(workspace.recipe, trust).sources):
        models.resolve("localdata:load", workspace.root)
    assert "localdata" in sys.modules
    module.unlink()
    code, out = verify(workspace, cli)
    assert code == 3, out
    assert "localdata.py, which its signature lists, is missing" in out
    assert "Traceback" not in out


def test_a_file_the_signature_does_not_list_is_refused(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    """An envelope over the manifest alone (as signatures were before) no longer verifies."""
    from compressgate.recipes.signing import RECIPE_PREDICATE_TYPE
    from compressgate.registry.kernel import dsse
    from compressgate.registry.kernel.keys import load_private_key

    loaded = load_recipe(workspace.recipe, trust=load_trust(workspace.trust))
    payload = dsse.statement(
        [(workspace.recipe.name, loaded.sha256)],
        RECIPE_PREDICATE_TYPE,
        {"recipe": {"name": loaded.recipe.metadata.name, "version": 1}},
    )
    key = load_private_key(workspace.key("ml-platform"))
    envelope_path(workspace.recipe).write_bytes(
        dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, [key]).to_json()
    )
    code, out = verify(workspace, cli)
    assert code == 3
    assert "requirements.lock is not among the files its signature lists" in out


def test_a_local_module_is_imported_from_exactly_its_signed_bytes(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    module = with_local_loader(workspace, marker)
    sign(workspace, cli)
    trust = load_trust(workspace.trust)
    verified = verify_recipe(workspace.recipe, trust)
    sources = verified.sources
    assert set(sources) == {"localdata"}
    assert str(workspace.root) not in sys.path
    # Changed after verification: the import refuses the bytes, nothing of them runs.
    module.write_text(LOADER.format(marker=str(tmp_path / "swapped")))
    with models.allowed_modules(trust.modules, sources), pytest.raises(IntegrityError):
        models.resolve("localdata:load", workspace.root)
    assert not (tmp_path / "swapped").exists()
    module.write_text(LOADER.format(marker=str(marker)))
    with models.allowed_modules(trust.modules, sources):
        loader = models.resolve("localdata:load", workspace.root)
    assert marker.exists() and callable(loader)
    assert sys.modules["localdata"].__file__ == str(module)


def test_nothing_else_beside_the_recipe_is_importable(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    """A signed local module that imports an unsigned sibling cannot: the recipe's folder is
    never on the import path (exit 2, naming the missing module)."""
    marker = tmp_path / "sibling-ran"
    (workspace.root / "helper.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\n"
    )
    module = with_local_loader(workspace, tmp_path / "ran", name="withsibling")
    module.write_text("import helper\n" + module.read_text())
    sign(workspace, cli)
    trust = load_trust(workspace.trust)
    sources = verify_recipe(workspace.recipe, trust).sources
    with (
        models.allowed_modules(trust.modules, sources),
        pytest.raises(ManifestError, match="No module named 'helper'"),
    ):
        models.resolve("withsibling:load", workspace.root)
    assert not marker.exists()


def test_a_module_not_among_the_verified_sources_is_refused(
    workspace: Workspace, tmp_path: Path
) -> None:
    with_local_loader(workspace, tmp_path / "ran")
    with (
        models.allowed_modules(("localdata",), {}),
        pytest.raises(ManifestError, match="not a local module the recipe's signature lists"),
    ):
        models.resolve("localdata:load", workspace.root)
    assert not (tmp_path / "ran").exists()


def test_validate_and_explain_run_no_code_of_the_recipe(
    workspace: Workspace, tmp_path: Path
) -> None:
    """The loader's module writes a marker when imported: `validate` and `explain` leave none;
    `--power`, which asks for the loader to run, does write it (so the check can fail)."""
    marker = tmp_path / "ran"
    with_local_loader(workspace, marker)
    for command in (
        ("recipe", "validate"),
        ("recipe", "explain"),
        ("recipe", "validate", "--json"),
    ):
        done = subprocess.run(
            [EXE, *command, workspace.recipe], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert not marker.exists(), command
    done = subprocess.run(
        [EXE, "recipe", "explain", "--power", workspace.recipe],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert marker.exists()
    assert "power" in done.stdout
