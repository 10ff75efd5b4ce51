"""The catalog's fields are declared once: the tables the migrations build are the SQLModel
tables, column for column and type for type, and each record the catalog hands out has the
fields of its table's row, with compatible types. A field added to a table, its migration or
its record alone fails here."""

from __future__ import annotations

import inspect
import json
import types
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import AutoString, SQLModel

from compressgate.gates.review import GateDecision
from compressgate.registry.catalog import chain, migrations, schema
from compressgate.registry.catalog.chain import event_body
from compressgate.registry.catalog.records import (
    AliasMove,
    AnnotationRecord,
    AttestationRecord,
    JudgementRecord,
    PolicyRecord,
    RecipeRecord,
    RecordedReport,
    ReleaseRecord,
    ResumeRecord,
    SignoffRecord,
    StageRecord,
    SweepEndRecord,
    SweepRecord,
    SweepTrialRecord,
    VariantRecord,
)
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.catalog.schema import (
    TABLES,
    AliasMoveRow,
    AnnotationRow,
    ApprovalRow,
    AttestationRow,
    GateDecisionRow,
    GateJudgementRow,
    PolicyRow,
    RecipeRow,
    ReleaseRow,
    ReportRow,
    ResumeRow,
    SweepEndRow,
    SweepRow,
    SweepTrialRow,
    VariantRow,
)


def _python(kind: sa.types.TypeEngine[Any]) -> type:
    """The Python type a column holds (SQLModel's AutoString says `object`)."""
    return str if isinstance(kind, AutoString) else kind.python_type


def test_the_migrations_build_each_table_column_for_column_and_type_for_type(
    catalog_url: str,
) -> None:
    with Catalog(catalog_url) as catalog:
        inspector = sa.inspect(catalog.engine)
        assert set(inspector.get_table_names()) == {schema.name(t) for t in TABLES}
        for model in TABLES:
            table = schema.table(model)
            built = {c["name"]: c for c in inspector.get_columns(table.name)}
            declared = {c.name: c for c in table.columns}
            assert set(built) == set(declared), table.name
            for name, column in declared.items():
                found = built[name]
                where = f"{table.name}.{name}"
                assert _python(found["type"]) is _python(column.type), where
                if not column.primary_key:  # SQLite lets a key other than INTEGER be NULL
                    assert found["nullable"] == column.nullable, where
            keys = inspector.get_pk_constraint(table.name)["constrained_columns"]
            assert keys == [c.name for c in table.primary_key.columns], table.name
            unique = {
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)
            } | {tuple(i["column_names"]) for i in inspector.get_indexes(table.name) if i["unique"]}
            for column in table.columns:
                if column.unique:
                    assert (column.name,) in unique, f"{table.name}.{column.name} not unique"
                if column.index:
                    leading = {i["column_names"][0] for i in inspector.get_indexes(table.name)}
                    assert column.name in leading, f"{table.name}.{column.name} not indexed"


def test_the_guards_name_each_table_s_keys() -> None:
    assert set(migrations.KEYS) == {schema.name(t) for t in TABLES}
    for model in TABLES:
        name = schema.name(model)
        assert list(migrations.KEYS[name]) == schema.unique_columns(name), name


# --- records against rows ----------------------------------------------------------------------


def _optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None was allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def _scalar(annotation: Any) -> Any:
    """A Literal of strings is a str column."""
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
        return str
    return annotation


def _is_document(annotation: Any) -> bool:
    """A JSON document: a dict, a list or a model (the row stores it as text)."""
    bare, _ = _optional(annotation)
    origin = get_origin(bare)
    return origin in (dict, list) or (isinstance(bare, type) and issubclass(bare, BaseModel))


def _compatible(row: Any, record: Any) -> bool:
    row_type, row_null = _optional(row)
    record_type, record_null = _optional(record)
    if row is str and _is_document(record_type):
        return True  # canonical JSON text; a document may be null
    return row_null == record_null and bool(_scalar(row_type) == _scalar(record_type))


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return {name: field.annotation for name, field in model.model_fields.items()}


