"""Bad input (issue 8): every malformed manifest, trust file, key, envelope and command line is
refused with its exit code (2 bad input, 3 integrity), one line of message, no traceback, and
nothing written (catalog rows and files unchanged). The scenarios are
`tests/helpers/harden/bad_input.py`'s; `python bench/hardening.py --only bad_input` runs them at
the issue's scale (500 generated manifests; 50 with `--quick`, in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as fixed_seed

from tests.helpers.harden import bad_input as bad
from tests.helpers.harden.bad_input import Case, Checked, Setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    yield bad.make_setup(tmp_path_factory.mktemp("bad-input"))


def held(checked: Checked) -> None:
    assert checked.held, str(checked)
    assert len(checked.lines) == 1 and checked.lines[0].startswith("Error: ")


def _validate_many(setup: Setup, examples: int) -> None:
    @fixed_seed(20261123)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=bad.manifests())
    def check(case: Case) -> None:
        held(bad.check_validate(setup, case))

    check()


def test_generated_manifests_are_refused_in_one_line(setup: Setup) -> None:
    _validate_many(setup, 100)


def test_every_mutation_family_is_generated() -> None:
    cases = bad.generated(100, 0)
    assert len(cases) == 100
    assert {c.family for c in cases} == set(bad.FAMILIES)


def test_a_mutation_changes_only_what_it_says() -> None:
    base = bad.base_data()
    for path, _, _ in bad.FIELDS:
        assert bad._get(base, path) is not None or path == ("gates", 0, "min")
    mutated = bad._set(base, ("stages", 0, "sparsity"), 2.0)
    assert mutated["stages"][0]["sparsity"] == 2.0
    assert {k: v for k, v in mutated.items() if k != "stages"} == {
        k: v for k, v in base.items() if k != "stages"
    }
    assert base["stages"][0]["sparsity"] == 0.25  # a copy was changed, not the base


def test_the_unmutated_manifest_is_valid(setup: Setup) -> None:
    ok = Case("none", "the base", bad.base_text().encode())
    checked = bad.check_validate(setup, ok)
    assert checked.code == 0, str(checked)
    assert checked.lines == ()
    assert checked.stdout.startswith(f"ok {setup.bad} (bad v1)")


# A sample of generated manifests, each signed as it is: `run` and `submit` refuse it (exit 2,
# or 3 when the author is no longer among the recipe's owners) before any catalog row or
# artifact exists.
RUN_SAMPLE = bad.generated(24, 7)


@pytest.mark.parametrize("case", RUN_SAMPLE[:18], ids=lambda c: f"{c.family}: {c.name}"[:60])
def test_a_signed_malformed_manifest_does_not_run(setup: Setup, case: Case) -> None:
    held(bad.check_run(setup, case))


@pytest.mark.parametrize("case", RUN_SAMPLE[18:24], ids=lambda c: f"{c.family}: {c.name}"[:60])
def test_a_signed_malformed_manifest_is_not_submitted(setup: Setup, case: Case) -> None:
    held(bad.check_run(setup, case, command="submit"))


HAND = bad.hand_written()


@pytest.mark.parametrize("case", HAND, ids=[c.name for c in HAND])
def test_hand_written_manifest(setup: Setup, case: Case) -> None:
    held(bad.check_validate(setup, case))


@pytest.mark.parametrize("case", [c for c in HAND if len(c.data) < 8000], ids=lambda c: c.name)
def test_hand_written_manifest_signed_does_not_run(setup: Setup, case: Case) -> None:
    held(bad.check_run(setup, case))


def test_the_control_character_message_is_located(setup: Setup) -> None:
    case = Case("hand-written", "NUL", bad.base_text().replace("name: bad", "name: b\0ad").encode())
    checked = bad.check_validate(setup, case)
    assert checked.lines == (
        f"Error: {setup.bad}:4: invalid YAML: unacceptable character #x0000: "
        "special characters are not allowed",
    )


def test_aliases_within_bounds_still_work(setup: Setup) -> None:
    text = bad.base_text().replace(
        "    hidden: 16\n", "    hidden: 16\n    copy: &c [1, 2]\n    again: *c\n"
    )
    checked = bad.check_validate(setup, Case("none", "alias", text.encode()))
    assert checked.code == 0, str(checked)


TRUST_NAMES = [
    "empty",
    "a NUL byte",
    "recursive alias",
    "billion laughs",
    "deep nesting",
    "integer of 5,000 digits",
    "owners empty",
    "unknown role",
    "public key in capitals",
    "keyid not the key's",
    "one key, two owners",
    "owner listed twice",
    "not UTF-8",
    "python tag",
]


@pytest.mark.parametrize("command", ["validate", "verify", "run"])
def test_malformed_trust_files(setup: Setup, command: str) -> None:
    cases = bad.trust_cases(setup)
    assert {c.name for c in cases} >= set(TRUST_NAMES)
    for case in cases if command == "validate" else [c for c in cases if c.name in TRUST_NAMES]:
        held(bad.check_trust(setup, case, command))


def test_malformed_private_keys(setup: Setup) -> None:
    cases = bad.private_key_cases(setup)
    assert len(cases) >= 12
    for case in cases:
        held(bad.check_private_key(setup, case))


def test_malformed_public_keys(setup: Setup) -> None:
    cases = bad.public_key_cases(setup)
    assert len(cases) >= 15
    for case in cases:
        held(bad.check_public_key(setup, case))


def test_broken_envelopes_are_integrity_failures(setup: Setup) -> None:
    cases = bad.envelope_cases(setup)
    assert len(cases) >= 25
    for case in cases:
        assert case.code == 3
        held(bad.check_envelope(setup, case, "verify"))


@pytest.mark.parametrize("name", ["truncated", "sig one bit flipped", "signed payload not JSON"])
def test_a_broken_envelope_stops_run_before_the_catalog(setup: Setup, name: str) -> None:
    (case,) = [c for c in bad.envelope_cases(setup) if c.name == name]
    held(bad.check_envelope(setup, case, "run"))


@pytest.mark.parametrize("command", ["sign", "verify", "run"])
def test_an_envelope_that_is_a_directory(setup: Setup, command: str) -> None:
    checked = bad.check_envelope_directory(setup, command)
    held(checked)
    assert checked.code == (2 if command == "sign" else 3)


def test_malformed_arguments(setup: Setup) -> None:
    cases = bad.argument_cases(setup)
    assert len(cases) >= 25
    for name, args, says in cases:
        held(bad.check_argument(setup, name, args, says))


def test_usage_errors_are_one_line_in_the_console_script(setup: Setup) -> None:
    checked = bad.check_argument(
        setup, "unknown option", ["run", setup.recipe, "--frob"], "--frob", subprocess=True
    )
    held(checked)
    assert checked.lines == (
        "Error: No such option '--frob'. Did you mean '--force'? (see 'compressgate run --help')",
    )


def test_a_malformed_manifest_in_the_console_script(setup: Setup) -> None:
    case = bad.hand_written()[0]
    held(bad.check_validate(setup, case, subprocess=True))


def test_help_is_unchanged(setup: Setup) -> None:
    code, stdout, stderr, traceback = bad.invoke(["run", "--help"])
    assert (code, stderr, traceback) == (0, "", "")
    assert stdout.startswith("Usage: compressgate run [OPTIONS] FILE\n")


def test_a_miss_is_reported_with_its_reasons(tmp_path: Path) -> None:
    miss = Checked("x", 2, 1, ("a", "b"), "ValueError: v", ("new file f",), ("zz",))
    assert not miss.held
    assert "exit 1, not 2" in str(miss) and "2 message lines" in str(miss)
    assert "traceback: ValueError: v" in str(miss) and "wrote: new file f" in str(miss)
