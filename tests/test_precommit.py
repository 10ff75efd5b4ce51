"""`compressgate validate` and the pre-commit hooks that run it: each file checked as its `kind`
says (a recipe as `recipe validate` checks it, a trust file as a trust policy), any other YAML
skipped; and the shipped `.pre-commit-hooks.yaml` through `pre-commit try-repo` on a repository
holding a recipe, its trust policy and their signatures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compressgate.recipes.policy import envelope_path, sign_policy
from compressgate.recipes.trust import add_owner_key, set_root_threshold
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.workspace import Invoke, Workspace, make_workspace

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / ".pre-commit-hooks.yaml"
BIN = Path(sys.executable).parent  # where `compressgate` is installed beside this interpreter


def line_of(path: Path, text: str) -> int:
    """The 1-based line of `path` that holds `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def break_sparsity(recipe: Path) -> int:
    """Set the prune stage's sparsity to 1.5 (it must be < 1); the line it is on."""
    recipe.write_text(recipe.read_text().replace("sparsity: 0.5", "sparsity: 1.5"))
    return line_of(recipe, "sparsity: 1.5")


def make_policy(ws: Workspace) -> Path:
    """Two root owners (threshold 2) in the trust file, which both sign as policy version 1:
    `trust.yaml.dsse.json` beside it, as `trust sign` writes it."""
    for owner in ("root-a", "root-b"):
        _, _, public = generate_keypair(owner, ws.keys)
        add_owner_key(ws.trust, owner, public, ("root",))
    set_root_threshold(ws.trust, 2)
    for owner in ("root-a", "root-b"):
        sign_policy(ws.trust, load_private_key(ws.key(owner)), version=1, previous=None)
    return envelope_path(ws.trust)


# --- `compressgate validate` ------------------------------------------------------------------


def test_a_recipe_is_checked_as_recipe_validate_checks_it(
    workspace: Workspace, cli: Invoke
) -> None:
    result = cli("validate", workspace.recipe)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"ok {workspace.recipe} (digits-cnn-compact v1)\n"
    assert cli("recipe", "validate", workspace.recipe).stdout == result.stdout


def test_a_trust_file_is_checked_as_a_trust_policy(workspace: Workspace, cli: Invoke) -> None:
    result = cli("validate", workspace.recipe, workspace.trust)
    assert result.exit_code == 0, result.stderr
    assert f"ok {workspace.trust} (trust file: 4 owner(s))\n" in result.stdout


def test_a_signed_policy_is_read_with_its_envelope(workspace: Workspace, cli: Invoke) -> None:
    envelope = make_policy(workspace)
    result = cli("validate", workspace.trust)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"ok {workspace.trust} (trust policy: 6 owner(s), root threshold 2; "
        "trust.yaml.dsse.json signs it as version 1)\n"
    )
    envelope.write_text("{not json")
    broken = cli("validate", workspace.trust)
    assert broken.exit_code == 3
    assert str(envelope) in broken.stderr


def test_a_policy_envelope_needs_a_root_role_in_the_trust_file(
    workspace: Workspace, cli: Invoke
) -> None:
    envelope = make_policy(workspace)
    unsigned = workspace.trust.read_text().replace("root:\n  threshold: 2\n", "")
    assert "root:" not in unsigned
    workspace.trust.write_text(unsigned)
    result = cli("validate", workspace.trust)
    assert result.exit_code == 2
    assert f"Error: {workspace.trust}: a policy declares its root role" in result.stderr
    envelope.unlink()  # without an envelope it is a trust file, which need not declare one
    assert cli("validate", workspace.trust).exit_code == 0


def test_other_yaml_is_skipped_and_said_so_only_with_verbose_or_json(
    workspace: Workspace, cli: Invoke
) -> None:
    ci = workspace.root / "ci.yaml"
    ci.write_text("on: push\njobs: {check: {runs-on: ubuntu-latest}}\n")
    board = workspace.root / "dashboard.yaml"
    board.write_text("apiVersion: compressgate/v1\nkind: Dashboard\npanels: [runs]\n")
    empty = workspace.root / "empty.yaml"
    empty.write_text("# nothing yet\n")
    quiet = cli("validate", ci, board, empty)
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    verbose = cli("validate", "-v", ci, board, empty)
    assert verbose.exit_code == 0
    assert verbose.stdout.splitlines() == [
        f"skipped {ci}: no kind: not a compressgate manifest",
        f"skipped {board}: kind 'Dashboard' is not checked here",
        f"skipped {empty}: no kind: not a compressgate manifest",
    ]
    listed = json.loads(cli("validate", "--json", board).stdout)["files"]
    assert [(f["kind"], f["status"]) for f in listed] == [("Dashboard", "skipped")]


def test_a_sweep_is_checked_not_skipped(workspace: Workspace, cli: Invoke) -> None:
    """`kind: Sweep` is checked as a sweep (tests/recipes/test_sweep_manifest.py checks a
    valid one): an unknown key is an error at its line."""
    sweep = workspace.root / "sweep.yaml"
    sweep.write_text("apiVersion: compressgate/v1\nkind: Sweep\nover: {seeds: [0, 1]}\n")
    result = cli("validate", "--json", sweep)
    assert result.exit_code == 2
    (entry,) = json.loads(result.stdout)["files"]
    assert (entry["kind"], entry["status"]) == ("Sweep", "invalid")
    assert [(i["line"], i["field"]) for i in entry["issues"]] == [
        (1, "metadata"),
        (1, "recipe"),
        (1, "axes"),
        (1, "objectives"),
        (3, "over"),
    ]


def test_a_broken_recipe_is_exit_2_at_its_line(workspace: Workspace, cli: Invoke) -> None:
    line = break_sparsity(workspace.recipe)
    result = cli("validate", workspace.recipe, workspace.trust)
    assert result.exit_code == 2
    assert f"ok {workspace.trust} (trust file" in result.stdout
    assert result.stderr == (
        f"Error: {workspace.recipe}:{line} stages[1].sparsity: must be < 1, not 1.5\n"
    )


def test_a_broken_trust_file_is_exit_2_naming_the_field(workspace: Workspace, cli: Invoke) -> None:
    text = workspace.trust.read_text()
    workspace.trust.write_text(text.replace("- author", "- authr", 1))
    line = line_of(workspace.trust, "- authr")
    result = cli("validate", workspace.trust, workspace.recipe)
    assert result.exit_code == 2
    assert result.stdout == ""
    # The recipe, checked against its trust file, says why it was not; the issue shows once.
    assert result.stderr.splitlines() == [
        f"Error: {workspace.trust}:{line} owners.ml-platform.roles[0]: 'authr' is not allowed "
        "(did you mean 'author'?); must be one of author, approver, auditor, releaser, root or "
        "runner",
        f"Error: {workspace.recipe}: not checked: its trust file {workspace.trust} is invalid",
    ]


def test_yaml_that_does_not_parse_is_an_error_at_its_line(
    workspace: Workspace, cli: Invoke
) -> None:
    notes = workspace.root / "notes.yaml"
    notes.write_text("owners: [a, b\nnext: 1\n")
    result = cli("validate", notes)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {notes}:2: invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: compressgate/v1\nkind: recipe\n", "2 kind: unknown kind 'recipe' (did you"),
        ("apiVersion: compressgate/v1\nkind: Trusts\n", "2 kind: unknown kind 'Trusts' (did you"),
        ("apiVersion: compressgate/v1\nowners: {}\n", "1 kind: required, but missing"),
    ],
    ids=["lowercase", "misspelt", "missing"],
)
def test_a_compressgate_document_of_no_known_kind_is_not_skipped(
    workspace: Workspace, cli: Invoke, text: str, message: str
) -> None:
    """A typo in `kind` must not make a recipe or a trust file pass unchecked."""
    odd = workspace.root / "odd.yaml"
    odd.write_text(text)
    result = cli("validate", odd)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {odd}:{message}")


def test_a_file_named_trust_yaml_is_a_trust_file_even_without_a_kind(
    workspace: Workspace, cli: Invoke
) -> None:
    """Recipes beside it are checked against it: emptied, it must not pass as "other YAML"."""
    workspace.trust.write_text("# owners to come\n")
    result = cli("validate", "--json", workspace.trust)
    assert result.exit_code == 2
    (entry,) = json.loads(result.stdout)["files"]
    assert (entry["kind"], entry["status"]) == ("Trust", "invalid")
    assert entry["issues"][0]["message"] == "the document is empty"


def test_a_compressgate_document_of_another_kind_is_still_parsed_safely(
    workspace: Workspace, cli: Invoke
) -> None:
    tagged = workspace.root / "dashboard.yaml"
    tagged.write_text(
        "apiVersion: compressgate/v1\nkind: Dashboard\nrun: !!python/name:os.system\n"
    )
    result = cli("validate", tagged)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {tagged}:3: invalid YAML: could not determine")


def test_json_lists_every_file_with_stable_keys(workspace: Workspace, cli: Invoke) -> None:
    line = break_sparsity(workspace.recipe)
    other = workspace.root / "ci.yaml"
    other.write_text("on: push\n")
    result = cli("validate", "--json", workspace.recipe, workspace.trust, other)
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert set(report) == {"files", "exit_code"}
    assert report["exit_code"] == 2
    keys = {
        "path",
        "kind",
        "status",
        "exit_code",
        "reason",
        "name",
        "version",
        "signers",
        "issues",
        "warnings",
        "hint",
    }
    assert all(set(entry) == keys for entry in report["files"])
    assert [(f["path"], f["kind"], f["status"]) for f in report["files"]] == [
        (str(workspace.recipe), "Recipe", "invalid"),
        (str(workspace.trust), "Trust", "ok"),
        (str(other), None, "skipped"),
    ]
    assert report["files"][0]["issues"] == [
        {
            "file": str(workspace.recipe),
            "line": line,
            "field": "stages[1].sparsity",
            "message": "must be < 1, not 1.5",
        }
    ]


def test_verify_checks_recipe_signatures_and_leaves_trust_files_to_validation(
    workspace: Workspace, cli: Invoke
) -> None:
    unsigned = cli("validate", "--verify", workspace.recipe)
    assert unsigned.exit_code == 4  # `recipe verify`'s code for a missing envelope
    assert "recipe sign" in unsigned.stderr
    signed = cli("recipe", "sign", workspace.recipe, "--key", workspace.key("ml-platform"))
    assert signed.exit_code == 0, signed.stderr
    result = cli("validate", "--verify", workspace.recipe, workspace.trust)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ok {workspace.recipe} (digits-cnn-compact v1, signed by ml-platform)",
        f"ok {workspace.trust} (trust file: 4 owner(s))",
    ]
    workspace.recipe.write_text(workspace.recipe.read_text() + "# edited after signing\n")
    assert cli("validate", workspace.recipe).exit_code == 0
    tampered = cli("validate", "--verify", workspace.recipe, "--json")
    assert tampered.exit_code == 3
    assert json.loads(tampered.stdout)["files"][0]["status"] == "invalid"


def test_recipe_validate_on_a_trust_file_says_what_it_is(workspace: Workspace, cli: Invoke) -> None:
    result = cli("recipe", "validate", workspace.trust)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {workspace.trust}:2 kind: this is a trust file (kind: Trust), not a recipe: "
        f"check it with `compressgate validate {workspace.trust}`; `compressgate trust ...` "
        "manages it\n"
    )


# --- the shipped hooks -------------------------------------------------------------------------


def test_the_hooks_run_validate_on_recipes_and_trust_files_never_envelopes() -> None:
    hooks = {hook["id"]: hook for hook in yaml.safe_load(HOOKS.read_text(encoding="utf-8"))}
    assert set(hooks) == {"compressgate-validate", "compressgate-verify"}  # a published contract
    assert hooks["compressgate-validate"]["entry"] == "compressgate validate"
    assert hooks["compressgate-verify"]["entry"] == "compressgate validate --verify"
    for hook in hooks.values():
        files, exclude = re.compile(hook["files"]), re.compile(hook["exclude"])
        for name in ("recipes/trust.yaml", "recipes/digits.yaml", "team/recipe.yml", "trust.yaml"):
            assert files.search(name) and not exclude.search(name), name
        for name in ("recipes/recipe.yaml.dsse.json", "recipes/trust.yaml.dsse.json", "ci.yaml"):
            assert not files.search(name) or exclude.search(name), name


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without git's or compressgate's variables (a GIT_DIR or a
    COMPRESSGATE_TRUST from outside would steer the hooks), `compressgate` first on PATH."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GIT_", "COMPRESSGATE_", "PRE_COMMIT"))
    }
    return {**kept, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def hooks_repository(folder: Path) -> Path:
    """A git repository holding this work tree's `.pre-commit-hooks.yaml`, committed:
    `try-repo` clones a repository's HEAD, which the file being edited here may not be yet."""
    folder.mkdir()
    shutil.copyfile(HOOKS, folder / HOOKS.name)
    git(folder, "init", "-q")
    git(folder, "add", HOOKS.name)
    git(folder, "commit", "-qm", "hooks")
    return folder


def try_repo(hooks: Path, repo: Path, *hook: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hooks), *hook, "--all-files"],
        cwd=repo,
        env=clean_env(PRE_COMMIT_HOME=str(repo.parent / "pre-commit-home")),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_pre_commit_try_repo_passes_recipes_and_their_trust_policy_and_fails_a_broken_recipe(
    tmp_path: Path, cli: Invoke
) -> None:
    """A repository as a team keeps it: recipes/ holding a recipe, its lock, its trust policy,
    both signatures and a YAML file of another kind. Both hooks pass; a broken recipe fails
    the validate hook with FILE:LINE."""
    repo = tmp_path / "repo"
    repo.mkdir()
    ws = make_workspace(repo)
    recipes = ws.root.rename(repo / "recipes")
    ws = Workspace(recipes, recipes / "recipe.yaml", recipes / "trust.yaml", ws.keys)
    make_policy(ws)
    assert cli("recipe", "sign", ws.recipe, "--key", ws.key("ml-platform")).exit_code == 0
    (recipes / "dashboard.yaml").write_text("apiVersion: compressgate/v1\nkind: Dashboard\n")
    (repo / ".gitignore").write_text("keys/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    assert git(repo, "ls-files").splitlines() == [
        ".gitignore",
        "recipes/dashboard.yaml",
        "recipes/recipe.yaml",
        "recipes/recipe.yaml.dsse.json",
        "recipes/requirements.lock",
        "recipes/trust.yaml",
        "recipes/trust.yaml.dsse.json",
    ]
    hooks = hooks_repository(tmp_path / "hooks")

    passed = try_repo(hooks, repo)
    print(passed.stdout, passed.stderr)  # shown when the test fails
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"^compressgate validate\.+Passed$", passed.stdout, re.M)
    assert re.search(r"^compressgate validate --verify\.+Passed$", passed.stdout, re.M)

    line = break_sparsity(ws.recipe)
    failed = try_repo(hooks, repo, "compressgate-validate")
    print(failed.stdout, failed.stderr)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert re.search(r"^compressgate validate\.+Failed$", failed.stdout, re.M)
    assert "- exit code: 2" in failed.stdout
    assert (
        f"Error: recipes/recipe.yaml:{line} stages[1].sparsity: must be < 1, not 1.5"
        in failed.stdout
    )
    assert "ok recipes/trust.yaml (trust policy: 6 owner(s)" in failed.stdout
