"""`catalog search`: a small filter language over variants, and the SQL it becomes.

A query is terms separated by spaces, all of which must hold (AND); a value with spaces is
quoted as a shell quotes it (`tag.note="two words"`). A term is `FIELD OP VALUE`, or a flag:

    recipe=NAME          the run's recipe (= != ~)
    owner=NAME           one of the recipe's signers (= !=)
    run=RUN  stage=NAME  kind=KIND      the variant's run, stage, stage kind (= != ~; kind = !=)
    alias=NAME           some move of alias NAME pointed at the variant: a promotion or a
                         rollback to it (= !=); NAME alone also matches RECIPE:NAME
    current=NAME         alias NAME points at the variant now (= !=)
    gate=OUTCOME         some gate of its run: pass, fail (waived or not) or waived (a failed
                         gate with a recorded waiver) (= !=); gate.NAME=OUTCOME: gate NAME
    waived               gate=waived
    waiver=OWNER         a waiver by OWNER recorded for its run (= !=)
    signoff=OWNER        an approval or a waiver by OWNER recorded for its run (= !=)
    policy=N             the policy version in force when the variant was recorded, 0 for
                         none (the unsigned regime) (= != >= <=)
    since=DATE until=DATE  recorded from DATE / through DATE (a day, YYYY-MM-DD, counts
                         whole; or an ISO 8601 time); with an alias or current term, the move's
                         time instead
    tag.KEY=VALUE        the tag KEY of the variant, or of its run unless the variant sets KEY
                         itself (= != ~); tag.KEY alone: the tag is set

`!=` is the negation of `=` (a variant without the tag has tag.KEY!=VALUE); `~` is a prefix.
Results are sorted by `recorded` (the default, newest first), `id` or `size`, always then by
id, and paged by an opaque token that continues after the page's last row (keyset paging:
a page is as fast deep in the results as at the start). Every value reaches the database as a
bound parameter of a SQLAlchemy Core expression, never as SQL text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from compressgate.registry.catalog import schema
from compressgate.registry.catalog.annotations import (
    ANNOTATIONS_FROM,
    TAG_KEY,
    TAG_KEY_RULE,
    CatalogAnnotations,
)
from compressgate.registry.catalog.records import SearchHit, SearchPage
from compressgate.registry.catalog.schema import (
    AliasMoveRow,
    AnnotationRow,
    ApprovalRow,
    GateDecisionRow,
    PolicyRow,
    RunRow,
    VariantRow,
)
from compressgate.registry.kernel.errors import ManifestError

POLICY_FROM = 5  # the schema version that added policies

# field -> (operators, what its value is); `gate` and `tag` also take `.NAME`.
FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "alias": (("=", "!="), "an alias name"),
    "current": (("=", "!="), "an alias name"),
    "gate": (("=", "!="), "pass, fail or waived"),
    "kind": (("=", "!="), "a stage kind"),
    "owner": (("=", "!="), "an owner's name"),
    "policy": (("=", "!=", ">=", "<="), "a policy version (0: none)"),
    "recipe": (("=", "!=", "~"), "a recipe name"),
    "run": (("=", "!=", "~"), "a run id"),
    "signoff": (("=", "!="), "an owner's name"),
    "since": (("=",), "a date YYYY-MM-DD or an ISO 8601 time"),
    "stage": (("=", "!=", "~"), "a stage name"),
    "tag": (("=", "!=", "~"), "a tag value"),
    "until": (("=",), "a date YYYY-MM-DD or an ISO 8601 time"),
    "waiver": (("=", "!="), "an owner's name"),
}
# What an unknown field's message lists.
KNOWN = sorted([*(f for f in FIELDS if f != "tag"), "gate.NAME", "tag.KEY", "waived"])
OUTCOMES = ("pass", "fail", "waived")
SORTS = {"recorded": "desc", "id": "asc", "size": "desc"}  # each field's default direction
_TERM = re.compile(
    r"(?P<field>[a-z]+)(?:\.(?P<name>[^=!<>~]+))?(?:(?P<op>!=|>=|<=|=|~)(?P<value>.*))?",
    re.DOTALL,
)
_ALIAS_TERMS = ("alias", "current")
_WINDOW = 5000  # variants read in sort order before the terms drive instead (`search`)
_DOCS = "docs/catalog-and-audit.md#tags-descriptions-and-search"


@dataclass(frozen=True)
class Term:
    """One term of a query: `field[.name] op value`, or a flag (`op` None)."""

    field: str
    name: str | None
    op: str | None
    value: str | None
    text: str  # as given


@dataclass(frozen=True)
class Query:
    """A parsed query: its terms, and its time range (`since`, `until`) as catalog times."""

    terms: tuple[Term, ...]
    since: str | None
    until: str | None  # exclusive

    @property
    def text(self) -> str:
        """The query as understood, each term quoted as a shell would need it."""
        return shlex.join(t.text for t in self.terms)


def _bad(term: str, problem: str, hint: str | None = None) -> ManifestError:
    return ManifestError(
        f"search term {term!r}: {problem}",
        hint=hint or f"known fields: {', '.join(KNOWN)} ({_DOCS})",
    )


def parse_query(text: str) -> Query:
    """The terms of `text`; exit 2 naming the first term that is not understood."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ManifestError(
            f"search query {text!r} cannot be split into terms: {exc}",
            hint='quote a value with spaces as a shell does: tag.note="two words"',
        ) from None
    terms = [_term(word) for word in words]
    since = until = None
    for term in terms:
        if term.field in ("since", "until"):
            if (since if term.field == "since" else until) is not None:
                raise _bad(term.text, f"{term.field} is given twice", f"give {term.field} once")
            assert term.value is not None
            low, high = _instant(term)
            if term.field == "since":
                since = low
            else:
                until = high
    return Query(tuple(terms), since, until)


