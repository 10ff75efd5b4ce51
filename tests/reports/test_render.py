"""Reports rendered from a recorded run: every format, deterministic, escaped, self-contained."""

from __future__ import annotations

import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import add_owner_key
from compressgate.registry.authoring import init_example
from compressgate.registry.kernel.keys import generate_keypair, load_private_key, load_public_key
from tests.helpers.recipes import DEFAULTS, QUICK, write_recipe
from tests.helpers.workspace import GATE_OWNERS, Invoke, Workspace

HOSTILE = "<script>alert('x')</script> & \"quoted\" | piped"
GATES = """\
gates:
  - {name: accuracy, owner: ml-lead, after: int8, metric: accuracy, rule: non_inferior,
     margin: 0.15, approval: required}
  - {name: floor, owner: serving, metric: accuracy, rule: bound, min: 0.5}
"""


@dataclass(frozen=True)
class Recorded:
    root: Path
    store: Path
    run_id: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """A submitted QUICK run whose recipe description is hostile HTML."""
    from click.testing import CliRunner

    from compressgate.registry.cli import cli as group

    tmp = tmp_path_factory.mktemp("report")
    root = tmp / "ws"
    init_example(root, "digits")
    keys = tmp / "keys"
    for owner, role in [("ml-platform", "author"), *((o, "approver") for o in GATE_OWNERS)]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(root / "trust.yaml", owner, public, (role,))  # type: ignore[arg-type]
    text = QUICK
    for key, value in DEFAULTS.items():
        text = text.replace(key, value)
    described = json.dumps(HOSTILE)
    text = text.replace(
        "owners: [ml-platform]}", f"owners: [ml-platform], description: {described}}}"
    )
    recipe = root / "recipe.yaml"
    recipe.write_text(text + GATES)
    sign_recipe(recipe, load_private_key(keys / "ml-platform.key"))
    store = root / ".cg"
    result = CliRunner().invoke(group, ["submit", str(recipe), "--workspace", str(store), "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run"]["run_id"]
    return Recorded(root, store, run_id)


def render(cli: Invoke, recorded: Recorded, fmt: str, out: Path) -> bytes:
    result = cli(
        "report", recorded.run_id, "--format", fmt, "-o", out, "--workspace", recorded.store
    )
    assert result.exit_code == 0, result.stderr
    return out.read_bytes()


def test_markdown_outputs_keep_user_text_literal_as_the_ci_summary_does() -> None:
    """The model card and the Markdown report write free text (a description, a waiver's
    reason) with the CI summary's escaping: no HTML, no link or image (a tracking pixel in a
    model card), no emphasis, no extra table cell; on one line."""
    from compressgate.reports.render import _text

    shown = _text("<s>x</s> ![t](https://tracker.example/p.png)\n[click](javascript:1) **b** | c")
    assert shown == (
        "&lt;s&gt;x&lt;/s&gt; !\\[t\\](https://tracker.example/p.png) "
        "\\[click\\](javascript:1) \\*\\*b\\*\\* \\| c"
    )
    card = (Path(__file__).parents[2] / "reports" / "templates" / "card.md").read_text()
    assert "recipe.description | text" in card
    report = (Path(__file__).parents[2] / "reports" / "templates" / "report.md").read_text()
    assert "s.reason | text" in report


def test_a_report_takes_its_name_only_once_recorded(
    recorded: Recorded, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report is written aside, recorded, then renamed into place: when recording fails
    (as a kill would stop it) no file appears, and an older report at that path is untouched."""
    from compressgate.registry.catalog.repository import Catalog

    out = tmp_path / "report.md"
    out.write_bytes(b"an older report\n")

    def refuse(self: Catalog, entry: object) -> None:
        raise OSError("the catalog went away")

    monkeypatch.setattr(Catalog, "record_report", refuse)
    result = cli("report", recorded.run_id, "--format", "md", "-o", out, "--workspace",
                 recorded.store)  # fmt: skip
    assert result.exit_code != 0
    assert out.read_bytes() == b"an older report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temporary left
    monkeypatch.undo()
    assert render(cli, recorded, "md", out) != b"an older report\n"


@pytest.mark.parametrize("fmt", ["html", "md", "json", "card"])
def test_rendering_twice_gives_the_same_bytes(
    fmt: str, recorded: Recorded, cli: Invoke, tmp_path: Path
) -> None:
    first = render(cli, recorded, fmt, tmp_path / "a")
    second = render(cli, recorded, fmt, tmp_path / "b")
    assert first == second
    assert recorded.run_id.encode() in first


def test_the_html_report_is_self_contained_and_escapes_the_recipe(
    recorded: Recorded, cli: Invoke, tmp_path: Path
) -> None:
    page = render(cli, recorded, "html", tmp_path / "report.html").decode()
    assert "<script>" not in page  # the hostile description is inert text
    assert "&lt;script&gt;alert(" in page
    assert "Content-Security-Policy" in page
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>]*", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    assert re.search(r"<link\b|<img\b[^>]*src=\"(?!data:)|@import", page) is None
    for heading in ("Recipe identity", "Environment", "Gates", "Stages", "Lineage", "Catalog"):
        assert f"<h2>{heading}</h2>" in page
    assert "verified against" in page  # the signature, checked at render time
    assert "awaiting-approval" in page  # the gate waiting for ml-lead


def test_the_markdown_report_escapes_table_cells(
    recorded: Recorded, cli: Invoke, tmp_path: Path
) -> None:
    text = render(cli, recorded, "md", tmp_path / "report.md").decode()
    rows = [line for line in text.splitlines() if line.startswith("| accuracy |")]
    assert len(rows) == 1
    assert rows[0].count("|") - rows[0].count("\\|") == 10  # nine cells
    card = render(cli, recorded, "card", tmp_path / "card.md").decode()
    assert "<script>" not in card and "&lt;script&gt;" in card


def test_the_evidence_bundle_names_the_reports_sha256(
    recorded: Recorded, cli: Invoke, tmp_path: Path
) -> None:
    bundle = json.loads(render(cli, recorded, "json", tmp_path / "evidence.json"))
    page = render(cli, recorded, "html", tmp_path / "report.html")
    text = render(cli, recorded, "md", tmp_path / "report.md")
    assert bundle["reports"]["html_sha256"] == hashlib.sha256(page).hexdigest()
    assert bundle["reports"]["md_sha256"] == hashlib.sha256(text).hexdigest()
    assert bundle["run"]["run_id"] == recorded.run_id
    assert bundle["recipe"]["description"] == HOSTILE  # the data itself is kept verbatim
    assert bundle["recipe"]["verified"] is True
    assert [g["decision"]["gate"] for g in bundle["review"]["gates"]] == ["accuracy", "floor"]


def test_each_plot_is_inline_svg(recorded: Recorded, cli: Invoke, tmp_path: Path) -> None:
    page = render(cli, recorded, "html", tmp_path / "report.html").decode()
    plots = re.findall(r'<div class="plot" id="plot-([\w-]+)">(.*?)</div>', page, re.S)
    names = [name for name, _ in plots]
    assert {"accuracy_vs_size", "reliability", "classes"} <= set(names), names
    for _, svg in plots:
        ET.fromstring(svg)  # each is one well-formed <svg> element


def test_an_unknown_run_or_format_is_refused(recorded: Recorded, cli: Invoke) -> None:
    missing = cli("report", "run-20000101T000000Z-000000", "--workspace", recorded.store)
    assert missing.exit_code == 4
    bad = cli("report", recorded.run_id, "--format", "pdf", "--workspace", recorded.store)
    assert bad.exit_code == 2


def test_the_html_report_opens_in_headless_chromium_without_errors_or_requests(
    recorded: Recorded, cli: Invoke, tmp_path: Path
) -> None:
    from tests.helpers.browser import find_chromium, open_page

    if find_chromium() is None:
        pytest.skip("no chromium on PATH: the browser check needs Debian's chromium")
    page = tmp_path / "report.html"
    render(cli, recorded, "html", page)
    shot = Path(os.environ.get("COMPRESSGATE_SCREENSHOT", tmp_path / "report.png"))
    opened = open_page(page, shot)
    assert opened.console == []
    assert opened.requests == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_a_recipe_re_signed_with_a_rotated_key_verifies_by_its_newest_envelope(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    from compressgate.registry.catalog.repository import Catalog, catalog_url

    write_recipe(workspace)
    store = workspace.root / ".cg"
    first = cli("run", workspace.recipe, "--workspace", store, "--json")
    assert first.exit_code == 0, first.stderr
    # The author's key is rotated: a new trust file knows only the new key; the same recipe
    # bytes are signed again and run again (every stage cached).
    _, _, public = generate_keypair("ml-platform", tmp_path / "rotated")
    for owner in GATE_OWNERS:
        add_owner_key(
            tmp_path / "trust.yaml",
            owner,
            load_public_key(workspace.keys / f"{owner}.pub.json"),
            ("approver",),
        )
    add_owner_key(tmp_path / "trust.yaml", "ml-platform", public, ("author",))
    workspace.trust.write_text((tmp_path / "trust.yaml").read_text())
    sign_recipe(workspace.recipe, load_private_key(tmp_path / "rotated" / "ml-platform.key"))
    second = cli("run", workspace.recipe, "--workspace", store, "--json")
    assert second.exit_code == 0, second.stderr
    run_id = json.loads(second.stdout)["run_id"]
    with Catalog(catalog_url(store), create=False) as catalog:
        recipe_sha = json.loads(second.stdout)["recipe"]["sha256"]
        assert len(catalog.recipe_envelopes(recipe_sha)) == 2
    out = tmp_path / "evidence.json"
    result = cli("report", run_id, "--format", "json", "-o", out, "--workspace", store)
    assert result.exit_code == 0, result.stderr
    bundle = json.loads(out.read_text())
    recipe = bundle["recipe"]
    assert recipe["verified"] is True
    assert "recorded envelope 2 of 2" in recipe["signature"]
    assert recipe["signers"] == [{"owner": "ml-platform", "keyid": public.keyid}]
    # The first run (no gates: approved) is the previous approved run; nothing changed.
    previous = bundle["since_previous"]
    assert previous["run_id"] == json.loads(first.stdout)["run_id"]
    assert previous["changes"] == []
