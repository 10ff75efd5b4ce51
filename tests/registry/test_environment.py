"""Checking the running environment against a lock file."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressgate.registry.kernel.errors import EnvironmentMismatch, ManifestError
from compressgate.registry.run import environment


def test_lock_lines_that_are_not_exact_pins_are_named_with_their_line(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# comment\nclick==8.5.1\nrich>=13\nnot a requirement!\n")
    with pytest.raises(ManifestError) as caught:
        environment.read_lock(lock)
    assert [(i.line, i.message.split(";")[0]) for i in caught.value.issues] == [
        (3, "'rich>=13' is not an exact pin"),
        (4, caught.value.issues[1].message.split(";")[0]),
    ]
    assert caught.value.issues[1].message.startswith("not a requirement")


def test_a_local_version_label_matches_a_pin_without_one(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("torch==2.13.0\nClick==8.5.1\n")  # installed: 2.13.0+cpu; names normalised
    assert environment.check(environment.read_lock(lock)) == ()


def test_strict_mismatch_lists_every_package_and_lenient_returns_them(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("torch==2.12.0\nclick==8.5.1\nnot-installed-pkg==1.0\n")
    with pytest.raises(EnvironmentMismatch) as caught:
        environment.enforce(lock, strict=True)
    message = str(caught.value)
    assert "torch: wanted 2.12.0, found 2.13.0+cpu" in message
    assert "not-installed-pkg: wanted 1.0, found not installed" in message
    assert "click" not in message
    assert caught.value.exit_code == 5
    lenient = environment.enforce(lock, strict=False)
    assert [m.package for m in lenient] == ["torch", "not-installed-pkg"]