def _term(word: str) -> Term:
    found = _TERM.fullmatch(word)
    if found is None:
        raise _bad(word, "not FIELD=VALUE nor a flag")
    field, name, op, value = found["field"], found["name"], found["op"], found["value"]
    if field == "waived":
        if name is None and op is None:
            return Term("waived", None, None, None, word)
        raise _bad(word, "waived is a flag: write it alone (or gate.NAME=waived)")
    if field not in FIELDS:
        raise _bad(word, f"unknown field '{field}'")
    if name is not None and field not in ("gate", "tag"):
        raise _bad(word, f"{field} takes no '.NAME'")
    if field == "tag":
        if name is None:
            raise _bad(word, "name the tag: tag.KEY=VALUE, or tag.KEY for a tag that is set")
        if not TAG_KEY.fullmatch(name):
            raise _bad(word, f"'{name}' is not a tag key", f"a tag key is {TAG_KEY_RULE}")
        if op is None:
            return Term("tag", name, None, None, word)
    if op is None:
        ops = " ".join(FIELDS[field][0])
        raise _bad(word, f"{field} needs an operator and a value ({ops})")
    operators, what = FIELDS[field]
    if op not in operators:
        raise _bad(word, f"{field} takes {' '.join(operators)}, not {op}")
    if value == "":
        raise _bad(word, f"give a value after '{op}': {what}")
    if field == "gate" and value not in OUTCOMES:
        raise _bad(
            word,
            f"a gate's outcome is {', '.join(OUTCOMES)}, not {value!r}",
            f"e.g. {field if name is None else f'gate.{name}'}=waived",
        )
    if field == "policy" and not (value.isascii() and value.isdigit()):
        raise _bad(
            word,
            f"a policy version is a whole number (0: none), not {value!r}",
            "e.g. policy>=2, or policy=0 for what was recorded before any policy",
        )
    return Term(field, name, op, value, word)


