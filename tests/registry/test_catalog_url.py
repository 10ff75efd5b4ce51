"""Where the catalog lives (`compressgate.registry.catalog.connection.catalog_url`): a workspace
is always a path, whatever characters it holds; only `--catalog` (or $COMPRESSGATE_CATALOG)
names a URL.

A SQLite URL's path is percent-decoded and ends at `?`: written as is, `ws?x=1/catalog.db`
opened `ws` (a file beside the workspace) and `ws%2f..%2fup` a folder above it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from compressgate.registry.catalog.connection import CATALOG_ENV, sqlite_url
from compressgate.registry.catalog.repository import Catalog, catalog_url
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.workspace import Invoke

URL_LIKE = ["ws?x=1", "ws%41", "ws%2e%2e", "ws#frag", "ws%2f..%2fup", "ws?mode=ro&uri=true"]
RUN = "run-20261123T100000Z-aaaaaa"


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", URL_LIKE)
def test_a_workspace_that_looks_like_a_url_keeps_its_catalog_inside(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    url = catalog_url(Path(name))
    assert sa.engine.make_url(url).database == str(tmp_path / name / "catalog.db")
    with Catalog(url) as catalog:
        assert catalog.head().size > 0
    assert everything_under(tmp_path) == [name, f"{name}/catalog.db"]


def test_an_ordinary_path_keeps_its_plain_url() -> None:
    assert sqlite_url(Path("/srv/ws/catalog.db")) == "sqlite:////srv/ws/catalog.db"


def test_the_commands_read_and_write_the_catalog_inside_a_url_like_workspace(
    tmp_path: Path, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    workspace = tmp_path / "ws?x=1"
    record_run(catalog_url(workspace), RUN, 0.97, recipe_file(tmp_path / "recipe.yaml"))
    before = everything_under(tmp_path)
    listed = cli("catalog", "list", "--workspace", workspace, "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [RUN]
    moved = cli("promote", f"{RUN}/0/int8", "--alias", "staging", "--workspace", workspace)
    assert moved.exit_code == 0, moved.stderr
    audited = cli("audit", "verify", "--skip-artifacts", "--workspace", workspace)
    assert audited.exit_code == 0, audited.stderr
    assert "ws%3Fx%3D1/catalog.db" in audited.stdout  # the URL, quoted
    # Only the catalog's own files changed: nothing beside the workspace, nothing named `ws`.
    after = everything_under(tmp_path)
    assert not (tmp_path / "ws").exists()
    assert [p for p in after if p not in before and not p.startswith("ws?x=1/")] == []


def test_a_plain_catalog_path_is_a_path_and_a_url_is_taken_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    plain = catalog_url(tmp_path / "ws", str(tmp_path / "db?x=1.db"))
    assert sa.engine.make_url(plain).database == str(tmp_path / "db?x=1.db")
    given = "postgresql+psycopg://cg@db.example/cg?options=-csearch_path%3Dteam"
    assert catalog_url(tmp_path / "ws?x=1", given) == given
    monkeypatch.setenv(CATALOG_ENV, given)
    assert catalog_url(tmp_path / "ws?x=1") == given


def test_an_explicit_catalog_url_opens_beside_a_url_like_workspace(
    catalog_url: str, tmp_path: Path
) -> None:
    """SQLite and (where $COMPRESSGATE_TEST_PG_URL names a server) PostgreSQL URLs given as
    --catalog are used as they are."""
    from compressgate.registry.catalog.connection import catalog_url as resolve

    url = resolve(tmp_path / "ws%2e%2e", catalog_url)
    assert url == catalog_url
    with Catalog(url) as catalog:
        assert catalog.head().size > 0
    assert not (tmp_path / "ws%2e%2e").exists()
