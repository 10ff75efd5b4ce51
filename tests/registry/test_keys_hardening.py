"""`keys generate` and private keys under attack or by accident: keys encrypted with a passphrase
and opened through $COMPRESSGATE_PASSPHRASE_FILE, a key refused inside a git work tree that does
not ignore it, symbolic links never written through, mode 0600 whatever the umask."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from compressgate.recipes.signing import envelope_path
from compressgate.registry.kernel.errors import ManifestError
from compressgate.registry.kernel.keys import (
    PASSPHRASE_ENV,
    generate_keypair,
    load_private_key,
)
from tests.helpers.workspace import Invoke, Workspace

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def passphrase_file(folder: Path, text: str = "correct horse battery staple\n") -> Path:
    path = folder / "passphrase"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    return lines[0]


def encrypted_author_key(workspace: Workspace, tmp_path: Path, cli: Invoke) -> tuple[Path, Path]:
    """A new ml-platform key, encrypted, made by the CLI and added to the trust file."""
    secret = passphrase_file(tmp_path)
    made = cli(
        "keys", "generate", "--owner", "ml-platform", "--out", tmp_path / "enc",
        "--passphrase-file", secret,
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    assert "(private, mode 0600, encrypted)" in made.stdout
    public = tmp_path / "enc" / "ml-platform.pub.json"
    added = cli(
        "trust", "add", "--trust", workspace.trust, "--owner", "ml-platform", "--key", public,
        "--role", "author",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    return tmp_path / "enc" / "ml-platform.key", secret


def test_an_encrypted_key_signs_a_recipe_with_the_passphrase_from_the_environment(
    workspace: Workspace, tmp_path: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = encrypted_author_key(workspace, tmp_path, cli)
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    monkeypatch.setenv(PASSPHRASE_ENV, str(secret))
    signed = cli("recipe", "sign", workspace.recipe, "--key", key)
    assert signed.exit_code == 0, signed.stderr
    verified = cli("recipe", "verify", workspace.recipe, "--trust", workspace.trust)
    assert verified.exit_code == 0, verified.stderr
    # The same passphrase file does not get in the way of an unencrypted key.
    assert load_private_key(workspace.key("ml-lead")).public.keyid
    # A Python caller may pass the passphrase itself.
    monkeypatch.delenv(PASSPHRASE_ENV)
    opened = load_private_key(key, passphrase=b"correct horse battery staple")
    assert opened.public == load_private_key(key, passphrase=secret.read_bytes().strip()).public


def test_an_encrypted_key_without_a_passphrase_is_exit_2_naming_the_variable(
    workspace: Workspace, tmp_path: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = encrypted_author_key(workspace, tmp_path, cli)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    refused = cli("recipe", "sign", workspace.recipe, "--key", key)
    assert refused.exit_code == 2
    line = one_error_line(refused.stderr)
    assert line == (
        f"Error: {key} is encrypted: set COMPRESSGATE_PASSPHRASE_FILE=FILE, a file whose first "
        "line is its passphrase"
    )
    assert not envelope_path(workspace.recipe).exists()


def test_a_wrong_passphrase_is_exit_2_in_one_line(
    workspace: Workspace, tmp_path: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = encrypted_author_key(workspace, tmp_path, cli)
    wrong = tmp_path / "wrong"
    wrong.write_text("Correct horse battery staple\n", encoding="utf-8")
    wrong.chmod(0o600)
    monkeypatch.setenv(PASSPHRASE_ENV, str(wrong))
    refused = cli("recipe", "sign", workspace.recipe, "--key", key)
    assert refused.exit_code == 2
    assert one_error_line(refused.stderr) == f"Error: wrong passphrase for {key}"
    assert not envelope_path(workspace.recipe).exists()
    with pytest.raises(ManifestError, match="wrong passphrase"):
        load_private_key(key, passphrase=b"nope")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read it (No such file or directory)"),
        ("\nsecret\n", "its first line is empty"),
    ],
)
def test_a_missing_or_empty_passphrase_file_is_exit_2_naming_it(
    tmp_path: Path, cli: Invoke, content: str | None, expected: str
) -> None:
    secret = tmp_path / "passphrase"
    if content is not None:
        passphrase_file(tmp_path, content)
    out = tmp_path / "keys"
    result = cli(
        "keys", "generate", "--owner", "ml-lead", "--out", out, "--passphrase-file", secret
    )
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == f"Error: passphrase file {secret}: {expected}"
    assert not (out / "ml-lead.key").exists()


def test_a_passphrase_file_others_can_read_is_refused(tmp_path: Path, cli: Invoke) -> None:
    secret = passphrase_file(tmp_path)
    secret.chmod(0o644)
    result = cli(
        "keys", "generate", "--owner", "ml-lead", "--out", tmp_path / "k", "--passphrase-file",
        secret,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "the passphrase file is readable by others (mode 0644)" in result.stderr
    assert f"hint: chmod 600 {secret}" in result.stderr


def test_only_the_first_line_is_the_passphrase(tmp_path: Path) -> None:
    secret = passphrase_file(tmp_path, "s3cret\r\nignored\n")
    from compressgate.registry.kernel.keys import read_passphrase

    assert read_passphrase(secret) == b"s3cret"


def git_repo(folder: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--", str(folder)], check=True)
    return folder


@needs_git
def test_a_private_key_inside_a_git_work_tree_that_does_not_ignore_it_is_refused(
    tmp_path: Path, cli: Invoke
) -> None:
    repo = git_repo(tmp_path / "repo")
    out = repo / "keys"
    refused = cli("keys", "generate", "--owner", "ml-lead", "--out", out)
    assert refused.exit_code == 2
    assert one_error_line(refused.stderr) == (
        f"Error: {out / 'ml-lead.key'} is inside the git work tree {repo.resolve()}, which does "
        "not ignore it: add it to .gitignore, or pass --allow-in-git"
    )
    assert not out.exists()
    allowed = cli("keys", "generate", "--owner", "ml-lead", "--out", out, "--allow-in-git")
    assert allowed.exit_code == 0, allowed.stderr
    assert (out / "ml-lead.key").is_file()


@needs_git
def test_a_private_key_the_work_tree_ignores_is_written(tmp_path: Path, cli: Invoke) -> None:
    repo = git_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("*.key\n", encoding="utf-8")
    (repo / "keys").mkdir()
    result = cli("keys", "generate", "--owner", "ml-lead", "--out", repo / "keys")
    assert result.exit_code == 0, result.stderr
    assert (repo / "keys" / "ml-lead.key").is_file()
    # Only the private key must be ignored: its public half may be committed.
    assert (repo / "keys" / "ml-lead.pub.json").is_file()


@needs_git
def test_a_pinned_git_dir_does_not_decide_for_a_folder_outside_it(
    tmp_path: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As inside a git hook, where $GIT_DIR names the hook's repository."""
    repo = git_repo(tmp_path / "repo")
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    result = cli("keys", "generate", "--owner", "ml-lead", "--out", tmp_path / "elsewhere")
    assert result.exit_code == 0, result.stderr


