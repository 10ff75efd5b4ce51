"""The GitHub Actions example, .github/workflows/compressgate.yml, as it runs (issue 24).

Its actions are pinned to full commits and compressgate to a full commit with the lock's
hashes; then the job's steps run in order, as GitHub's runner runs them, in a local git
repository: a base commit holding a signed quick recipe, its trust file and lock (`main`, seen
as `origin/main` from a clone, as a checkout with `fetch-depth: 0` sees it), and a head commit
per pull request. `${{ ... }}` expressions come from a small table (an unknown one fails the
test), `if:` conditions are evaluated for the few forms the workflow uses, and the runner's files
($GITHUB_STEP_SUMMARY, $GITHUB_OUTPUT, $GITHUB_ENV) are temporary files. Three steps do not
run here: `actions/checkout` (the clone stands for it), `actions/setup-python` (this venv's
Python), and the install step, which needs GitHub: the venv's compressgate on PATH stands for
it, which is the commit under test with requirements.lock installed. Every other `run:` step
runs as written, with bash as the workflow's default shell; the upload step's `path:` is where
the artifacts must be.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import add_owner_key, load_trust
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.recipes import write_recipe
from tests.helpers.workspace import Workspace, make_workspace

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "compressgate.yml"
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
BASE = "main"
# The quick recipe's gates: `floor` is what the failing pull request raises out of reach (then
# the pipeline stops after distillation, its stage: the failing job runs one stage, not four).
GATES = """\
gates:
  - name: agreement
    owner: ml-lead
    metric: accuracy
    rule: non_inferior
    margin: 0.1
  - name: floor
    owner: serving
    after: distill
    metric: accuracy
    rule: bound
    min: MINIMUM
"""


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return loaded


def steps() -> list[dict[str, Any]]:
    (job,) = workflow()["jobs"].values()
    found: list[dict[str, Any]] = job["steps"]
    return found


def install_step() -> dict[str, Any]:
    (found,) = [s for s in steps() if "uv pip install" in s.get("run", "")]
    return found


def test_every_action_is_pinned_to_a_full_commit_with_its_version_beside_it() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    used = [step["uses"] for step in steps() if "uses" in step]
    assert {u.split("@")[0] for u in used} == {
        "actions/checkout",
        "actions/setup-python",
        "actions/upload-artifact",
    }
    for uses in used:
        ref = uses.partition("@")[2]
        assert FULL_COMMIT.fullmatch(ref), f"{uses}: pin a full 40-hex commit, not a tag"
        assert re.search(rf"uses: {re.escape(uses)} # v\d+\.\d+\.\d+\n", text), (
            f"{uses}: name the release the commit is, as `# vX.Y.Z`"
        )


def test_compressgate_installs_from_a_pinned_commit_and_the_lock_with_its_hashes() -> None:
    env = workflow()["env"]
    assert FULL_COMMIT.fullmatch(env["COMPRESSGATE_COMMIT"])
    assert env["COMPRESSGATE_REPOSITORY"].startswith("https://github.com/")
    script = install_step()["run"]
    assert "git+$COMPRESSGATE_REPOSITORY@$COMPRESSGATE_COMMIT" in script
    assert 'uv pip install --system --require-hashes --no-build -r "$COMPRESSGATE_LOCK"' in script
    assert "--no-deps --require-hashes" in script  # uv itself, by the lock's hashes
    # torch's CPU build, which the lock pins, is not on PyPI.
    assert "torch==2.13.0+cpu\\" in (ROOT / "requirements.lock").read_text().replace(" ", "")
    assert env["UV_FIND_LINKS"] == "https://download.pytorch.org/whl/cpu/torch/"


# --- the job, run ------------------------------------------------------------------------------


@dataclass
class StepRun:
    name: str
    ran: bool
    code: int = 0
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class JobRun:
    """What a run of the job did: each step, the step summary, and the uploaded paths."""

    steps: dict[str, StepRun]
    summary: str
    uploaded: list[Path]

    @property
    def failed(self) -> bool:
        return any(step.code != 0 for step in self.steps.values())

    def log(self) -> str:
        """Each step as the job's page shows it: what failing assertions print."""
        return "\n".join(
            f"== {s.name}: "
            + (f"exit {s.code}, {s.seconds:.1f} s\n{s.stdout}{s.stderr}" if s.ran else "skipped")
            for s in self.steps.values()
        )


def _commands_file(path: Path) -> dict[str, str]:
    """A $GITHUB_OUTPUT / $GITHUB_ENV file: `NAME=value` lines and `NAME<<DELIMITER` blocks."""
    found: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").splitlines() if path.exists() else [])
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            found[name] = "\n".join(iter(lambda: next(lines), delimiter))
        elif line:
            name, _, value = line.partition("=")
            found[name] = value
    return found


