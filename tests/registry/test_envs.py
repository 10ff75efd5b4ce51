"""Environments built from locks (`compressgate.registry.run.envs`, `compressgate env ...`).

Builds here use a one-pin lock (about 10 s: venv, pip, a wheel of compressgate); the reference
recipe under the real runtime lock is tests/e2e/test_isolation.py (slow).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compressgate.registry.kernel.errors import EnvironmentMismatch, ManifestError
from compressgate.registry.run import envs
from compressgate.registry.run.environment import Pin, read_lock
from tests.helpers.envs import untouched
from tests.helpers.workspace import Invoke

PACKAGING = importlib.metadata.version("packaging")


def tiny_lock(tmp_path: Path, text: str = f"packaging=={PACKAGING}\n") -> Path:
    lock = tmp_path / "tiny.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(text)
    return lock


# --- locks ------------------------------------------------------------------------------------


def test_read_lock_takes_hash_options_and_continuations(tmp_path: Path) -> None:
    lock = tiny_lock(
        tmp_path,
        "# hashed, as pip-compile --generate-hashes writes it\n"
        "torch==2.13.0 \\\n    --hash=sha256:AB12 \\\n    --hash=sha256:cd34\n"
        "numpy==2.4.6 --hash=sha512:ef  # trailing comment\n",
    )
    assert read_lock(lock) == (
        Pin("torch", "2.13.0", ("sha256:ab12", "sha256:cd34")),
        Pin("numpy", "2.4.6", ("sha512:ef",)),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("torch==2.13.0 --index-url=https://x\n", "is not a --hash option"),
        ("torch==2.13.0 --hash=md5:ab\n", "is not a --hash option"),
        ("torch==2.13.0 --hash=sha256:ab\nnumpy==2.4.6\n", "some pins have --hash options"),
        ("torch>=2\n", "is not an exact pin"),
    ],
)
def test_read_lock_refuses_what_pip_would_not_install_exactly(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ManifestError, match=message) as caught:
        read_lock(tiny_lock(tmp_path, text))
    assert caught.value.exit_code == 2


def test_differences_name_missing_other_and_extra_packages() -> None:
    pins = (Pin("torch", "2.13.0"), Pin("numpy", "2.4.6"), Pin("rich", "15.0.0"))
    present = {
        "torch": ("torch", "2.13.0+cpu"),  # a local label the pin does not mention: a match
        "numpy": ("numpy", "2.4.5"),
        "pytest": ("pytest", "9.0.0"),
        "pip": ("pip", "25.0"),  # venv's own
        "compressgate": ("compressgate", "0.1.0"),  # every environment installs it
    }
    found = [str(d) for d in envs.differences(pins, present)]
    assert found == [
        "numpy: wanted 2.4.6, found 2.4.5",
        "rich: wanted 15.0.0, found not installed",
        "pytest: installed 9.0.0, not in the lock",
    ]


def test_pip_failure_names_the_package_and_pips_reason() -> None:
    missing = (
        "ERROR: Could not find a version that satisfies the requirement nosuch==1.0 "
        "(from versions: none)\nERROR: No matching distribution found for nosuch==1.0\n"
    )
    assert envs.pip_failure(missing) == (
        "nosuch==1.0",
        "Could not find a version that satisfies the requirement nosuch==1.0 (from versions: none)",
    )
    hashes = (
        "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have "
        "updated the package versions, please update the hashes. Otherwise, examine the "
        "package contents carefully; someone may have tampered with them.\n"
        "    packaging==26.3 from file:///x/packaging-26.3-py3-none-any.whl:\n"
        "        Expected sha256 0000\n"
        "             Got        d719\n"
    )
    assert envs.pip_failure(hashes) == (
        "packaging==26.3",
        "its hash does not match the lock's (got d719)",
    )


def test_uv_failure_names_the_package_and_uvs_reason() -> None:
    """uv 0.13's own words, as it printed them for the two locks the builds below refuse."""
    missing = (
        "Using Python 3.11.7 environment at: v\n"
        "error: No solution found when resolving dependencies\n"
        "  cause: Because compressgate-no-such-package was not found in the package registry and "
        "you require compressgate-no-such-package==1.0, we can conclude that your requirements "
        "are unsatisfiable.\n"
    )
    package, reason = envs.uv_failure(missing)
    assert package == "compressgate-no-such-package==1.0"
    assert reason.startswith("Because compressgate-no-such-package was not found")
    hashes = (
        "Resolved 1 package in 230ms\n"
        "error: Failed to download `packaging==26.3`\n"
        "  cause: Hash mismatch for `packaging==26.3`\n\n"
        "         Expected:\n           sha256:0000\n\n"
        "         Computed:\n           sha256:d719\n"
    )
    assert envs.uv_failure(hashes) == (
        "packaging==26.3",
        "its hash does not match the lock's (got d719)",
    )


