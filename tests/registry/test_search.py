"""`catalog search` (issue 27, point 3): the filter language parsed term by term, and its
answers on a small catalog of recorded runs, promoted, waived and tagged through the public API,
on SQLite and on PostgreSQL ($COMPRESSGATE_TEST_PG_URL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compressgate.recipes.trust import load_trust
from compressgate.registry import Workspace as Registry
from compressgate.registry.catalog import search
from compressgate.registry.catalog.records import RecipeRef, RunRecord, StageRecord
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.catalog.search import KNOWN, parse_query, parse_sort
from compressgate.registry.governance.review import sign_off
from compressgate.registry.kernel.errors import ManifestError
from compressgate.registry.kernel.keys import load_private_key
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.workspace import Invoke, Workspace

GOOD, OTHER, WAIVED, SIGNED = (
    "run-20261123T100000Z-aaaaaa",
    "run-20261123T110000Z-bbbbbb",
    "run-20261123T120000Z-cccccc",
    "run-20261123T130000Z-dddddd",
)
STAGES = ("baseline", "distill", "int8")


def ids(run: str, *stages: str) -> set[str]:
    return {f"{run}/0/{stage}" for stage in stages or STAGES}


@pytest.fixture(params=[5000, 8, 1], ids=["scan", "window-8", "drive"])
def window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many variants a search reads in sort order before its terms drive instead: all of
    this small catalog's (the page found by scanning), 8 (pages of a few found by scanning,
    longer ones by driving), or 1 (every search driven by its terms' indexes)."""
    monkeypatch.setattr(search, "_WINDOW", request.param)
    return int(request.param)


@pytest.fixture
def catalog(catalog_url: str, workspace: Workspace, tmp_path: Path, window: int) -> str:
    """Three runs of one recipe (GOOD and OTHER pass its accuracy gate, WAIVED fails it and
    ml-lead waives it), promoted: GOOD then WAIVED to production, OTHER to staging; a fourth
    run, SIGNED, whose recipe ml-platform signed, with no gate. Tagged: GOOD's run team=vision,
    its int8 tier=gold; WAIVED's run team=speech."""
    recipe = recipe_file(tmp_path / "recipe.yaml")
    record_run(catalog_url, GOOD, 0.97, recipe)
    record_run(catalog_url, OTHER, 0.96, recipe)
    record_run(catalog_url, WAIVED, 0.80, recipe)
    with Catalog(catalog_url) as records:
        sign_off(
            records,
            WAIVED,
            "accuracy",
            kind="waiver",
            trust=load_trust(workspace.trust),
            key=load_private_key(workspace.key("ml-lead")),
            reason="fixed in the next release",
        )
        signed = RunRecord(
            run_id=SIGNED,
            recipe=RecipeRef(
                name="resnet", version=2, sha256="e" * 64, path="r.yaml", signers=["ml-platform"]
            ),
            started_at="2026-11-23T13:00:00Z",
            workspace="/ws",
            seeds=[0],
        )
        records.record_run_start(
            signed, recipe_content="kind: Recipe\n", envelope="{}", lock_sha256=""
        )
        records.record_stage(
            SIGNED,
            "e" * 64,
            StageRecord(seed=0, name="baseline", kind="baseline", artifact_sha256="f" * 64),
            {"name": "baseline"},
        )
    with Registry(tmp_path / "ws", catalog=catalog_url, trust=workspace.trust) as ws:
        ws.promote(f"{GOOD}/0/int8", "production", actor="alice")
        ws.promote(f"{WAIVED}/0/int8", "production", actor="bob")
        ws.promote(f"{OTHER}/0/int8", "staging", actor="alice")
        ws.tag(GOOD, ["team=vision"], actor="alice")
        ws.tag(f"{GOOD}/0/int8", ["tier=gold"], actor="alice")
        ws.tag(WAIVED, ["team=speech"], actor="bob")
    return catalog_url


def found(url: str, query: str, **options: object) -> set[str]:
    with Catalog(url, create=False) as records:
        page = records.search(query, limit=1000, **options)  # type: ignore[arg-type]
    assert page.next_page_token is None
    return {hit.id for hit in page.results}


# --- parsing -----------------------------------------------------------------------------------