def _substitute(text: str, context: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("secrets."):
            return context.get(expression, "")  # a secret not set is empty, as on GitHub
        if expression not in context:
            raise AssertionError(f"the test knows no value for ${{{{ {expression} }}}}")
        return context[expression]

    return EXPRESSION.sub(value, text)


def _condition(text: str | None, context: Mapping[str, str], failed: bool) -> bool:
    """The step's `if:`, for the forms the workflow uses: none (`success()`), and `&&` of
    `!cancelled()` and `EXPRESSION != ''`. Nothing is cancelled here."""
    if text is None:
        return not failed
    found = re.fullmatch(r"\$\{\{\s*(.*?)\s*\}\}", text.strip())
    assert found, f"if: {text}: write it as one ${{{{ }}}} expression"
    result = True
    for term in (t.strip() for t in found.group(1).split("&&")):
        if term == "!cancelled()":
            continue
        compared = re.fullmatch(r"([\w.-]+) != ''", term)
        assert compared, f"if: {text}: the test cannot evaluate {term!r}"
        result = result and context.get(compared.group(1), "") != ""
    return result


def run_job(checkout: Path, temp: Path, secrets: Mapping[str, str]) -> JobRun:
    """The job's steps in order in `checkout`, the runner's temporary folder at `temp`."""
    document = workflow()
    (job,) = document["jobs"].values()
    assert document["defaults"]["run"]["shell"] == "bash"
    temp.mkdir(parents=True)
    context: dict[str, str] = {
        "github.base_ref": BASE,
        "runner.temp": str(temp),
        **{f"secrets.{name}": value for name, value in secrets.items()},
    }
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "RUNNER_", "COMPRESSGATE_", "VIRTUAL_ENV"))
    }
    runner_env = {
        **inherited,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_BASE_REF": BASE,
        "GITHUB_WORKSPACE": str(checkout),
        "RUNNER_TEMP": str(temp),
    }
    summary = temp / "step-summary.md"
    uploaded: list[Path] = []
    done: dict[str, StepRun] = {}
    exported: dict[str, str] = {}
    for number, step in enumerate(job["steps"]):
        name = step.get("id") or step.get("name") or step.get("uses", f"step {number}")
        failed = any(s.code != 0 for s in done.values())
        if not _condition(step.get("if"), context, failed):
            done[name] = StepRun(name, ran=False)
            continue
        uses = step.get("uses", "")
        if uses.startswith(("actions/checkout@", "actions/setup-python@")):
            done[name] = StepRun(name, ran=True)  # the clone, and this venv's Python
            continue
        if uses.startswith("actions/upload-artifact@"):
            paths = _substitute(step["with"]["path"], context).split("\n")
            uploaded += [Path(p) for p in paths if p.strip()]
            done[name] = StepRun(name, ran=True)
            continue
        assert not uses, f"{uses}: the test does not know what this action does"
        if step == install_step():
            done[name] = StepRun(name, ran=True)  # the venv's compressgate is on PATH
            continue
        output, env_file = temp / f"output-{number}", temp / f"env-{number}"
        env = {**runner_env, **exported, "GITHUB_OUTPUT": str(output)}
        env |= {"GITHUB_ENV": str(env_file), "GITHUB_STEP_SUMMARY": str(summary)}
        for scope in (document.get("env", {}), job.get("env", {}), step.get("env", {})):
            env |= {key: _substitute(str(value), context) for key, value in scope.items()}
        script = temp / f"step-{number}.sh"
        script.write_text(_substitute(step["run"], context), encoding="utf-8")
        started = time.monotonic()
        finished = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        outputs = _commands_file(output)
        exported |= _commands_file(env_file)
        context |= {
            f"steps.{step['id']}.outputs.{k}": v for k, v in outputs.items() if "id" in step
        }
        seconds = time.monotonic() - started
        done[name] = StepRun(
            name, True, finished.returncode, finished.stdout, finished.stderr, outputs, seconds
        )
    text = summary.read_text(encoding="utf-8") if summary.exists() else ""
    return JobRun(done, text, uploaded)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@dataclass(frozen=True)
class Origin:
    """The repository a pull request targets: `main` and one branch per pull request."""

    repo: Path
    recipe: str  # the recipe's path in the repository
    floor_line: int  # the line of the `floor` gate's entry in the failing pull request's recipe


