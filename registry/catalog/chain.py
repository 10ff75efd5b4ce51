"""The hash chain and the documents it covers: canonical JSON, event bodies, chain hashes, the
row coercion that makes a body state exactly what a later read finds, and the compact forms
documents are stored in.

Every row is appended with one event. The event's body is the canonical JSON of
`{"table": …, "row": …}` — the row's columns, each JSON document column replaced by the sha256 of
its exact text — and the event stores the sha256 of that body (`content_sha256`), the chain hash
of its predecessor (`prev_sha256`) and its own chain hash
`sha256 = sha256("{seq}\\n{prev_sha256}\\n{content_sha256}")`. Up to schema v3 the body itself
was stored too; from v4 on it is left empty, since the row states it: `verify_rows` recomputes
the body of every row against its event's content hash, and no event may be without its row.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import SQLModel

from compressgate.registry.catalog.schema import DOCUMENTS, LATE_COLUMNS, table
from compressgate.registry.kernel.errors import IntegrityError

GENESIS = "0" * 64


def document(value: Any) -> str:
    """The canonical text of a JSON document: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain_hash(seq: int, prev: str, content: str) -> str:
    return hashlib.sha256(f"{seq}\n{prev}\n{content}".encode()).hexdigest()


def event_body(table_name: str, row: dict[str, Any]) -> str:
    """What a row's event says of it: every column, documents by their sha256 (a column added
    to the table later, while NULL, not at all: `schema.LATE_COLUMNS`)."""
    documents = DOCUMENTS.get(table_name, frozenset())
    late = LATE_COLUMNS.get(table_name, frozenset())
    shown = {
        key: (sha(value) if key in documents and value is not None else value)
        for key, value in row.items()
        if key != "event_seq" and not (value is None and key in late)
    }
    return document({"table": table_name, "row": shown})


def coerced(model: type[SQLModel], row: dict[str, Any]) -> dict[str, Any]:
    """The row in its columns' types, as the database gives it back (2 in a float column is
    2.0), so that the event states exactly what a later read will find."""
    columns = table(model).columns
    out = {}
    for key, value in row.items():
        column = columns.get(key)
        if value is not None and column is not None:
            kind = column.type.python_type
            if kind is float:
                value = float(value)
            elif kind is bool:
                value = bool(value)
            elif kind is int and not isinstance(value, bool):
                value = int(value)
        out[key] = value
    return out


def read_json(text: str) -> Any:
    """A JSON document read back from the catalog, as `stored` wrote it (or `document`, before
    schema v4); one that no longer parses was changed outside compressgate (exit 3)."""
    try:
        if text.startswith(DEFLATED):
            raw = base64.b64decode(text.removeprefix(DEFLATED), validate=True)
            text = zlib.decompress(raw).decode("utf-8")
        return json.loads(text)
    except (ValueError, zlib.error) as exc:  # binascii.Error, UnicodeDecodeError are ValueErrors
        raise IntegrityError(
            f"catalog document is damaged: {exc}",
            hint="run `compressgate audit verify` to find the changed row",
        ) from None


# --- compact documents (schema v4) -------------------------------------------------------------
# Each is read back by pydantic into the model it was dumped from, which restores what was
# left out; documents written before v4 (complete, repeated, never deflated) read back alike.

DEFLATED = "z:"  # no JSON text starts with it
_DEFLATE_FROM = 256  # characters: a shorter document is stored as its text


def stored(value: Any) -> str:
    """A JSON document as the catalog stores it: its canonical text (`document`), or, from
    256 characters on, `z:` and the base64 of the text deflated (zlib), when that is shorter.
    Its event carries the sha256 of exactly what is stored; `read_json` reads either."""
    return deflated(document(value))


def deflated(text: str) -> str:
    """The canonical text of a document as `stored` keeps it."""
    if len(text) < _DEFLATE_FROM:
        return text
    packed = base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    return DEFLATED + packed if len(packed) + len(DEFLATED) < len(text) else text


def compact(model: BaseModel) -> dict[str, Any]:
    """A model as JSON without the fields that hold their default; a tagged result keeps its
    `kind`, which its union needs to be read back."""
    dumped = model.model_dump(mode="json", exclude_defaults=True)
    if "kind" in type(model).model_fields:
        dumped["kind"] = getattr(model, "kind")  # noqa: B009 - not every model has it
    return dumped


def pack_metrics(values: Mapping[str, BaseModel]) -> dict[str, Any]:
    """Named estimates (or aggregates), each `compact`; one equal to a value already stored
    under an earlier name (in sorted order) is stored as that name: `latency.p50_ms` repeats
    `latency.batch_1.p50_ms`, the first batch size's figure."""
    first: dict[BaseModel, str] = {}
    out: dict[str, Any] = {}
    for key in sorted(values):
        value = values[key]
        if value in first:
            out[key] = first[value]
        else:
            first[value] = key
            out[key] = compact(value)
    return out


def unpack_metrics(packed: Mapping[str, Any]) -> dict[str, Any]:
    """The named values `pack_metrics` stored, each name that repeats another resolved."""
    out: dict[str, Any] = {}
    for key, value in packed.items():
        if isinstance(value, str):
            value = packed.get(value)
            if not isinstance(value, dict):
                raise IntegrityError(
                    f"catalog document is damaged: metric {key!r} repeats a metric it does "
                    "not hold",
                    hint="run `compressgate audit verify` to find the changed row",
                )
        out[key] = value
    return out


# --- who and when ------------------------------------------------------------------------------


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def default_actor() -> str:
    """Who is acting: $COMPRESSGATE_ACTOR, else the login name."""
    explicit = os.environ.get("COMPRESSGATE_ACTOR")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return f"uid:{os.getuid()}"