def test_every_operator_parses_to_its_term() -> None:
    query = parse_query(
        "recipe=digits owner!=ml-lead stage~in policy>=2 policy<=3 tag.team=vision tag.tier "
        'waived gate.accuracy=fail since=2026-09-01 until=2026-09-30T12:00:00Z tag.note="two words"'
    )
    shown = [(t.field, t.name, t.op, t.value) for t in query.terms]
    assert shown == [
        ("recipe", None, "=", "digits"),
        ("owner", None, "!=", "ml-lead"),
        ("stage", None, "~", "in"),
        ("policy", None, ">=", "2"),
        ("policy", None, "<=", "3"),
        ("tag", "team", "=", "vision"),
        ("tag", "tier", None, None),
        ("waived", None, None, None),
        ("gate", "accuracy", "=", "fail"),
        ("since", None, "=", "2026-09-01"),
        ("until", None, "=", "2026-09-30T12:00:00Z"),
        ("tag", "note", "=", "two words"),
    ]
    # A day counts whole from its start; a time up to and including itself.
    assert query.since == "2026-09-01T00:00:00.000000Z"
    assert query.until == "2026-09-30T12:00:00.000001Z"
    assert parse_query("until=2026-09-30").until == "2026-10-01T00:00:00.000000Z"
    assert query.text.endswith("'tag.note=two words'")
    assert parse_query("").terms == ()
    assert parse_sort("size") == ("size", "desc") and parse_sort("id") == ("id", "asc")
    assert parse_sort("recorded:asc") == ("recorded", "asc")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("colour=red", "search term 'colour=red': unknown field 'colour'"),
        ("recipe>=x", "search term 'recipe>=x': recipe takes = != ~, not >="),
        ("gate~pa", "gate takes = !=, not ~"),
        ("gate=maybe", "a gate's outcome is pass, fail, waived, not 'maybe'"),
        ("gate.accuracy=ok", "a gate's outcome is pass, fail, waived, not 'ok'"),
        ("policy=two", "a policy version is a whole number (0: none), not 'two'"),
        ("policy>=-1", "a policy version is a whole number"),
        ("since=September", "search term 'since=September': not a date"),
        ("since=2026-09-01 since=2026-10-01", "since is given twice"),
        ("since>=2026-09-01", "since takes =, not >="),
        ("recipe=", "give a value after '=': a recipe name"),
        ("recipe", "recipe needs an operator and a value (= != ~)"),
        ("tag=x", "name the tag: tag.KEY=VALUE"),
        ("tag.bad!key=x", "search term 'tag.bad!key=x'"),
        ("tag.-x=1", "'-x' is not a tag key"),
        ("stage.int8=x", "stage takes no '.NAME'"),
        ("waived=yes", "waived is a flag"),
        ("'unclosed", "cannot be split into terms"),
        ("=x", "not FIELD=VALUE nor a flag"),
    ],
)
def test_a_bad_term_is_exit_2_naming_it(query: str, says: str) -> None:
    with pytest.raises(ManifestError) as refused:
        parse_query(query)
    assert refused.value.exit_code == 2
    assert says in str(refused.value)


def test_an_unknown_field_lists_the_known_ones(cli: Invoke, tmp_path: Path) -> None:
    result = cli("catalog", "search", "colour=red", "--catalog", tmp_path / "c.db")
    assert result.exit_code == 2
    assert "Error: search term 'colour=red': unknown field 'colour'" in result.stderr
    assert f"hint: known fields: {', '.join(KNOWN)}" in result.stderr
    assert "tag.KEY" in KNOWN and "gate.NAME" in KNOWN and "waived" in KNOWN
    bad_sort = cli("catalog", "search", "--sort", "colour", "--catalog", tmp_path / "c.db")
    assert bad_sort.exit_code == 2 and "sort by recorded, id, size" in bad_sort.stderr


# --- answers -----------------------------------------------------------------------------------


def test_the_auditors_question_is_one_query(catalog: str) -> None:
    """Every variant promoted to production since a date, with a waived gate."""
    today = datetime.now(UTC).date()
    assert found(catalog, f"alias=production since={today} waived") == ids(WAIVED, "int8")
    assert found(catalog, f"alias=production since={today}") == ids(GOOD, "int8") | ids(
        WAIVED, "int8"
    )
    # The range bounds the move, not the variant's recording: nothing moved before today.
    assert found(catalog, f"alias=production until={today - timedelta(days=1)}") == set()
    assert found(catalog, f"alias=production until={today}") == ids(GOOD, "int8") | ids(
        WAIVED, "int8"
    )
    assert found(catalog, f"since={today + timedelta(days=1)}") == set()


def test_alias_ever_against_current(catalog: str) -> None:
    assert found(catalog, "current=production") == ids(WAIVED, "int8")
    assert (
        found(catalog, "alias=staging") == found(catalog, "current=staging") == ids(OTHER, "int8")
    )
    assert found(catalog, "alias=production current!=production") == ids(GOOD, "int8")
    assert found(catalog, "alias=nowhere") == set()