def _gated(recipe: Path, key: Path, minimum: str, *, trust: Path | None) -> str:
    text = recipe.read_text(encoding="utf-8")
    text = text[: text.index("gates:")] if "gates:" in text else text
    recipe.write_text(text + GATES.replace("MINIMUM", minimum), encoding="utf-8")
    recipe.with_name(recipe.name + ".dsse.json").unlink(missing_ok=True)
    sign_recipe(recipe, load_private_key(key), load_trust(trust) if trust else None)
    return recipe.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Origin:
    """`main`: the quick recipe, signed, gated (floor 0.5) in team/, with its trust file and
    lock. Pull requests: `gates-pass` changes a margin, `gate-fails` raises the floor out of
    reach (0.99), `own-trust` adds a key of its own to the trust file and signs the recipe
    with it alone."""
    folder = tmp_path_factory.mktemp("origin")
    ws = make_workspace(folder)  # folder/ws (the repository's team/) and folder/keys
    repo = folder / "repo"
    repo.mkdir()
    ws.root.rename(repo / "team")
    team = repo / "team"
    ws = Workspace(team, team / "recipe.yaml", team / "trust.yaml", ws.keys)
    write_recipe(ws)
    author = ws.key("ml-platform")
    _gated(ws.recipe, author, "0.5", trust=ws.trust)
    git(repo, "init", "-q", "-b", BASE)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a signed, gated recipe and its trust file")

    git(repo, "checkout", "-q", "-b", "gates-pass", BASE)
    recipe = ws.recipe.read_text(encoding="utf-8").replace("margin: 0.1", "margin: 0.2")
    ws.recipe.write_text(recipe, encoding="utf-8")
    sign_recipe(ws.recipe, load_private_key(author), load_trust(ws.trust))
    git(repo, "commit", "-qam", "a wider margin")

    git(repo, "checkout", "-q", "-b", "gate-fails", BASE)
    text = _gated(ws.recipe, author, "0.99", trust=ws.trust)
    git(repo, "commit", "-qam", "a floor no quick model reaches")
    floor = text.splitlines().index("  - name: floor") + 1

    git(repo, "checkout", "-q", "-b", "own-trust", BASE)
    _, _, public = generate_keypair("mallory", folder / "mallory")
    add_owner_key(ws.trust, "ml-platform", public, ("author",))
    _gated(ws.recipe, folder / "mallory" / "mallory.key", "0.01", trust=None)
    git(repo, "commit", "-qam", "my own key, and a floor anything passes")
    git(repo, "checkout", "-q", BASE)
    return Origin(repo, "team/recipe.yaml", floor)


def pull_request(origin: Origin, branch: str, where: Path) -> JobRun:
    """The job on `branch`'s pull request into main, in a clone (as actions/checkout makes)."""
    checkout = where / "checkout"
    git(where, "clone", "-q", str(origin.repo), str(checkout))
    git(checkout, "checkout", "-q", branch)
    return run_job(checkout, where / "runner-temp", {})


@pytest.fixture(scope="module")
def passing(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> JobRun:
    return pull_request(origin, "gates-pass", tmp_path_factory.mktemp("passing"))


@pytest.fixture(scope="module")
def failing(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> JobRun:
    return pull_request(origin, "gate-fails", tmp_path_factory.mktemp("failing"))


def _uploaded(job: JobRun) -> list[Path]:
    (folder,) = job.uploaded
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_pull_request_whose_gates_pass_succeeds_and_uploads_junit_summary_and_report(
    passing: JobRun,
) -> None:
    ci = passing.steps["ci"]
    assert ci.ran and ci.code == 0, passing.log()
    assert not passing.failed, passing.log()
    assert "::error" not in ci.stdout + ci.stderr
    (run_id,) = ci.outputs["run-ids"].split()
    names = [p.name for p in _uploaded(passing)]
    assert names == sorted(["junit.xml", "summary.md", f"report-{run_id}.html"])
    (folder,) = passing.uploaded
    assert "<testcase" in (folder / "junit.xml").read_text()
    summary = (folder / "summary.md").read_text()
    assert "exit 0 (ok)" in summary and "team/recipe.yaml" in summary
    assert summary in passing.summary  # also on the job's page
    assert run_id in (folder / f"report-{run_id}.html").read_text()


@pytest.mark.slow
def test_a_failing_gate_fails_the_job_with_an_annotation_on_its_line_and_still_uploads(
    failing: JobRun, origin: Origin
) -> None:
    ci = failing.steps["ci"]
    assert ci.code == 1, failing.log()
    annotations = [line for line in ci.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 1, ci.stdout
    assert annotations[0].startswith(
        f"::error file={origin.recipe},line={origin.floor_line}::gate 'floor' failed"
    )
    assert "threshold 0.99" in annotations[0]
    # The report step and the upload still run after the failure.
    (run_id,) = ci.outputs["run-ids"].split()
    names = [p.name for p in _uploaded(failing)]
    assert names == sorted(["junit.xml", "summary.md", f"report-{run_id}.html"])
    assert "**rejected**" in failing.summary


@pytest.mark.slow
def test_a_pull_request_is_judged_by_the_base_branch_s_trust_file_not_its_own(
    origin: Origin, tmp_path: Path
) -> None:
    """The pull request adds its own key to trust.yaml and signs a loosened recipe with it
    (by its own trust file the signature verifies): `ci --base origin/main` reads the trust
    file as main has it, so the signature is refused (exit 3) before anything runs."""
    job = pull_request(origin, "own-trust", tmp_path)
    verify = subprocess.run(
        [Path(sys.executable).parent / "compressgate", "recipe", "verify", origin.recipe],
        cwd=tmp_path / "checkout",
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr  # the pull request's own trust would pass it
    ci = job.steps["ci"]
    assert ci.code == 3, job.log()
    assert "differs from origin/main's" in ci.stderr
    assert ci.outputs["run-ids"] == ""
    assert not job.steps["Render the report of each run"].ran
    (annotation,) = [line for line in ci.stdout.splitlines() if line.startswith("::")]
    assert annotation.startswith(f"::error file={origin.recipe}::compressgate ci could not check")
    names = [p.name for p in _uploaded(job)]
    assert names == ["junit.xml", "summary.md"]