def test_generate_keypair_never_asks_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library writes where it is told: the refusal is the command's."""

    def no_git(*args: object, **kwargs: object) -> None:
        raise AssertionError("generate_keypair ran a subprocess")

    monkeypatch.setattr(subprocess, "run", no_git)
    private, _, _ = generate_keypair("ml-lead", tmp_path / "keys")
    assert private.is_file()


@pytest.mark.parametrize("target", ["missing", "file"])
def test_a_symbolic_link_at_the_key_path_is_never_written_through(
    tmp_path: Path, cli: Invoke, target: str
) -> None:
    out = tmp_path / "keys"
    out.mkdir()
    pointed = tmp_path / "elsewhere"
    if target == "file":
        pointed.write_text("do not touch\n", encoding="utf-8")
    (out / "ml-lead.key").symlink_to(pointed)
    result = cli("keys", "generate", "--owner", "ml-lead", "--out", out)
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (
        f"Error: {out / 'ml-lead.key'} is a symbolic link: keys are written only as new files, "
        "never through one"
    )
    assert (
        (pointed.read_text(encoding="utf-8") == "do not touch\n")
        if target == "file"
        else (not pointed.exists())
    )
    assert not (out / "ml-lead.pub.json").exists()


def test_a_dangling_symbolic_link_as_the_folder_is_exit_2_without_a_traceback(
    tmp_path: Path,
) -> None:
    """The review's case, through the console script: exit 2 and one line, not exit 70."""
    link = tmp_path / "keys"
    link.symlink_to(tmp_path / "nowhere")
    done = subprocess.run(
        [sys.executable, "-m", "compressgate.registry.cli", "keys", "generate", "--owner",
         "ml-lead", "--out", str(link)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={**os.environ, "COMPRESSGATE_LOG_DIR": str(tmp_path / "logs")},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        f"Error: {link} is a symbolic link to {tmp_path / 'nowhere'}, which does not exist"
    )
    assert not (tmp_path / "nowhere").exists()


def test_keys_are_owner_only_under_umask_000(tmp_path: Path, cli: Invoke) -> None:
    before = os.umask(0)
    try:
        result = cli("keys", "generate", "--owner", "ml-lead", "--out", tmp_path / "keys")
    finally:
        os.umask(before)
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "ml-lead.key").stat().st_mode) == 0o600


def test_an_existing_key_is_kept_and_the_command_says_so(tmp_path: Path, cli: Invoke) -> None:
    out = tmp_path / "keys"
    assert cli("keys", "generate", "--owner", "ml-lead", "--out", out).exit_code == 0
    before = (out / "ml-lead.key").read_bytes()
    again = cli("keys", "generate", "--owner", "ml-lead", "--out", out)
    assert again.exit_code == 2
    assert again.stderr.splitlines()[0] == f"Error: {out / 'ml-lead.key'} already exists"
    assert (out / "ml-lead.key").read_bytes() == before