def test_gate_outcomes_waivers_and_signoffs(catalog: str) -> None:
    assert found(catalog, "gate=fail") == ids(WAIVED)
    assert found(catalog, "gate=waived") == found(catalog, "waived") == ids(WAIVED)
    assert found(catalog, "gate.accuracy=pass stage=int8") == ids(GOOD, "int8") | ids(OTHER, "int8")
    assert found(catalog, "gate.fairness=pass") == set()
    # != negates: SIGNED has no gate at all.
    assert found(catalog, "gate!=fail kind=quantize") == ids(GOOD, "int8") | ids(OTHER, "int8")
    assert found(catalog, "waiver=ml-lead") == found(catalog, "signoff=ml-lead") == ids(WAIVED)
    assert found(catalog, "waiver=serving") == found(catalog, "signoff=alice") == set()


def test_recipe_owner_run_stage_and_policy(catalog: str) -> None:
    everything = ids(GOOD) | ids(OTHER) | ids(WAIVED) | ids(SIGNED, "baseline")
    assert found(catalog, "") == everything
    assert found(catalog, "recipe=resnet") == found(catalog, "owner=ml-platform")
    assert found(catalog, "recipe=resnet") == ids(SIGNED, "baseline")
    assert found(catalog, "recipe~dig") == found(catalog, "recipe!=resnet")
    assert found(catalog, "recipe~Dig") == set()  # a prefix is case-sensitive on both databases
    assert found(catalog, "owner=ml") == set()  # a signer's whole name, not part of it
    assert found(catalog, f"run={OTHER}") == found(catalog, "run~run-20261123T11") == ids(OTHER)
    assert found(catalog, "stage~dis") == {f"{r}/0/distill" for r in (GOOD, OTHER, WAIVED)}
    # No policy: everything was recorded under the unsigned regime, policy 0.
    assert found(catalog, "policy=0") == found(catalog, "policy<=0") == everything
    assert found(catalog, "policy>=1") == found(catalog, "policy=1") == set()


def test_a_run_s_tags_are_its_variants_unless_a_variant_sets_the_key(
    catalog: str, tmp_path: Path
) -> None:
    assert found(catalog, "tag.team=vision") == ids(GOOD)
    assert found(catalog, "tag.team~vis") == ids(GOOD)
    assert found(catalog, "tag.tier=gold") == found(catalog, "tag.tier") == ids(GOOD, "int8")
    assert found(catalog, "tag.team=vision tag.tier!=gold") == ids(GOOD, "baseline", "distill")
    assert found(catalog, "tag.team") == ids(GOOD) | ids(WAIVED)
    with Registry(tmp_path / "ws", catalog=catalog) as ws:
        ws.tag(f"{GOOD}/0/distill", ["team=audio"], actor="alice")
        assert found(catalog, "tag.team=vision") == ids(GOOD, "baseline", "int8")
        assert found(catalog, "tag.team=audio") == ids(GOOD, "distill")
        # Removed from the variant: its run's tag is its own again.
        ws.tag(f"{GOOD}/0/distill", remove=["team"], actor="alice")
        assert found(catalog, "tag.team=vision") == ids(GOOD)
        # Changed on the run: the latest event is the value.
        ws.tag(GOOD, ["team=perception"], actor="alice")
        assert found(catalog, "tag.team=vision") == set()
        assert found(catalog, "tag.team=perception") == ids(GOOD)
        ws.tag(GOOD, remove=["team"], actor="alice")
        assert found(catalog, "tag.team") == ids(WAIVED)


def test_a_hit_shows_its_aliases_tags_and_description(catalog: str, tmp_path: Path) -> None:
    with Registry(tmp_path / "ws", catalog=catalog) as ws:
        ws.describe(f"{GOOD}/0/int8", "the first int8 in production", actor="alice")
        (hit,) = ws.search("tag.tier=gold").results
    assert (hit.id, hit.run_id, hit.seed, hit.stage, hit.kind) == (
        f"{GOOD}/0/int8",
        GOOD,
        0,
        "int8",
        "quantize",
    )
    assert (hit.recipe, hit.recipe_version, hit.size_bytes) == ("digits", 1, 400)
    assert hit.aliases == []  # production moved on to WAIVED's
    assert hit.tags == {"team": "vision", "tier": "gold"}
    assert hit.description == "the first int8 in production"


# --- sorting and paging ------------------------------------------------------------------------


def _pages(url: str, query: str, sort: str, limit: int) -> tuple[list[str], int]:
    seen: list[str] = []
    token, pages = None, 0
    with Catalog(url, create=False) as records:
        while True:
            page = records.search(query, sort=sort, limit=limit, page_token=token)
            seen += [hit.id for hit in page.results]
            pages += 1
            token = page.next_page_token
            if token is None:
                return seen, pages


