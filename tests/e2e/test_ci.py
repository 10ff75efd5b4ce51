"""`compressgate ci` on a git repository of recipes: changed recipes found against a base ref,
runs reused by recipe digest and environment, JUnit XML read back by junitparser, a Markdown
summary (also appended to $GITHUB_STEP_SUMMARY), GitHub Actions annotations, and
docs/architecture.md's exit codes. Also the shipped pre-commit hooks; the GitHub Actions example
runs in tests/test_workflow.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from junitparser import Error, Failure, JUnitXml

from compressgate.gates.ci import CiResult
from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import load_trust
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.cli.ci import github_annotations
from compressgate.registry.kernel.keys import load_private_key
from tests.helpers.recipes import write_recipe
from tests.helpers.workspace import Invoke, Workspace

ROOT = Path(__file__).resolve().parents[2]
GATES = """\
gates:
  - {name: prune-accuracy, owner: ml-lead, after: prune, metric: accuracy, rule: non_inferior,
     margin: 0.1}
  - {name: final-accuracy, owner: ml-lead, metric: accuracy, rule: non_inferior, margin: 0.1,
     approval: required}
  - {name: floor, owner: serving, metric: accuracy, rule: bound, min: MINIMUM}
"""


def gated(ws: Workspace, minimum: str = "0.5") -> Path:
    write_recipe(ws)
    with ws.recipe.open("a", encoding="utf-8") as handle:
        handle.write(GATES.replace("MINIMUM", minimum))
    sign_recipe(ws.recipe, load_private_key(ws.key("ml-platform")))
    return ws.recipe


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace as a git repository with one commit; the tests run inside it."""
    (workspace.root / ".gitignore").write_text(".cg/\n")
    git(workspace.root, "init", "-q")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "base")
    monkeypatch.chdir(workspace.root)
    return workspace.root


def ci(cli: Invoke, ws: Workspace, *args: str | Path) -> tuple[int, JUnitXml | None, str]:
    junit = ws.root.parent / "junit.xml"
    summary = ws.root.parent / "summary.md"
    junit.unlink(missing_ok=True)
    result = cli(
        "ci", *args, "--workspace", ws.root / ".cg", "--junit", junit, "--summary", summary
    )
    xml = JUnitXml.fromfile(str(junit)) if junit.exists() else None
    return result.exit_code, xml, summary.read_text() if summary.exists() else ""


