"""README.md and docs/*.md say only what is true: their samples run and their excerpts match.

The markup (docs/README.md, "Writing samples", says the same for authors):

- A ```console block is a shell sample: `$ command` lines, each followed by the output it must
  print (stdout and stderr together). In the output, `...` matches anything, lines included
  (doctest's ELLIPSIS), for run ids, digests, timings and long tables; trailing spaces do not
  count; a command that exits non-zero ends its output with the line `[exit N]`. A command
  continues on the next line after a trailing backslash, and a here-document (`<<'EOF'`) runs
  to its terminator.
- Every console block is run, in order with the other blocks of its session, by one bash shell
  whose working directory, HOME and TMPDIR are a fresh temporary folder and whose PATH starts
  with the folder of the `compressgate` console script (as a user who ran `make demo` and put
  .venv/bin on PATH). A file's blocks are one session; `<!-- session: NAME -->` right above a
  block puts it in session NAME instead, which runs README.md's blocks first, then docs/*.md
  in file-name order (so the docs continue the README's tour in the same folder).
- `<!-- not run: REASON -->` right above a console block shows it without running it; the
  reason is required. A console block with neither is an error, and so is a shell fence
  (```sh, ```bash, ```shell): commands are shown as console blocks, run or said not to be.
- `<!-- file: PATH -->` right above any other fenced block says the block is the text of PATH
  (relative to the repository) or a verbatim excerpt of it; a line `...` stands for lines left
  out.
- `<!-- layers: pyproject.toml -->` right above a ```text block says its lines are the layers of
  the import-linter contract, top to bottom, each line's first column (up to two spaces) being
  the contract's entry.

The sessions are marked slow (the tour trains the digits recipe once, as `make demo` does); the
markup, excerpts, links, paths, command table, layers and exit codes are checked fast.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sysconfig
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_LIMIT = 300
SHELL_FENCES = {"sh", "bash", "shell", "zsh"}
MARKER = re.compile(r"^<!--\s*(?P<key>[a-z ]+):\s*(?P<value>.*?)\s*-->\s*$")
MARKER_KEYS = {"not run", "session", "file", "layers"}
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)\s*$")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>\w+)\1")
EXIT_LINE = "[exit {code}]"
SESSION_TIMEOUT_S = 1800  # the tour's submit trains three seeds: about a minute on a quiet machine


def markdown_files() -> list[Path]:
    """README.md first, then docs/*.md by name: the order sessions run in."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class Block:
    """A fenced block of a Markdown file and the markers right above it."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    markers: dict[str, str]

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        markers: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (marker := MARKER.match(lines[j])):
            markers[marker["key"]] = marker["value"]
            j -= 1
        fence = opening["fence"]
        end = i + 1
        while end < len(lines) and not (
            lines[end].startswith(fence[0] * len(fence)) and not lines[end].strip(fence[0])
        ):
            end += 1
        assert end < len(lines), f"{rel(path)}:{i + 1}: a fence that is never closed"
        yield Block(path, i + 1, opening["lang"], "\n".join(lines[i + 1 : end]), markers)
        i = end + 1


def all_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks(path)]


@dataclass(frozen=True)
class Command:
    line: int
    source: str
    expected: str


def commands(block: Block) -> list[Command]:
    """The `$ command` lines of a console block, each with the output it expects."""
    lines = block.text.splitlines()
    assert lines and lines[0].startswith("$ "), f"{block.where}: a console block starts with '$ '"
    found: list[Command] = []
    i = 0
    while i < len(lines):
        start = i
        source = [lines[i][2:]]
        heredoc = HEREDOC.search(source[0])
        while source[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            source.append(lines[i])
        if heredoc:
            while i + 1 < len(lines) and lines[i].strip() != heredoc["word"]:
                i += 1
                source.append(lines[i])
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        line = block.line + 1 + start
        found.append(Command(line, "\n".join(source), "\n".join(output)))
    return found


@dataclass
class Session:
    name: str
    blocks: list[Block] = field(default_factory=list)


def sessions() -> dict[str, Session]:
    found: dict[str, Session] = {}
    for block in all_blocks():
        if block.lang != "console" or "not run" in block.markers:
            continue
        name = block.markers.get("session") or rel(block.path)
        found.setdefault(name, Session(name)).blocks.append(block)
    return found


# --- fast: markup, excerpts, links, paths, the command table, layers, exit codes ----------------


def test_every_console_block_is_run_or_says_why_it_is_not() -> None:
    problems = []
    for block in all_blocks():
        unknown = set(block.markers) - MARKER_KEYS
        if unknown:
            problems.append(f"{block.where}: unknown marker(s) {sorted(unknown)}")
        if block.lang in SHELL_FENCES:
            problems.append(f"{block.where}: a ```{block.lang} block: write it as ```console")
        if block.lang != "console":
            if "not run" in block.markers or "session" in block.markers:
                problems.append(f"{block.where}: run markers on a ```{block.lang} block")
            continue
        if "file" in block.markers:
            problems.append(f"{block.where}: a console block is run, not compared to a file")
        if "not run" in block.markers and not block.markers["not run"]:
            problems.append(f"{block.where}: `not run:` needs a reason")
        if "not run" in block.markers and "session" in block.markers:
            problems.append(f"{block.where}: both `not run` and `session`")
        try:
            commands(block)
        except AssertionError as err:
            problems.append(str(err))
    assert problems == []


def test_the_console_blocks_mostly_run() -> None:
    """The markup is not a way out: most samples, and the whole tour, are run."""
    console = [b for b in all_blocks() if b.lang == "console"]
    run = [b for b in console if "not run" not in b.markers]
    assert len(run) >= 20 and len(run) > len(console) / 2, (len(run), len(console))
    tour = sessions()["tour"]
    assert tour.blocks[0].path == ROOT / "README.md"


def excerpt_matches(excerpt: str, text: str) -> bool:
    """The excerpt's chunks (split at `...` lines) are runs of whole lines of text, in order."""
    lines = text.splitlines()
    position = 0
    for chunk in re.split(r"(?m)^\.\.\.$\n?", excerpt):
        wanted = chunk.splitlines()
        if not wanted:
            continue
        for start in range(position, len(lines) - len(wanted) + 1):
            if lines[start : start + len(wanted)] == wanted:
                position = start + len(wanted)
                break
        else:
            return False
    return True


def test_blocks_that_name_a_file_are_verbatim_excerpts_of_it() -> None:
    named = [b for b in all_blocks() if "file" in b.markers]
    assert named, "no block names a file"
    problems = []
    for block in named:
        target = ROOT / block.markers["file"]
        if not target.is_file():
            problems.append(f"{block.where}: {block.markers['file']} does not exist")
        elif not excerpt_matches(block.text, target.read_text(encoding="utf-8")):
            problems.append(f"{block.where}: not a verbatim excerpt of {block.markers['file']}")
    assert problems == []


def test_excerpts_are_found_line_by_line_in_order() -> None:
    text = "a\nb\nc\nd\n"
    assert excerpt_matches("b\nc", text)
    assert excerpt_matches("a\n...\nd", text)
    assert not excerpt_matches("c\nb", text)
    assert not excerpt_matches("b\nd", text)
    assert not excerpt_matches("a\n...\nb\n...\na", text)
    assert not excerpt_matches(" b", text)


LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
CODE = re.compile(r"`(?P<code>[^`\n]+)`")
REPO_PATH = re.compile(
    r"^(?:\.ci|\.github|bench|docs|evaluators|gates|recipes|registry|reports|tests)/[\w./*-]*$"
)


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a Markdown file outside fenced blocks."""
    inside: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        opening = FENCE.match(line)
        if inside is None and opening:
            inside = opening["fence"]
        elif inside is not None and line.strip() and not line.strip(inside[0]):
            inside = None
        elif inside is None:
            yield number, line


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings."""
    found = set()
    for _, line in prose(path):
        heading = re.match(r"^#{1,6} (?P<title>.+)$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading["title"].strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def test_links_and_repository_paths_in_the_docs_exist() -> None:
    problems = []
    for path in markdown_files():
        for number, line in prose(path):
            for link in LINK.finditer(line):
                target, _, anchor = link["target"].partition("#")
                if re.match(r"^[a-z]+:", target):
                    continue
                linked = (path.parent / target).resolve() if target else path
                if not linked.exists():
                    problems.append(f"{rel(path)}:{number}: link to missing {target}")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    problems.append(f"{rel(path)}:{number}: no heading #{anchor} in {target}")
            for code in CODE.finditer(line):
                named = code["code"]
                if not REPO_PATH.match(named):
                    continue
                matches = list(ROOT.glob(named.rstrip("/"))) if "*" in named else []
                if not matches and not (ROOT / named).exists():
                    problems.append(f"{rel(path)}:{number}: `{named}` does not exist")
    assert problems == []


def test_readme_is_short_and_reaches_every_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_LIMIT
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert {"architecture.md", "guarantees.md", "benchmarks.md", "README.md"} <= set(pages)
    linked = {Path(m["target"].split("#")[0]).name for m in LINK.finditer(readme)}
    assert [p for p in pages if p not in linked] == []
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = {Path(m["target"].split("#")[0]).name for m in LINK.finditer(index)}
    assert [p for p in pages if p != "README.md" and p not in linked] == []


def cli_commands() -> set[str]:
    import click

    from compressgate.registry.cli import cli

    found = set()

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, f"{prefix}{name} ")
            else:
                found.add(f"{prefix}{name}")

    walk(cli, "")
    return found


def test_readme_command_table_lists_every_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set()
    for line in readme.splitlines():
        row = re.match(r"^\| `(?P<command>[a-z][a-z -]*?)(?: [A-Z\[(-].*?)?` \|", line)
        if row:
            listed.add(row["command"].strip())
    assert listed == cli_commands()


def test_architecture_layers_are_the_import_contract() -> None:
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layers = contract["tool"]["importlinter"]["contracts"][0]["layers"]
    shown = [b for b in blocks(DOCS / "architecture.md") if "layers" in b.markers]
    assert len(shown) == 1, "docs/architecture.md shows the layers once"
    entries = [re.split(r"\s{2,}", line.strip())[0] for line in shown[0].text.splitlines()]
    assert entries == [" | ".join(part.strip() for part in layer.split("|")) for layer in layers]


def test_architecture_exit_codes_are_the_error_trees() -> None:
    from compressgate.registry.kernel import errors

    constants = {
        name: value
        for name, value in vars(errors).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    rows = {
        m["name"]: int(m["code"])
        for m in re.finditer(r"(?m)^\| (?P<code>\d+) \| `(?P<name>EXIT_[A-Z_]+)` \|", text)
    }
    assert rows == constants


# --- slow: run every session -------------------------------------------------------------------


def script(session: Session) -> tuple[str, list[tuple[Block, Command]]]:
    """One bash script for the session: each command between numbered markers."""
    steps = [(block, command) for block in session.blocks for command in commands(block)]
    parts = []
    for number, (_, command) in enumerate(steps):
        parts.append(f"printf '\\n@@cg-sample-start {number}@@\\n'")
        parts.append(f"{{\n{command.source}\n}} </dev/null 2>&1")
        parts.append(f"printf '\\n@@cg-sample-exit {number} %d@@\\n' \"$?\"")
    return "\n".join(parts) + "\n", steps


def normalised(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines) + "\n"


def user_environment(home: Path) -> dict[str, str]:
    scripts = Path(sysconfig.get_path("scripts"))
    assert (scripts / "compressgate").exists(), f"no compressgate console script in {scripts}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPRESSGATE_")}
    env.update(
        PATH=f"{scripts}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        HOME=str(home),
        TMPDIR=str(home),
        PWD=str(home),
        LC_ALL="C.UTF-8",
        LANG="C.UTF-8",
        TERM="dumb",
    )
    for name in ("VIRTUAL_ENV", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    return env


def run_session(session: Session, home: Path) -> list[str]:
    """Run a session's commands in one bash shell in `home`; what differs from the docs."""
    body, steps = script(session)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", body],
        cwd=home,
        env=user_environment(home),
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT_S,
        check=False,
    )
    assert done.stderr == "", done.stderr
    outputs = re.split(r"\n?@@cg-sample-start \d+@@\n", done.stdout)[1:]
    assert len(outputs) == len(steps), f"the session stopped early:\n{done.stdout[-3000:]}"
    checker = doctest.OutputChecker()
    failures = []
    for (block, command), raw in zip(steps, outputs, strict=True):
        ended = re.search(r"\n?@@cg-sample-exit \d+ (?P<code>\d+)@@\n?$", raw)
        assert ended, raw
        got = raw[: ended.start()].rstrip("\n")
        if ended["code"] != "0":
            got += "\n" + EXIT_LINE.format(code=ended["code"])
        want, got = normalised(command.expected), normalised(got)
        if not checker.check_output(want, got, doctest.ELLIPSIS):
            example = doctest.Example(command.source, want)
            difference = checker.output_difference(example, got, doctest.ELLIPSIS)
            failures.append(f"{rel(block.path)}:{command.line}: $ {command.source}\n{difference}")
    return failures


def test_a_session_keeps_its_shell_and_compares_output_and_exit_codes(tmp_path: Path) -> None:
    text = """$ export WORD=kept && mkdir sub && cd sub
$ echo "$WORD in $(basename "$PWD"), home $HOME"
kept in sub, home ...
$ printf 'a\\nb  \\nc\\n'; echo oops >&2
a
...
oops
$ cat <<'END'
two lines
END
two lines
$ false
[exit 1]
$ echo right
wrong"""
    block = Block(ROOT / "README.md", 1, "console", text, {})
    failures = run_session(Session("selftest", [block]), tmp_path)
    assert len(failures) == 1, failures
    assert failures[0].startswith("README.md:15: $ echo right")
    assert "Expected:\n    wrong\nGot:\n    right" in failures[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(sessions()))
def test_console_session_prints_what_the_docs_show(name: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    failures = run_session(sessions()[name], home)
    assert not failures, "\n".join(failures)