def _instant(term: Term) -> tuple[str, str]:
    """The catalog times a `since` or `until` value spans: from its start, to just after it
    (a day: its start to the next day's)."""
    assert term.value is not None
    try:
        if len(term.value) == 10:
            day = date.fromisoformat(term.value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return _stamp(start), _stamp(start + timedelta(days=1))
        moment = datetime.fromisoformat(term.value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(
            term.text,
            "not a date",
            "give YYYY-MM-DD (a whole day, UTC) or an ISO 8601 time (2026-09-01T12:00:00Z)",
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return _stamp(moment), _stamp(moment + timedelta(microseconds=1))


def _stamp(moment: datetime) -> str:
    """A time as the catalog writes it (`chain.now`): comparable as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_sort(text: str) -> tuple[str, str]:
    """`FIELD[:asc|desc]`; exit 2 naming the fields."""
    field, _, direction = text.partition(":")
    if field not in SORTS or direction not in ("", "asc", "desc"):
        raise ManifestError(
            f"--sort {text!r}: sort by {', '.join(SORTS)}, optionally :asc or :desc",
            hint="e.g. --sort recorded:desc (the default), --sort size:asc",
        )
    return field, direction or SORTS[field]


# --- the SQL -----------------------------------------------------------------------------------


class CatalogSearch(CatalogAnnotations):
    """Searching variants (a base of `repository.Catalog`)."""

    def search(
        self,
        query: str | Query,
        *,
        sort: str = "recorded",
        limit: int = 20,
        page_token: str | None = None,
    ) -> SearchPage:
        """One page of the variants `query` matches, in `sort` order then by id; the page after
        the one `page_token` ended (exit 2 for a token of another query or sort)."""
        parsed = parse_query(query) if isinstance(query, str) else query
        field, direction = parse_sort(sort)
        if not 1 <= limit <= 1000:
            raise ManifestError(f"--limit {limit}: give 1 to 1000")
        v, r = schema.table(VariantRow), schema.table(RunRow)
        fingerprint = _fingerprint(parsed, f"{field}:{direction}")
        after = None if page_token is None else _read_token(page_token, fingerprint)

        # Where the database sorts a NULL size: SQLite below every value, PostgreSQL above.
        nulls_low = self.dialect == "sqlite"

        def ordering(t: Any) -> tuple[ColumnElement[Any], list[Any], list[ColumnElement[bool]]]:
            """The sort key of table `t` (variants or an alias of it), its ORDER BY, and the
            keyset condition that starts after the page token's row."""
            key = _sort_key(t, field)
            descending = direction == "desc"
            order = [key.desc(), t.c.id.desc()] if descending else [key, t.c.id]
            if after is None:
                return key, order, []
            return key, order, [_past(key, t.c.id, after, descending, nulls_low)]

        key, order, start = ordering(v)
        columns = (
            v.c.id,
            v.c.run_id,
            v.c.seed,
            v.c.stage,
            v.c.kind,
            v.c.artifact_sha256,
            v.c.recorded_at,
            v.c.size_bytes,
            r.c.recipe_name,
            r.c.recipe_version,
            key,
        )
        joined = v.join(r, r.c.run_id == v.c.run_id)

        def page_of(conditions: list[ColumnElement[bool]]) -> sa.Select[Any]:
            return (
                sa.select(*columns)
                .select_from(joined)
                .where(*conditions, *start)
                .order_by(*order)
                .limit(limit + 1)
            )

        with self._reading() as conn:
            if not parsed.terms:  # no term: the sort's index alone answers
                rows = conn.execute(page_of([])).all()
            else:
                # First scan: the next `_WINDOW` variants in sort order, read off the sort's
                # index and each checked against the terms (every term a per-row check, so
                # that no other index drives), stopping at the page's last row. Where matches
                # are common the page is found there. Else (rare matches) drive: each term
                # names its rows through its own index, and the database sorts those few.
                w = v.alias("w")
                w_key, w_order, w_start = ordering(w)
                if field == "recorded" and not any(t.field in _ALIAS_TERMS for t in parsed.terms):
                    # since/until bound the sort key itself: the window starts inside them
                    if parsed.since is not None:
                        w_start.append(w.c.recorded_at >= parsed.since)
                    if parsed.until is not None:
                        w_start.append(w.c.recorded_at < parsed.until)
                edge = conn.execute(
                    sa.select(w_key, w.c.id)
                    .where(*w_start)
                    .order_by(*w_order)
                    .offset(_WINDOW - 1)
                    .limit(1)
                ).first()
                within = []
                if edge is not None:  # up to the edge: not past it
                    edge_row = (edge[0], str(edge[1]))
                    past = _past(key, v.c.id, edge_row, direction == "desc", nulls_low)
                    # (a NULL key compared with a value is neither: not past)
                    within = [sa.or_(sa.not_(past), past.is_(None))]
                scan = self._conditions(conn, parsed, scan=field)
                rows = conn.execute(page_of([*scan, *within])).all()
                if len(rows) <= limit and edge is not None:
                    rows = conn.execute(page_of(self._conditions(conn, parsed))).all()
            page, more = rows[:limit], len(rows) > limit
            aliases = self._pointing(conn, [str(row[0]) for row in page])
        own = self.current_annotations("variant", [str(row[0]) for row in page])
        of_runs = self.current_annotations("run", sorted({str(row[1]) for row in page}))
        results = []
        for row in page:
            run_tags, _ = of_runs.get(str(row[1]), ({}, None))
            tags, description = own.get(str(row[0]), ({}, None))
            results.append(
                SearchHit(
                    id=row[0],
                    run_id=row[1],
                    seed=row[2],
                    stage=row[3],
                    kind=row[4],
                    artifact_sha256=row[5],
                    recorded_at=row[6],
                    size_bytes=row[7],
                    recipe=row[8],
                    recipe_version=row[9],
                    aliases=aliases.get(str(row[0]), []),
                    tags=dict(sorted({**run_tags, **tags}.items())),
                    description=description,
                )
            )
        token = _token(fingerprint, page[-1][10], str(page[-1][0])) if more and page else None
        return SearchPage(
            query=parsed.text,
            sort=f"{field}:{direction}",
            limit=limit,
            results=results,
            next_page_token=token,
        )

    def _pointing(self, conn: sa.Connection, ids: list[str]) -> dict[str, list[str]]:
        """The aliases that point at each of `ids` now (each alias's latest move)."""
        if not ids:
            return {}
        m, newer = schema.table(AliasMoveRow).alias("m"), schema.table(AliasMoveRow).alias("n")
        query = (
            sa.select(m.c.variant_id, m.c.alias)
            .where(m.c.variant_id.in_(ids), ~_newer_move(m, newer))
            .order_by(m.c.alias)
        )
        out: dict[str, list[str]] = {}
        for variant_id, alias in conn.execute(query):
            out.setdefault(str(variant_id), []).append(str(alias))
        return out

    def _conditions(
        self, conn: sa.Connection, query: Query, *, scan: str | None = None
    ) -> list[ColumnElement[bool]]:
        """The terms of `query` as conditions on variants `v` joined to runs `r`: each one
        driving (an IN over the rows its index names), or with `scan` (the sort field) a
        per-row check that no index but the sort's serves (a correlated EXISTS, a column
        turned into an expression)."""
        v, r = schema.table(VariantRow), schema.table(RunRow)

        def plain(column: ColumnElement[Any], indexed: bool = True) -> ColumnElement[Any]:
            return _plain(column) if scan is not None and indexed else column

        def member(column: ColumnElement[Any], rows: sa.Select[Any]) -> ColumnElement[bool]:
            if scan is None:
                return column.in_(rows)
            return sa.exists(rows.where(rows.selected_columns[0] == column))

        # A prefix also as a range its index serves, when driving on SQLite (whose text order
        # is by code point; PostgreSQL's collation may order otherwise).
        ranged = scan is None and self.dialect == "sqlite"
        moved = any(t.field in _ALIAS_TERMS for t in query.terms)
        out: list[ColumnElement[bool]] = []
        if not moved:
            recorded = plain(v.c.recorded_at, scan != "recorded")
            if query.since is not None:
                out.append(recorded >= query.since)
            if query.until is not None:
                out.append(recorded < query.until)
        seqs: list[int] | None = None
        for term in query.terms:
            value = term.value or ""
            cond: ColumnElement[bool]
            if term.field in ("since", "until"):
                continue
            if term.field == "recipe":
                cond = _matches(plain(r.c.recipe_name), term, ranged)
            elif term.field == "run":
                cond = _matches(plain(v.c.run_id), term, ranged)
            elif term.field == "stage":
                cond = _matches(plain(v.c.stage), term, ranged)
            elif term.field == "kind":
                cond = plain(v.c.kind) == value
            elif term.field == "owner":
                # The signers are a canonical JSON list of names: the name, JSON-quoted, is in
                # it exactly when it is one of them (instr/strpos: exact, where LIKE is not).
                # Driving, the runs are read (fewer than their variants) and their variants
                # reached through the run index.
                needle = json.dumps(value, ensure_ascii=False)
                found = sa.func.instr if self.dialect == "sqlite" else sa.func.strpos
                if scan is not None:
                    cond = found(r.c.signers, needle) > 0
                else:
                    signers = schema.table(RunRow).alias("s")
                    named = sa.select(signers.c.run_id).where(found(signers.c.signers, needle) > 0)
                    cond = v.c.run_id.in_(named)
            elif term.field in _ALIAS_TERMS:
                cond = member(v.c.id, _moves(term, query, plain))
            elif term.field == "gate" or term.field == "waived":
                cond = member(v.c.run_id, _gates(term, plain))
            elif term.field in ("waiver", "signoff"):
                a = schema.table(ApprovalRow)
                signed = sa.select(a.c.run_id).where(plain(a.c.owner) == value)
                if term.field == "waiver":
                    signed = signed.where(plain(a.c.kind) == "waiver")
                cond = member(v.c.run_id, signed)
            elif term.field == "policy":
                if seqs is None:
                    seqs = self._policy_seqs(conn)
                cond = _policy(plain(v.c.event_seq), seqs, term)
            else:
                assert term.field == "tag"
                cond = self._tagged(term, member if scan is not None else None)
            out.append(sa.not_(cond) if term.op == "!=" else cond)
        return out

    def _policy_seqs(self, conn: sa.Connection) -> list[int]:
        """The event number of each policy version, version 1 first."""
        if self.applied < POLICY_FROM:
            return []
        p = schema.table(PolicyRow)
        return [int(s) for (s,) in conn.execute(sa.select(p.c.event_seq).order_by(p.c.version))]

    def _tagged(self, term: Term, member: Any = None) -> ColumnElement[bool]:
        """A variant's effective tag: its own, else its run's. With `member` (a scan), checked
        row by row; else one IN over the variants it names."""
        if self.applied < ANNOTATIONS_FROM:
            return sa.false()
        v = schema.table(VariantRow)
        assert term.name is not None
        wanted = term.value or ""

        def holds(value: ColumnElement[Any]) -> ColumnElement[bool]:
            if term.op is None:  # the tag is set
                return value.is_not(None)
            if term.op == "~":
                return sa.func.substr(value, 1, len(wanted)) == wanted
            return value == wanted

        # Scanning, the subject's index alone serves (a key's value index would read every
        # subject's row of the key for each variant).
        plain = _plain if member is not None else (lambda column: column)
        own = _latest_tag("variant", term.name, holds, plain)
        own_any = _latest_tag("variant", term.name, lambda value: value.is_not(None), plain)
        runs = _latest_tag("run", term.name, holds, plain)
        if member is not None:
            inherited = sa.and_(sa.not_(member(v.c.id, own_any)), member(v.c.run_id, runs))
            return sa.or_(member(v.c.id, own), inherited)
        named = sa.select(v.c.id).where(v.c.run_id.in_(runs), v.c.id.not_in(own_any))
        return v.c.id.in_(sa.union(own, named))


def _sort_key(t: Any, field: str) -> ColumnElement[Any]:
    """What `field` sorts table `t` (variants, or an alias of it) by: each one the leading
    column of an index (`migrations._v7`)."""
    column = {"recorded": "recorded_at", "id": "id", "size": "size_bytes"}[field]
    return t.c[column]  # type: ignore[no-any-return]


def _past(
    key: ColumnElement[Any],
    row_id: ColumnElement[Any],
    row: tuple[Any, str],
    descending: bool,
    nulls_low: bool,
) -> ColumnElement[bool]:
    """The rows after `row` (its key, its id) in the order (key, id), ascending or
    `descending`, where a NULL key (a size never recorded) sorts below every value when
    `nulls_low` (SQLite) and above every value otherwise (PostgreSQL)."""
    value, last_id = row
    later = row_id < last_id if descending else row_id > last_id
    # NULLs come after the values in this direction when they sort low and we go down, or
    # sort high and we go up.
    nulls_after = nulls_low == descending
    if value is None:
        same = sa.and_(key.is_(None), later)
        return same if nulls_after else sa.or_(same, key.is_not(None))
    pair, bound = sa.tuple_(key, row_id), sa.tuple_(sa.literal(value), last_id)
    beyond = pair < bound if descending else pair > bound
    return sa.or_(beyond, key.is_(None)) if nulls_after else beyond


def _matches(column: ColumnElement[Any], term: Term, ranged: bool = False) -> ColumnElement[bool]:
    """= (and !=, negated by the caller) or ~ (a prefix, case-sensitive on both databases;
    `ranged`: also stated as the range of code points it spans, which an index serves)."""
    assert term.value is not None
    if term.op != "~":
        return column == term.value
    prefix = sa.func.substr(column, 1, len(term.value)) == term.value
    if not ranged:
        return prefix
    return sa.and_(column >= term.value, column < term.value + "\U0010ffff", prefix)


def _alias_named(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """NAME matches NAME and every RECIPE:NAME (an alias under a policy); RECIPE:NAME itself."""
    if ":" in name:
        return column == name
    suffix = f":{name}"
    tail = sa.func.substr(column, sa.func.length(column) - len(suffix) + 1)
    return sa.or_(column == name, tail == suffix)


def _newer_move(m: Any, newer: Any) -> ColumnElement[bool]:
    return sa.exists().where(newer.c.alias == m.c.alias, newer.c.event_seq > m.c.event_seq)


def _plain(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """`column` as an expression no index serves (`x + 0`, `x || ''`): where a scan checks a
    term row by row, the planner then cannot pick that column's index to drive instead."""
    return column + 0 if column.type.python_type is int else column.concat("")


def _moves(term: Term, query: Query, plain: Any) -> sa.Select[Any]:
    """The variants an alias term names: moved to by NAME (alias), or NAME's target now
    (current); with `since`/`until`, by a move in that range."""
    assert term.value is not None
    m = schema.table(AliasMoveRow).alias("m")
    moves = sa.select(m.c.variant_id).where(_alias_named(plain(m.c.alias), term.value))
    if term.field == "current":
        moves = moves.where(~_newer_move(m, schema.table(AliasMoveRow).alias("n")))
    if query.since is not None:
        moves = moves.where(m.c.moved_at >= query.since)
    if query.until is not None:
        moves = moves.where(m.c.moved_at < query.until)
    return moves


def _gates(term: Term, plain: Any) -> sa.Select[Any]:
    """The runs with a gate (named, or any) of the term's outcome."""
    outcome = "waived" if term.field == "waived" else term.value
    if outcome == "waived":
        a = schema.table(ApprovalRow)
        runs = sa.select(a.c.run_id).where(plain(a.c.kind) == "waiver")
        return runs.where(plain(a.c.gate) == term.name) if term.name is not None else runs
    g = schema.table(GateDecisionRow)
    runs = sa.select(g.c.run_id).where(plain(g.c.verdict) == outcome)
    return runs.where(plain(g.c.gate) == term.name) if term.name is not None else runs


def _policy(seq: ColumnElement[Any], seqs: list[int], term: Term) -> ColumnElement[bool]:
    """The policy version in force at event `seq` compared to the term's: version N is in
    force after its event and before version N+1's (0: before version 1's)."""
    n = int(term.value or 0)

    def after(version: int) -> ColumnElement[bool]:  # version `version` or a later one
        if version == 0:
            return sa.true()
        return seq > seqs[version - 1] if version <= len(seqs) else sa.false()

    if term.op == ">=":
        return after(n)
    if term.op == "<=":
        return sa.not_(after(n + 1))
    return sa.and_(after(n), sa.not_(after(n + 1)))


def _latest_tag(subject_kind: str, key: str, holds: Any, plain: Any) -> sa.Select[Any]:
    """The subjects of `subject_kind` whose latest event of tag `key` has a value that
    `holds`."""
    table = schema.table(AnnotationRow)
    a, b = table.alias("a"), table.alias("b")
    newer = sa.exists().where(
        b.c.subject_kind == a.c.subject_kind,
        b.c.subject_id == a.c.subject_id,
        b.c.kind == a.c.kind,
        b.c.key == a.c.key,
        b.c.event_seq > a.c.event_seq,
    )
    return sa.select(a.c.subject_id).where(
        plain(a.c.kind) == "tag",
        a.c.key == key,
        a.c.subject_kind == subject_kind,
        holds(a.c.value),
        ~newer,
    )


# --- page tokens -------------------------------------------------------------------------------


def _fingerprint(query: Query, sort: str) -> str:
    return hashlib.sha256(f"{query.text}\n{sort}".encode()).hexdigest()[:16]


def _token(fingerprint: str, after: Any, after_id: str) -> str:
    body = json.dumps([fingerprint, after, after_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode("utf-8")).decode("ascii").rstrip("=")


def _read_token(token: str, fingerprint: str) -> tuple[Any, str]:
    """Where the page after `token` starts; exit 2 for a token not made by this query and
    sort."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        found, after, after_id = json.loads(raw)
        valid = isinstance(after_id, str) and (after is None or isinstance(after, str | int))
    except (ValueError, TypeError, binascii.Error):
        valid, found = False, None
    if not valid:
        raise ManifestError(
            f"--page-token {token[:24]!r} is not a page token",
            hint="pass the next_page_token a search printed, unchanged",
        )
    if found != fingerprint:
        raise ManifestError(
            "--page-token belongs to another query or sort: a token continues the search that "
            "printed it",
            hint="repeat that search's query and --sort with the token, or start again without it",
        )
    return after, after_id