def test_the_installer_is_uv_where_found_else_pip_and_the_variable_chooses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(envs.INSTALLER_ENV, raising=False)
    assert envs.installer().name == "uv"  # the lock installs the uv package beside compressgate
    monkeypatch.setenv(envs.INSTALLER_ENV, "pip")
    assert envs.installer().name == "pip"
    monkeypatch.setenv(envs.INSTALLER_ENV, "conda")
    with pytest.raises(ManifestError, match="not an installer"):
        envs.installer()
    monkeypatch.setenv(envs.INSTALLER_ENV, "uv")
    monkeypatch.setattr(envs, "_uv_binary", lambda: None)
    with pytest.raises(EnvironmentMismatch, match="uv is not installed"):
        envs.installer()
    monkeypatch.setenv(envs.INSTALLER_ENV, "auto")
    assert envs.installer().name == "pip"  # the fallback


def test_uv_is_given_pips_find_links(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """uv reads no pip configuration: what pip would search ($PIP_FIND_LINKS and its config
    files) is passed on, once each."""
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nfind-links = {tmp_path / 'wheels'}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", f"{tmp_path / 'local'} {tmp_path / 'wheels'}")
    monkeypatch.delenv(envs.INSTALLER_ENV, raising=False)
    command = envs.installer().install(tmp_path / "bin" / "python", "-r", "x.lock")
    links = [command[i + 1] for i, arg in enumerate(command) if arg == "--find-links"]
    assert links == [str(tmp_path / "local"), str(tmp_path / "wheels")]
    assert command[-2:] == ["-r", "x.lock"] and "--compile-bytecode" in command


# --- export -----------------------------------------------------------------------------------


def test_export_requires_is_the_closure_and_verifies_against_the_running_interpreter(
    tmp_path: Path, cli: Invoke
) -> None:
    out = tmp_path / "runtime.lock"
    result = cli("env", "export", "--requires", "compressgate", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    pins = {p.name.lower(): p.version for p in read_lock(out)}
    assert pins["torch"] == "2.13.0"  # the local +cpu label is noted, not pinned
    assert "# installed: 2.13.0+cpu" in out.read_text()
    assert {"numpy", "onnxruntime", "pydantic", "scikit-learn", "torch-pruning"} <= set(pins)
    assert not {"pytest", "mypy", "hypothesis", "compressgate", "pip"} & set(pins)
    assert json.loads(result.stdout)["pins"] == len(pins)
    # A second export refuses to overwrite; --force does.
    assert cli("env", "export", "-o", out).exit_code == 2
    forced = cli("env", "export", "--requires", "compressgate", "-o", out, "--force")
    assert forced.exit_code == 0

    everything = tmp_path / "all.lock"
    assert cli("env", "export", "-o", everything).exit_code == 0
    verified = cli("env", "verify", everything, "--current")
    assert verified.exit_code == 0, verified.stdout
    assert "matches" in verified.stdout
    # The runtime lock leaves the dev tools out: against it this interpreter has extras.
    extra = cli("env", "verify", out, "--current", "--json")
    assert extra.exit_code == 5
    differing = {d["package"].lower(): d for d in json.loads(extra.stdout)["differences"]}
    assert differing["pytest"]["wanted"] is None


# --- building ---------------------------------------------------------------------------------


def test_create_builds_once_then_reuses_lists_and_verifies(tmp_path: Path, cli: Invoke) -> None:
    lock, store = tiny_lock(tmp_path), tmp_path / "envs"
    first = cli("env", "create", lock, "--envs", store, "--json")
    assert first.exit_code == 0, first.stderr
    built = json.loads(first.stdout)
    digest = envs.lock_digest(lock)
    assert built["built"] is True
    assert built["path"] == str(store / digest)
    assert built["interpreter"] == str(store / digest / "bin" / "python")
    assert "building environment" in first.stderr

    before = untouched(store / digest)
    again = json.loads(cli("env", "create", lock, "--envs", store, "--json").stdout)
    assert again["built"] is False and again["refreshed"] is False
    assert untouched(store / digest) == before  # nothing installed, the marker as it was

    prefix = subprocess.run(
        [built["interpreter"], "-I", "-c", "import sys, compressgate.registry; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert prefix == str(store / digest)  # compressgate is importable inside, from there

    listed = json.loads(cli("env", "list", "--envs", store, "--json").stdout)
    assert [e["lock_sha256"] for e in listed["environments"]] == [digest]
    assert listed["partial"] == []

    assert cli("env", "verify", lock, "--envs", store).exit_code == 0
    pip = [sys.executable, "-m", "pip", "--python", built["interpreter"]]
    subprocess.run([*pip, "uninstall", "-q", "-y", "packaging"], check=True)
    drifted = cli("env", "verify", lock, "--envs", store)
    assert drifted.exit_code == 5
    assert f"packaging: wanted {PACKAGING}, found not installed" in drifted.stdout

    other = tiny_lock(tmp_path / "other", f"packaging=={PACKAGING}\n# another lock\n")
    missing = cli("env", "verify", other, "--envs", store)
    assert missing.exit_code == 4
    assert "env create" in missing.stderr


@pytest.mark.parametrize(
    ("installer", "says"),
    [
        ("uv", "was not found in the package registry"),
        ("pip", "Could not find a version that satisfies the requirement"),
    ],
)
def test_an_unresolvable_lock_exits_5_naming_the_package_and_leaves_nothing(
    tmp_path: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch, installer: str, says: str
) -> None:
    monkeypatch.setenv(envs.INSTALLER_ENV, installer)
    lock, store = tiny_lock(tmp_path, "compressgate-no-such-package==1.0\n"), tmp_path / "envs"
    result = cli("env", "create", lock, "--envs", store)
    assert result.exit_code == 5
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert f"{installer} install failed on compressgate-no-such-package==1.0" in error
    assert says in error
    assert sorted(p.name for p in store.iterdir()) == [f".{envs.lock_digest(lock)}.lock"]


def test_a_folder_without_the_marker_is_never_used(tmp_path: Path) -> None:
    lock, store = tiny_lock(tmp_path), tmp_path / "envs"
    (store / envs.lock_digest(lock) / "bin").mkdir(parents=True)
    assert envs.find(lock, store) is None
    with pytest.raises(EnvironmentMismatch, match="not a complete environment"):
        envs.ensure(lock, store)


@pytest.mark.slow
def test_a_build_killed_half_way_is_never_used_and_the_next_build_sweeps_it(
    tmp_path: Path, cli: Invoke
) -> None:
    lock, store = tiny_lock(tmp_path), tmp_path / "envs"
    digest = envs.lock_digest(lock)
    command = [str(Path(sys.executable).parent / "compressgate"), "env", "create", str(lock)]
    build = subprocess.Popen(
        [*command, "--envs", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Kill it (and pip under it) once the venv exists and the lock is being installed.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = list(store.glob(f".build-{digest[:16]}-*/lib/python3.11/site-packages/*"))
        if partial:
            break
        time.sleep(0.05)
    assert partial, "the build never got as far as pip"
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()
    assert not (store / digest).exists()
    assert envs.find(lock, store) is None
    listed = json.loads(cli("env", "list", "--envs", store, "--json").stdout)
    assert listed["environments"] == []
    assert len(listed["partial"]) == 1

    rebuilt = envs.ensure(lock, store)
    assert rebuilt.built and rebuilt.path == store / digest
    assert list(store.glob(".build-*")) == []


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_hashed_lock_is_installed_with_require_hashes(
    tmp_path: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch, installer: str
) -> None:
    monkeypatch.setenv(envs.INSTALLER_ENV, installer)
    wrong = "0" * 64
    lock = tiny_lock(tmp_path, f"packaging=={PACKAGING} --hash=sha256:{wrong}\n")
    result = cli("env", "create", lock, "--envs", tmp_path / "envs")
    assert result.exit_code == 5
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert f"{installer} install failed on packaging=={PACKAGING}: its hash does not match" in error
    # With the hash the installer reported, the same lock builds, hash-checked.
    got = error.rsplit("(got ", 1)[1].rstrip(")")
    good = tiny_lock(tmp_path / "good", f"packaging=={PACKAGING} --hash=sha256:{got}\n")
    built = envs.ensure(good, tmp_path / "envs")
    assert built.built and built.marker["require_hashes"] is True
    assert built.marker["installer"].split()[0] == installer