# (row, record, {row field: record field} renamed, row fields the record leaves out, record
# fields the row has not). Left out of the pairs: events and schema_migrations (the chain's
# own), runs, run_seeds, run_ends and evaluations (the parts of a `RunRecord`, put together
# from several rows) and recipe_envelopes (envelopes only).
PAIRS: list[tuple[type[SQLModel], type[BaseModel], dict[str, str], set[str], set[str]]] = [
    (VariantRow, VariantRecord, {}, {"event_seq"}, set()),
    (
        VariantRow,
        StageRecord,
        {"stage": "name"},
        {"event_seq", "id", "run_id", "recipe_sha256", "recorded_at", "spec"},
        {"status", "evaluations", "error"},
    ),
    (RecipeRow, RecipeRecord, {}, {"event_seq"}, set()),
    (GateJudgementRow, JudgementRecord, {}, {"event_seq", "id"}, set()),  # id: run_id/seed/gate
    (GateDecisionRow, GateDecision, {}, {"event_seq", "id"}, set()),  # id: run_id/gate
    (ApprovalRow, SignoffRecord, {}, {"event_seq"}, set()),
    (ReportRow, RecordedReport, {"event_seq": "seq"}, set(), set()),
    (AliasMoveRow, AliasMove, {"event_seq": "seq"}, set(), {"release"}),
    (PolicyRow, PolicyRecord, {"event_seq": "seq"}, set(), set()),
    (ReleaseRow, ReleaseRecord, {"event_seq": "seq"}, set(), set()),
    (AttestationRow, AttestationRecord, {"event_seq": "seq"}, set(), set()),
    (ResumeRow, ResumeRecord, {"event_seq": "seq"}, set(), set()),
    (SweepRow, SweepRecord, {}, {"event_seq"}, set()),
    (SweepTrialRow, SweepTrialRecord, {}, {"event_seq", "id"}, set()),  # id: sweep_id/trial
    (SweepEndRow, SweepEndRecord, {}, {"event_seq"}, set()),
    (AnnotationRow, AnnotationRecord, {"event_seq": "seq"}, set(), set()),
]


@pytest.mark.parametrize(
    ("row", "record", "renamed", "row_only", "record_only"),
    PAIRS,
    ids=[f"{r.__name__}-{m.__name__}" for r, m, *_ in PAIRS],
)
def test_a_record_has_the_fields_of_its_row_with_compatible_types(
    row: type[SQLModel],
    record: type[BaseModel],
    renamed: dict[str, str],
    row_only: set[str],
    record_only: set[str],
) -> None:
    columns = _fields(row)
    fields = _fields(record)
    expected = {renamed.get(n, n) for n in columns if n not in row_only} | record_only
    assert set(fields) == expected, (
        f"only in {row.__name__}: {sorted(expected - set(fields))}; "
        f"only in {record.__name__}: {sorted(set(fields) - expected)}"
    )
    for name, annotation in columns.items():
        if name in row_only:
            continue
        wanted = fields[renamed.get(name, name)]
        if record is StageRecord and name == "artifact_sha256":  # None while the stage runs
            wanted = _optional(wanted)[0]
        assert _compatible(annotation, wanted), f"{row.__name__}.{name}: {annotation} / {wanted}"


def test_a_row_s_document_columns_are_its_record_s_json_fields() -> None:
    """Each text column whose record field is a JSON document is stored as canonical JSON; those
    in `DOCUMENTS` reach the event as their sha256 (a variant's warnings and a recipe's signers,
    short, as their text; a recipe's content and envelopes are text, not JSON)."""
    as_text = {
        "variants": {"warnings"},
        "recipes": {"signers"},
        "policies": {"signers"},
        "sweeps": {"signers"},
    }
    documents: dict[type[SQLModel], set[str]] = {}
    for row, record, renamed, row_only, _ in PAIRS:
        fields = _fields(record)
        documents.setdefault(row, set()).update(
            n for n in _fields(row) if n not in row_only and _is_document(fields[renamed.get(n, n)])
        )
    for row, found in documents.items():
        hashed = schema.DOCUMENTS.get(schema.name(row), frozenset())
        name = schema.name(row)
        assert found == (hashed - {"content", "envelope"}) | as_text.get(name, set()), name


def test_a_stage_field_is_declared_once_for_the_row_and_both_records() -> None:
    for name in schema.StageFields.model_fields:
        owners = {
            base.__name__
            for model in (VariantRow, VariantRecord, StageRecord)
            for base in model.__mro__
            if name in inspect.get_annotations(base)
        }
        assert owners == {"StageFields"}, (name, owners)
    assert "macs" in schema.StageFields.model_fields
    assert schema.table(VariantRow).columns["macs"].type.python_type is int


def test_a_column_added_later_leaves_the_events_of_older_rows_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stage field added by a later migration (ALTER TABLE … ADD COLUMN) reads back NULL in
    the rows written before it: their events, which never named it, must still match."""
    row = {"id": "run/0/int8", "macs": 7, "event_seq": 12}
    before = event_body("variants", row)
    monkeypatch.setattr(chain, "LATE_COLUMNS", {"variants": frozenset({"energy_mj"})})
    assert event_body("variants", {**row, "energy_mj": None}) == before
    assert json.loads(event_body("variants", {**row, "energy_mj": 2.5}))["row"]["energy_mj"] == 2.5
    # Any other column is stated when NULL: the row says so.
    assert json.loads(event_body("variants", {**row, "format": None}))["row"]["format"] is None
