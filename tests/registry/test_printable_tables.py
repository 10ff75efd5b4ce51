"""What a person typed reaches the terminal shown, not obeyed (`compressgate.registry.cli.tables`).

A reason, an actor, a recipe or signer name holding an ANSI escape, a carriage return, a bidi
override or a line break is printed as its escape (`\\x1b`, `\\r`, `\\u202e`, `\\n`) in every
line and table cell, and rich markup in it stays text (no hyperlink escape). `--json` stays
JSON: the same values, every control character escaped by the encoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressgate.registry.catalog.records import RunListing
from compressgate.registry.cli.options import json_printable, printable
from compressgate.registry.cli.tables import runs_table, say, shown
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.workspace import Invoke

RUN = "run-20261123T100000Z-aaaaaa"
VARIANT = f"{RUN}/0/int8"
# An escape that clears the screen, a hyperlink (OSC 8), a carriage return that hides what came
# before, a bidi override, a line that fakes a second move, and rich markup.
HOSTILE = (
    "ok\x1b[2J\x1b]8;;https://evil.example\x07click\x1b]8;;\x07\rhidden\u202eesrever\n"
    "#99 2026-01-01T00:00:00Z promote production -> evil [link=https://evil.example]x[/link]"
)
STEERING = ("\x1b", "\x07", "\r", "\u202e")


def raw_steering(text: str) -> list[str]:
    return [c for c in STEERING if c in text]


@pytest.fixture
def catalog(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    record_run(url, RUN, 0.97, recipe_file(tmp_path / "recipe.yaml"))
    return url


def test_alias_history_shows_the_escapes_of_a_hostile_reason_and_actor(
    catalog: str, cli: Invoke
) -> None:
    moved = cli("promote", VARIANT, "--alias", "production", "--catalog", catalog,
                "--reason", HOSTILE, "--actor", "mal\x1b[31mlory\u202e")  # fmt: skip
    assert moved.exit_code == 0, moved.stderr
    history = cli("alias", "history", "production", "--catalog", catalog)
    assert history.exit_code == 0, history.stderr
    for out in (moved.stdout, history.stdout):
        assert raw_steering(out) == []
        [line] = out.splitlines()  # the reason's line break draws no line of its own
        assert "by mal\\x1b[31mlory\\u202e: ok\\x1b[2J\\x1b]8;;https://evil.example\\x07" in line
        assert "\\rhidden\\u202eesrever\\n#99 2026-01-01T00:00:00Z promote production" in line
    # --json: the same values back, every control character escaped by the encoder.
    as_json = cli("alias", "history", "production", "--catalog", catalog, "--json")
    assert raw_steering(as_json.stdout) == []
    [move] = json.loads(as_json.stdout)
    assert (move["reason"], move["actor"]) == (HOSTILE, "mal\x1b[31mlory\u202e")
    assert "\\u001b[2J" in as_json.stdout


def test_a_table_cell_shows_escapes_and_never_reads_rich_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listing = RunListing(
        run_id=RUN,
        recipe="digits\x1b[2J",
        version=1,
        recipe_sha256="ab" * 32,
        status="succeeded",
        started_at="2026-11-23T10:00:00Z",
        finished_at=None,
        seeds=[0],
        signers=["[link=https://evil.example]ml-platform[/link]", "\u202eevil\r"],
    )
    runs_table([listing])
    out = capsys.readouterr().out
    assert raw_steering(out) == []
    assert "digits\\x1b[2J v1" in out
    assert "[link=https://evil.example]ml-platform[/link]" in out  # as typed, not a link
    assert "\\u202eevil\\r" in out


def test_a_line_is_one_line_and_an_error_line_keeps_its_own_breaks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    say("reason: a\nb\tc\u2028d\x9b31m")
    assert capsys.readouterr().out == "reason: a\\nb\\tc\\u2028d\\x9b31m\n"
    assert shown("\x00\x7f\u2066") == "\\x00\\x7f\\u2066"
    assert printable("two\nlines\x1b") == "two\nlines\\x1b"
    # JSON's own escapes: the value is unchanged, DEL and (without ensure_ascii) C1 controls
    # and bidi overrides written as \u escapes.
    for ensure_ascii in (True, False):
        text = json_printable(json.dumps({"r": "a\x7f\x85\u202e\x1b"}, ensure_ascii=ensure_ascii))
        assert raw_steering(text) == [] and "\x7f" not in text and "\x85" not in text
        assert json.loads(text) == {"r": "a\x7f\x85\u202e\x1b"}


def test_a_report_on_stdout_shows_a_hostile_description_the_file_keeps_its_bytes(
    cli: Invoke, tmp_path: Path
) -> None:
    """A recipe's description with an escape and a bidi override (YAML's `\\e`, `\\u202e`):
    the model card printed to stdout shows them escaped; written with -o, the report's own
    bytes are recorded and verify. The read commands print none of it raw."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    recipe = recipe_file(tmp_path / "recipe.yaml")
    text = recipe.read_text().replace(
        "owners: [ml-platform]}", 'owners: [ml-platform], description: "a\\e[2Jb\\u202ec"}'
    )
    recipe.write_text(text)
    record_run(url, RUN, 0.97, recipe)
    card = cli("report", RUN, "--format", "card", "--catalog", url)
    assert card.exit_code == 0, card.stderr
    assert raw_steering(card.stdout) == [] and "a\\x1b\\[2Jb\\u202ec" in card.stdout
    out = tmp_path / "card.md"
    written = cli("report", RUN, "--format", "card", "-o", out, "--catalog", url)
    assert written.exit_code == 0, written.stderr
    assert "\x1b" in out.read_text(encoding="utf-8")  # the document as rendered
    verified = cli("audit", "verify", "--skip-artifacts", "--report", out, "--catalog", url)
    assert verified.exit_code == 0, verified.stderr
    for args in (
        ("review", "status", RUN),
        ("catalog", "list"),
        ("catalog", "show", RUN),
        ("catalog", "show", VARIANT),
        ("catalog", "lineage", VARIANT),
        ("report", RUN, "--format", "md"),
        ("report", RUN, "--format", "json"),
    ):
        shown_out = cli(*args, "--catalog", url)
        assert shown_out.exit_code == 0, (args, shown_out.stderr)
        assert raw_steering(shown_out.stdout + shown_out.stderr) == [], args
