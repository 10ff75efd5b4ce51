"""Unsafe content (issue 8): code a recipe may name, pickles posing as weights, files outside
the recipe's folder, secrets in output. The scenarios are `tests/helpers/harden/unsafe.py`'s,
which `bench/hardening.py` reports as figures (no secret printed or written: there only, as it
runs a whole session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.harden import unsafe
from tests.helpers.harden.common import Bench, make_bench


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


def failures(checks: list[unsafe.Check]) -> list[str]:
    return [f"{c.name}: {c.detail}" for c in checks if not c.held]


def test_a_signed_recipe_cannot_name_code_outside_the_allow_list(bench: Bench) -> None:
    checks = list(unsafe.forbidden_code(bench))
    # every forbidden reference, in the factory and the loader, through validate, run, submit
    assert len(checks) == len(unsafe.FORBIDDEN) * len(unsafe.FIELDS) * 3
    assert failures(checks) == []
    assert not (bench.root / "MARKER").exists()


def test_an_allow_listed_module_is_imported(bench: Bench) -> None:
    """The control for the test above: the marker does appear once the module is allowed."""
    check = unsafe.allow_listing_works(bench)
    assert check.held, check.detail
    trust = (bench.root / "trust-allowing-evil.yaml").read_text()
    assert "modules:\n- compressgate.recipes.examples\n- evil\n" in trust


def test_the_standard_library_cannot_be_allow_listed(bench: Bench) -> None:
    checks = list(unsafe.stdlib_cannot_be_allowed(bench))
    assert len(checks) == 10
    assert failures(checks) == []


def test_pickle_checkpoints_are_refused_without_running_them(bench: Bench) -> None:
    checks = list(unsafe.malicious_checkpoints(bench))
    assert checks[0].name == "the malicious checkpoint runs code under plain pickle"
    assert failures(checks) == []


def test_file_references_cannot_leave_the_recipe_folder(bench: Bench) -> None:
    checks = list(unsafe.escaping_files(bench))
    assert len(checks) == 8
    assert failures(checks) == []


PACKAGES = ("registry", "recipes", "evaluators", "gates", "reports")
REPO = Path(__file__).resolve().parents[2]


def unsafe_calls(source: str) -> list[str]:
    """Calls that could run code from data: `torch.load` without `weights_only=True`, pickle,
    marshal, shelve, `yaml.load`/`unsafe_load`, `np.load(allow_pickle=True)`, eval and exec."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if (
            (name == "torch.load" and keywords.get("weights_only") != "True")
            or (
                name.split(".")[0] in {"pickle", "marshal", "shelve", "dill", "joblib"}
                and name not in _RAISED  # building an exception loads nothing
            )
            or name in {"yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec"}
            or (name in {"np.load", "numpy.load"} and keywords.get("allow_pickle") == "True")
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


# Exception classes: raising one loads nothing. (recipes/examples/arrests.py unpickles through
# a `pickle.Unpickler` whose `find_class` allows ten numpy and pandas names; tests/recipes/
# test_arrests.py shows it refusing `os.system`.)
_RAISED = {"pickle.UnpicklingError", "pickle.PicklingError"}


def test_the_scanner_finds_unsafe_loads() -> None:
    """The control for the test below: each form it looks for is found."""
    source = (
        "torch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\n"
        "yaml.load(t)\nnp.load(p, allow_pickle=True)\neval(s)\n"
        "torch.load(p, weights_only=True)\nnp.load(p)\nyaml.safe_load(t)\n"
        "pickle.UnpicklingError('refused')\n"
    )
    assert [f.split(":")[0] for f in unsafe_calls(source)] == [f"line {i}" for i in range(1, 7)]


def test_no_package_loads_data_in_a_way_that_can_run_code() -> None:
    files = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    assert len(files) > 50
    found = {
        str(p.relative_to(REPO)): calls
        for p in files
        if (calls := unsafe_calls(p.read_text(encoding="utf-8")))
    }
    assert found == {}
