"""A folder beside a recipe never shadows an installed package (issue 22): the recipe's folder
is never on the import path (only its signed local modules are importable, after every
installed package), and a reference to a module whose name a local file shadows is refused;
nor is a deserialising entry point ever a factory or a loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compressgate.recipes import models
from compressgate.registry.kernel.errors import ManifestError
from tests.helpers.workspace import Invoke, Workspace

PAYLOAD = """\
from pathlib import Path
Path({marker!r}).write_text("the planted package ran")
raise SystemExit("planted package imported")
"""


def plant(folder: Path, name: str, marker: Path) -> None:
    package = folder / name
    package.mkdir()
    (package / "__init__.py").write_text(PAYLOAD.format(marker=str(marker)))


def test_a_package_planted_beside_a_signed_recipe_never_runs(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    """The digits example's loader imports scikit-learn; a `sklearn/` folder beside the
    unchanged, validly signed recipe is not what it imports, in any command."""
    assert (
        cli("recipe", "sign", workspace.recipe, "--key", workspace.key("ml-platform")).exit_code
        == 0
    )
    marker = tmp_path / "ran"
    plant(workspace.root, "sklearn", marker)
    exe = Path(sys.executable).parent / "compressgate"  # a fresh process: nothing imported yet
    for command in (("recipe", "validate"), ("recipe", "explain")):
        result = subprocess.run(
            [exe, *command, workspace.recipe], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert not marker.exists(), command
    # The same process imports the installed scikit-learn, through the recipe's own loader.
    probe = (
        "from pathlib import Path; from compressgate.recipes import models\n"
        "from compressgate.registry.kernel.errors import ManifestError\n"
        "try:\n    with models.allowed_modules(('sklearn',)):\n"
        f"        models.resolve('sklearn.datasets:load_digits', Path({str(workspace.root)!r}))\n"
        "except ManifestError as exc:\n    print('refused:', exc)\n"
        "import sklearn; print(sklearn.__file__)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "refused:" in found and "beside the recipe has the name of an installed" in found
    assert "site-packages" in found and not marker.exists()


def test_a_reference_to_a_module_a_local_file_shadows_is_refused(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    """A `compressgate/` folder beside the recipe, which names `compressgate.recipes.examples…`
    factories: the reference is refused (exit 2) naming the folder, and the folder never runs."""
    marker = tmp_path / "ran"
    plant(workspace.root, "compressgate", marker)
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2, result.stderr
    assert (
        f"{workspace.root / 'compressgate'} beside the manifest has the name of an installed"
        in (result.stdout + result.stderr)
    )
    assert "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "ref",
    [
        "pandas.io.pickle:read_pickle",
        "pandas:read_pickle",
        "joblib:load",
        "joblib.numpy_pickle:load",
        "torch:load",
        "numpy:load",
    ],
)
def test_a_deserialising_entry_point_is_refused_even_when_allow_listed(
    workspace: Workspace, cli: Invoke, ref: str
) -> None:
    """`trust allow pandas` is a vetted package, not a licence for `read_pickle`: validation
    refuses the reference (exit 2), and so does resolving it, by where the object is defined
    (pandas re-exports `read_pickle` as `pandas.read_pickle`)."""
    top = ref.partition(".")[0].partition(":")[0]
    assert cli("trust", "allow", "--trust", workspace.trust, top).exit_code == 0
    text = workspace.recipe.read_text()
    loader = "compressgate.recipes.examples.digits:load"
    assert loader in text
    workspace.recipe.write_text(text.replace(loader, ref))
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "deserialising entry point" in result.stderr and "Traceback" not in result.stderr
    with models.allowed_modules((top,)), pytest.raises(ManifestError, match="deserialising"):
        models.resolve(ref)