@pytest.mark.parametrize("sort", ["recorded", "recorded:asc", "id", "id:desc", "size", "size:asc"])
def test_pages_follow_one_stable_order_without_gaps_or_repeats(catalog: str, sort: str) -> None:
    with Catalog(catalog, create=False) as records:
        whole = records.search("", sort=sort, limit=1000).results
    order = [hit.id for hit in whole]
    sqlite = catalog.startswith("sqlite")
    field, _, direction = sort.partition(":")
    descending = (direction or {"recorded": "desc", "id": "asc", "size": "desc"}[field]) == "desc"
    keys = {
        "recorded": lambda h: (h.recorded_at, h.id),
        "id": lambda h: (h.id, h.id),
        # A variant without a size (SIGNED's baseline) sorts where its database puts NULL:
        # below every size on SQLite, above on PostgreSQL.
        "size": lambda h: (
            h.size_bytes if h.size_bytes is not None else (-1 if sqlite else 10**12),
            h.id,
        ),
    }[field]
    assert order == [h.id for h in sorted(whole, key=keys, reverse=descending)]
    assert len(order) == 10
    paged, pages = _pages(catalog, "", sort, 3)
    assert (paged, pages) == (order, 4)
    filtered, _ = _pages(catalog, "recipe=digits", sort, 4)
    assert filtered == [i for i in order if not i.startswith(SIGNED)]


def test_a_page_token_continues_only_its_own_query(catalog: str, cli: Invoke) -> None:
    first = cli(
        "catalog", "search", "recipe=digits", "--limit", "2", "--json", "--catalog", catalog
    )
    assert first.exit_code == 0, first.stderr
    token = json.loads(first.stdout)["next_page_token"]
    assert token
    again = cli("catalog", "search", "recipe=digits", "--limit", "2", "--page-token", token,
                "--catalog", catalog, "--json")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    with Catalog(catalog, create=False) as records:
        order = [hit.id for hit in records.search("recipe=digits", limit=1000).results]
    assert [h["id"] for h in json.loads(first.stdout)["results"]] == order[:2]
    assert [h["id"] for h in json.loads(again.stdout)["results"]] == order[2:4]
    other = cli("catalog", "search", "stage=int8", "--page-token", token, "--catalog", catalog)
    assert other.exit_code == 2 and "belongs to another query or sort" in other.stderr
    resorted = cli("catalog", "search", "recipe=digits", "--sort", "id", "--page-token", token,
                   "--catalog", catalog)  # fmt: skip
    assert resorted.exit_code == 2 and "another query or sort" in resorted.stderr
    garbage = cli("catalog", "search", "--page-token", "not-a-token!", "--catalog", catalog)
    assert garbage.exit_code == 2 and "is not a page token" in garbage.stderr


def test_json_keys_and_text_lines(catalog: str, cli: Invoke) -> None:
    result = cli("catalog", "search", "waived", "current=production", "--json",
                 "--catalog", catalog)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    page = json.loads(result.stdout)
    assert set(page) == {"query", "sort", "limit", "results", "next_page_token"}
    assert (page["query"], page["sort"], page["limit"]) == (
        "waived current=production",
        "recorded:desc",
        20,
    )
    (hit,) = page["results"]
    assert set(hit) == {
        "id", "run_id", "seed", "stage", "kind", "artifact_sha256", "recipe", "recipe_version",
        "recorded_at", "size_bytes", "aliases", "tags", "description",
    }  # fmt: skip
    assert (hit["id"], hit["aliases"], hit["tags"]) == (
        f"{WAIVED}/0/int8",
        ["production"],
        {"team": "speech"},
    )
    text = cli("catalog", "search", "waived current=production", "--catalog", catalog)
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"{WAIVED}/0/int8 [quantize] ")
    assert lines[1] == "  aliases: production · tags: team=speech"
    assert lines[2] == "1 variant (recorded:desc)"
    none = cli("catalog", "search", "alias=nowhere", "--catalog", catalog)
    assert none.stdout == "no variant matches alias=nowhere\n"
    paged = cli("catalog", "search", "--limit", "1", "--catalog", catalog)
    assert "1 variant (recorded:desc); next page: --page-token " in paged.stdout


def test_a_catalog_older_than_v7_is_searched_without_tags(
    catalog_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compressgate.registry.catalog import migrations

    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:6])
        patched.setattr(migrations, "SCHEMA_VERSION", 6)
        record_run(catalog_url, GOOD, 0.97, recipe_file(tmp_path / "recipe.yaml"))
    with Catalog(catalog_url, create=False) as records:
        assert records.schema_version() == 6
        assert {h.id for h in records.search("gate=pass").results} == ids(GOOD)
        assert records.search("tag.team").results == []
        assert records.search("").results[0].tags == {}