def test_ci_checks_the_changed_recipe_writes_junit_and_reuses_the_run(
    repo: Path, workspace: Workspace, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = repo.parent / "step-summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    code, xml, summary = ci(cli, workspace, "--base", "HEAD")
    assert code == 0
    assert "no recipe" in summary or "0 recipes" in summary  # nothing changed yet

    gated(workspace)  # the recipe changes: gates added, signed again
    code, xml, summary = ci(cli, workspace, "--base", "HEAD")
    assert code == 0  # every gate passed; one awaits its owner's approval
    assert xml is not None
    suites = list(xml)
    assert len(suites) == 1
    cases = {case.name: case for case in suites[0]}
    assert set(cases) == {"prune-accuracy", "final-accuracy", "floor"}
    assert all(not case.result for case in cases.values())  # no failure, no error
    assert "awaits the signed approval of ml-lead" in (cases["final-accuracy"].system_out or "")
    assert "**awaiting approval**" in summary
    assert "| final-accuracy | ml-lead |" in summary
    assert step.read_text().startswith("earlier step\n")
    assert summary in step.read_text()  # appended, not overwritten

    # The same recipe in the same environment: the recorded run is reused, not re-run.
    code, again, summary = ci(cli, workspace, "--base", "HEAD")
    assert code == 0
    assert "reused" in summary
    assert again is not None
    properties = {p.name: p.value for p in next(iter(again)).properties()}  # type: ignore[no-untyped-call]
    assert properties["cached"] == "true"
    assert properties["run_id"] == {p.name: p.value for p in suites[0].properties()}["run_id"]  # type: ignore[no-untyped-call]


LOADER = """\
from compressgate.recipes.examples.digits import load as _digits


def load(seed, **settings):
    return _digits(seed, test_fraction=FRACTION, **settings)
"""


def test_ci_reuses_a_run_only_while_its_loader_code_data_and_lock_are_the_same(
    repo: Path, workspace: Workspace, cli: Invoke
) -> None:
    """The recipe's digest and the environment fingerprint are not enough: a data loader whose
    code changed (its test split 450 -> 108 samples) is run again, and a lock that no longer
    matches this environment is refused as a run refuses it (exit 5), not reported as cached."""
    local = workspace.root / "localdata.py"
    local.write_text(LOADER.replace("FRACTION", "0.25"))
    assert cli("trust", "allow", "--trust", workspace.trust, "localdata").exit_code == 0
    recipe = gated(workspace)
    text = recipe.read_text()
    assert "compressgate.recipes.examples.digits:load" in text
    recipe.write_text(text.replace("compressgate.recipes.examples.digits:load", "localdata:load"))
    sign_recipe(recipe, load_private_key(workspace.key("ml-platform")), load_trust(workspace.trust))

    def checked() -> tuple[int, dict[str, str], str]:
        code, xml, summary = ci(cli, workspace, recipe)
        assert xml is not None
        suite = next(iter(xml))
        return code, {p.name: p.value for p in suite.properties()}, summary  # type: ignore[no-untyped-call]

    code, first, _ = checked()
    assert (code, first["cached"]) == (0, "false")
    code, again, _ = checked()
    assert (code, again["cached"], again["run_id"]) == (0, "true", first["run_id"])

    local.write_text(LOADER.replace("FRACTION", "0.06"))  # the same recipe bytes, new data
    code, xml, _ = ci(cli, workspace, recipe)  # the loader is a signed subject: refused
    assert code == 3 and xml is not None
    assert "localdata.py changed since it was signed" in str(next(iter(next(iter(xml)))).result)
    sign_recipe(recipe, load_private_key(workspace.key("ml-platform")), load_trust(workspace.trust))
    code, changed, _ = checked()
    assert code in (0, 1) and changed["cached"] == "false"  # judged on 108 samples: it may fail
    assert changed["run_id"] != first["run_id"]
    with Catalog(f"sqlite:///{workspace.root / '.cg' / 'catalog.db'}", create=False) as catalog:
        sizes = [catalog.run(r).stages[0].metrics["accuracy"].n for r in (first["run_id"],
                 changed["run_id"])]  # fmt: skip
    assert sizes[0] == 450 and sizes[1] < 450

    lock = workspace.root / "requirements.lock"
    pinned = lock.read_text()
    assert "\nonnxruntime==" in pinned
    # The version only: a hashed lock keeps its `\` continuation and hash lines.
    lock.write_text(re.sub(r"\nonnxruntime==[^\s\\]+", "\nonnxruntime==9.9.9", pinned))
    sign_recipe(recipe, load_private_key(workspace.key("ml-platform")), load_trust(workspace.trust))
    code, xml, _ = ci(cli, workspace, recipe)
    assert code == 5
    assert xml is not None
    (case,) = next(iter(xml))
    (error,) = case.result
    assert isinstance(error, Error) and "onnxruntime" in (error.message or "")


def test_a_failing_gate_is_a_junit_failure_with_its_evidence_and_exit_1(
    repo: Path, workspace: Workspace, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On GitHub Actions also an `::error` annotation at the failing gate's line of the
    recipe (the path from the repository's top), and the run's id as a step output."""
    output = repo.parent / "github-output"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    gated(workspace, minimum="0.99")  # no quick model reaches 99% on digits
    junit, summary_file = repo.parent / "junit.xml", repo.parent / "summary.md"
    result = cli(
        "ci", workspace.recipe, "--workspace", repo / ".cg", "--junit", junit,
        "--summary", summary_file,
    )  # fmt: skip
    assert result.exit_code == 1
    xml, summary = JUnitXml.fromfile(str(junit)), summary_file.read_text()
    (suite,) = list(xml)
    run_id = {p.name: p.value for p in suite.properties()}["run_id"]  # type: ignore[no-untyped-call]
    assert output.read_text() == f"run-ids={run_id}\n"
    floor = (
        workspace.recipe.read_text()
        .splitlines()
        .index("  - {name: floor, owner: serving, metric: accuracy, rule: bound, min: 0.99}")
    )
    (annotation,) = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert annotation.startswith(f"::error file=recipe.yaml,line={floor + 1}::gate 'floor' failed")
    assert "threshold 0.99, n 450" in annotation
    failed = {case.name: case.result for case in suite if case.result}
    assert list(failed) == ["floor"]
    (failure,) = failed["floor"]
    assert isinstance(failure, Failure)
    message = failure.message or ""
    estimate = float(re.search(r"estimate ([0-9.]+)", message).group(1))  # type: ignore[union-attr]
    low, high = (
        float(x)
        for x in re.search(r"\[([0-9.]+), ([0-9.]+)\]", message).groups()  # type: ignore[union-attr]
    )
    assert low < estimate < high < 0.99
    assert "threshold 0.99" in message
    assert "n 450" in message
    assert "**rejected**" in summary


def test_a_tampered_signature_is_exit_3_and_a_junit_error(
    repo: Path, workspace: Workspace, cli: Invoke
) -> None:
    gated(workspace)
    text = workspace.recipe.read_text().replace("margin: 0.1,", "margin: 0.5,", 1)
    workspace.recipe.write_text(text)  # edited after signing
    code, xml, summary = ci(cli, workspace, "--base", "HEAD")
    assert code == 3
    assert xml is not None
    (suite,) = list(xml)
    (case,) = list(suite)
    assert case.name == "recipe"
    (error,) = case.result
    assert isinstance(error, Error)
    assert "signature" in (error.message or "")
    assert "integrity" in summary
    assert not (workspace.root / ".cg" / "catalog.db").exists() or "run-" not in summary


def test_a_change_to_a_signed_subject_or_the_trust_file_is_a_change_to_the_recipe(
    repo: Path, workspace: Workspace, cli: Invoke
) -> None:
    """`ci --base` checks a recipe whose manifest did not change when a file its signature
    covers (here the lock) or its trust file did: the swapped lock is refused by name."""
    gated(workspace)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a signed, gated recipe")
    code, xml, summary = ci(cli, workspace, "--base", "HEAD")
    assert code == 0 and ("0 recipes" in summary or "no recipe" in summary)
    lock = workspace.root / "requirements.lock"
    original = lock.read_bytes()
    lock.write_bytes(original + b"# swapped under the signature\n")
    code, xml, _ = ci(cli, workspace, "--base", "HEAD")
    assert code == 3
    assert xml is not None
    [case] = list(next(iter(xml)))
    assert "requirements.lock changed since it was signed" in str(case.result[0].message)
    lock.write_bytes(original)
    with workspace.trust.open("a", encoding="utf-8") as handle:
        handle.write("# a comment only\n")
    code, xml, _ = ci(cli, workspace, "--base", "HEAD")
    assert xml is not None and len(list(next(iter(xml)))) >= 1  # checked, not skipped
    assert code == 3  # a trust file changed in the pull request is not the base's


def test_ci_without_paths_or_base_is_a_usage_error(cli: Invoke) -> None:
    result = cli("ci")
    assert result.exit_code == 2
    assert "--base" in result.stderr


def test_a_bad_base_ref_exits_2(repo: Path, workspace: Workspace, cli: Invoke) -> None:
    code, _, _ = ci(cli, workspace, "--base", "no-such-ref")
    assert code == 2


@pytest.mark.parametrize("base", ["--output=OUT", "-p", "HEAD\n--output=OUT"])
def test_a_base_that_git_would_read_as_an_option_is_refused(
    repo: Path, workspace: Workspace, cli: Invoke, base: str
) -> None:
    """`--base --output=FILE` would make `git diff` write FILE: a ref is resolved to its commit
    first (`git rev-parse --verify --end-of-options`), and one that starts with '-' refused."""
    out = repo.parent / "written-by-git"
    code, _, _ = ci(cli, workspace, "--base", base.replace("OUT", str(out)))
    assert code == 2
    assert not out.exists()


# --- the shipped hooks ---------------------------------------------------------------------


def hooks() -> dict[str, dict[str, str]]:
    listed = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return {hook["id"]: hook for hook in listed}


def run_hook(hook: dict[str, str], *files: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        f"{hook['entry']} {' '.join(str(f) for f in files)}",
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_pre_commit_hooks_validate_and_verify_recipes(workspace: Workspace) -> None:
    found = hooks()
    assert set(found) == {"compressgate-validate", "compressgate-verify"}
    for hook in found.values():
        pattern = re.compile(hook["files"])
        assert pattern.search("recipes/examples/digits.yaml")
        assert pattern.search("team/recipe.yaml")
        assert pattern.search("recipes/trust.yaml")  # validated as a trust file, by its kind
        assert not pattern.search("recipe.yaml.dsse.json")
    write_recipe(workspace)
    validate = run_hook(found["compressgate-validate"], workspace.recipe, workspace.trust)
    assert validate.returncode == 0, validate.stderr
    verify = run_hook(found["compressgate-verify"], workspace.recipe, workspace.recipe)
    assert verify.returncode == 0, verify.stderr
    workspace.recipe.write_text(workspace.recipe.read_text() + "\n# edited after signing\n")
    tampered = run_hook(found["compressgate-verify"], workspace.recipe)
    assert tampered.returncode == 3
    broken = workspace.root / "broken-recipe.yaml"
    broken.write_text("apiVersion: compressgate/v1\nkind: Recipe\n")
    assert run_hook(found["compressgate-validate"], broken).returncode == 2


# --- whose trust judges a pull request ------------------------------------------------------


def test_ci_judges_with_the_base_branch_trust_file_never_the_pull_request_s(
    repo: Path, workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    """A pull request that adds its own key under ml-platform to the trust file and signs a
    loosened recipe with it is refused (exit 3): `ci --base` reads the trust file as the base
    branch has it, and a changed trust file counts only as the next version of a signed policy
    on the base, signed by that policy's root owners."""
    from compressgate.recipes.signing import sign_recipe
    from compressgate.recipes.trust import add_owner_key
    from compressgate.registry.kernel.keys import generate_keypair

    _, _, mine = generate_keypair("mallory", tmp_path / "mallory")
    add_owner_key(workspace.trust, "ml-platform", mine, ("author",))  # the PR's own key
    gated(workspace, minimum="0.01")  # loosened, then signed by the PR's key alone
    workspace.recipe.with_name("recipe.yaml.dsse.json").unlink()
    sign_recipe(workspace.recipe, load_private_key(tmp_path / "mallory" / "mallory.key"))
    code, xml, _ = ci(cli, workspace, "--base", "HEAD")
    assert code == 3
    assert xml is not None
    [case] = list(next(iter(xml)))
    assert "differs from HEAD's: the change under review changes the trust" in str(
        case.result[0].message
    )
    # Without the change to the trust file, the same signature is refused by the base's.
    git(repo, "checkout", "--", "trust.yaml")
    code, _, _ = ci(cli, workspace, "--base", "HEAD")
    assert code == 3


def test_a_trust_file_the_base_does_not_have_is_refused(
    repo: Path, workspace: Workspace, cli: Invoke
) -> None:
    git(repo, "rm", "-q", "--cached", "trust.yaml")
    git(repo, "commit", "-qm", "no trust file on the base")
    gated(workspace)
    code, xml, _ = ci(cli, workspace, "--base", "HEAD")
    assert code == 3
    assert xml is not None
    [case] = list(next(iter(xml)))
    assert "HEAD has no such trust file" in str(case.result[0].message)


def test_a_trust_change_signed_by_the_base_policy_s_roots_is_accepted(
    repo: Path, workspace: Workspace, cli: Invoke
) -> None:
    from compressgate.recipes.policy import envelope_path, sign_policy
    from compressgate.recipes.trust import add_owner_key, set_root_threshold
    from compressgate.registry.kernel.digests import sha256_file
    from compressgate.registry.kernel.keys import generate_keypair

    for root in ("root-a", "root-b"):
        _, _, public = generate_keypair(root, workspace.keys)
        add_owner_key(workspace.trust, root, public, ("root",))
    set_root_threshold(workspace.trust, 2)
    for root in ("root-a", "root-b"):
        sign_policy(workspace.trust, load_private_key(workspace.key(root)), version=1,
                    previous=None)  # fmt: skip
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a signed policy on the base")
    base = sha256_file(workspace.trust)
    _, _, public = generate_keypair("qa", workspace.keys)
    add_owner_key(workspace.trust, "qa", public, ("approver",))  # the change under review
    gated(workspace)
    unsigned, _, _ = ci(cli, workspace, "--base", "HEAD")
    assert unsigned == 3  # the old envelope no longer covers the changed file
    envelope_path(workspace.trust).unlink()
    sign_policy(workspace.trust, load_private_key(workspace.key("root-a")), version=2,
                previous=base)  # fmt: skip
    one, _, _ = ci(cli, workspace, "--base", "HEAD")
    assert one == 3  # one root of two
    sign_policy(workspace.trust, load_private_key(workspace.key("root-b")), version=2,
                previous=base)  # fmt: skip
    code, xml, _ = ci(cli, workspace, "--base", "HEAD")
    assert code == 0, xml


# --- GitHub Actions annotations ------------------------------------------------------------


def test_an_annotation_cannot_be_ended_early_or_start_another_command() -> None:
    """What a recipe's path or an error's text holds is escaped as GitHub's toolkit escapes
    it: `%`, CR and LF in the message; also `:` and `,` in a property. Each annotation is one
    line, so a `::warning::` inside cannot become a command of its own."""
    hostile = CiResult(path="team/a,b:c.yaml", exit_code=3, error="100% bad\r\n::warning::injected")
    (annotation,) = github_annotations([hostile])
    assert annotation == (
        "::error file=team/a%2Cb%3Ac.yaml::compressgate ci could not check team/a,b:c.yaml "
        "(exit 3): 100%25 bad\\r%0A::warning::injected"
    )
