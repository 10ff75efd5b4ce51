"""Tags and descriptions of runs and variants as the catalog stores them (schema v7): one row
per tag set or removed, description set or cleared, never edited; the latest row of a subject's
(kind, key) is its value. Who may annotate and what a signed annotation binds is
`governance.annotations`'s to judge; the catalog keeps the rows.

A catalog read as it is at an older schema (v3 to v6) has no annotation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from compressgate.registry.catalog import schema
from compressgate.registry.catalog.connection import CatalogConnection, safe_url
from compressgate.registry.catalog.queries import _record
from compressgate.registry.catalog.records import AnnotationRecord, Annotations
from compressgate.registry.catalog.schema import AnnotationRow, RunRow, VariantRow
from compressgate.registry.kernel.errors import EnvironmentMismatch

ANNOTATIONS_FROM = 7  # the schema version that added annotations
# A tag's key: a letter or digit, then letters, digits, '.', '_' or '-' (what the search
# language can name as `tag.KEY` unquoted), at most 64 characters.
TAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TAG_KEY_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64"
_PAGE = 500  # keys per IN (...) list


def current(history: Iterable[AnnotationRecord]) -> tuple[dict[str, str], str | None]:
    """The tags and the description that `history` (oldest first) leaves: each key's latest
    event, a removal taking the key away."""
    tags: dict[str, str] = {}
    description: str | None = None
    for event in history:
        if event.kind == "description":
            description = event.value
        elif event.value is None:
            tags.pop(event.key, None)
        else:
            tags[event.key] = event.value
    return dict(sorted(tags.items())), description


class CatalogAnnotations(CatalogConnection):
    """Tags and descriptions (a base of `repository.Catalog`)."""

    def _annotations_writable(self) -> None:
        if self.applied < ANNOTATIONS_FROM:
            raise EnvironmentMismatch(
                f"catalog {safe_url(self.url)} has schema version {self.applied}: it records "
                f"tags and descriptions from version {ANNOTATIONS_FROM} on",
                hint="open it for writing (any writing command migrates it)",
            )

    def record_annotations(self, rows: Sequence[dict[str, Any]]) -> list[AnnotationRecord]:
        """Append annotation rows (checked by the caller), all in one transaction."""
        self._annotations_writable()
        seqs = self.append([(AnnotationRow, dict(row)) for row in rows])
        return [
            AnnotationRecord.model_validate({**row, "seq": seq})
            for row, seq in zip(rows, seqs, strict=True)
        ]

    def annotations(self, subject_kind: str, subject_id: str) -> Annotations:
        """A run's or a variant's tags and description now, with every event that made them."""
        if self.applied < ANNOTATIONS_FROM:
            return Annotations()
        table = schema.table(AnnotationRow)
        query = (
            sa.select(table)
            .where(table.c.subject_kind == subject_kind, table.c.subject_id == subject_id)
            .order_by(table.c.event_seq)
        )
        with self._reading() as conn:
            history = [_annotation(dict(r)) for r in conn.execute(query).mappings()]
        tags, description = current(history)
        return Annotations(tags=tags, description=description, history=history)

    def current_annotations(
        self, subject_kind: str, ids: Sequence[str]
    ) -> dict[str, tuple[dict[str, str], str | None]]:
        """The tags and description now of each subject of `ids` that has any."""
        if self.applied < ANNOTATIONS_FROM or not ids:
            return {}
        table = schema.table(AnnotationRow)
        found: dict[str, list[AnnotationRecord]] = {}
        with self._reading() as conn:
            for start in range(0, len(ids), _PAGE):
                query = (
                    sa.select(table)
                    .where(
                        table.c.subject_kind == subject_kind,
                        table.c.subject_id.in_(ids[start : start + _PAGE]),
                    )
                    .order_by(table.c.event_seq)
                )
                for row in conn.execute(query).mappings():
                    found.setdefault(str(row["subject_id"]), []).append(_annotation(dict(row)))
        return {subject: current(history) for subject, history in found.items()}

    def all_annotations(self) -> list[AnnotationRecord]:
        """Every annotation event, oldest first (what `audit verify` checks)."""
        if self.applied < ANNOTATIONS_FROM:
            return []
        table = schema.table(AnnotationRow)
        with self._reading() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.event_seq)).mappings().all()
        return [_annotation(dict(r)) for r in rows]

    def subject_digests(self, subject_kind: str, ids: Sequence[str]) -> dict[str, str]:
        """What a signed annotation's subject digest is, for each subject of `ids` the catalog
        holds: a variant's artifact sha256, a run's recipe sha256."""
        if subject_kind == "variant":
            table = schema.table(VariantRow)
            key, digest = table.c.id, table.c.artifact_sha256
        else:
            table = schema.table(RunRow)
            key, digest = table.c.run_id, table.c.recipe_sha256
        out: dict[str, str] = {}
        with self._reading() as conn:
            for start in range(0, len(ids), _PAGE):
                query = sa.select(key, digest).where(key.in_(ids[start : start + _PAGE]))
                out.update({str(i): str(d) for i, d in conn.execute(query)})
        return out


def _annotation(row: dict[str, Any]) -> AnnotationRecord:
    return _record(
        AnnotationRecord, {**row, "seq": row["event_seq"]}, f"annotation {row['event_seq']}"
    )
