"""The catalog: the append-only, hash-chained database of recipes, runs, variants, evaluations,
gate outcomes, sign-offs, alias moves, reports, sweeps and tags (SQLite or PostgreSQL), the
content-addressed artifact store beside it, and the audit checks over both.

Only this package knows SQL. It takes and returns pydantic records, never sessions or rows.
The map, from the bottom up (this module imports none of them: `compressgate --help` loads no
database driver):

- `schema`: the SQLModel tables; each table's fields declared once, in a `*Fields` base that
  its row and its record share (`StageFields`: what a stage made, for `VariantRow`,
  `VariantRecord` and `StageRecord`);
- `migrations`: the schema history, v1 to v7, frozen as DDL, and the append-only triggers;
- `chain`: canonical JSON, event bodies and chain hashes, and the compact forms documents are
  stored in from v4 on (defaults left out, a repeated estimate stored once, long documents
  deflated);
- `records`: the run as the executor holds it (`RunRecord`, `StageRecord`) and the frozen
  records the catalog hands out (`VariantRecord`, `JudgementRecord`, `SignoffRecord`, `ReportEntry`,
  `AliasMove`, `Head`, …);
- `connection`: the catalog URL, the engine, one transaction per read or write, database
  errors as ours, migrating, and the chained append;
- `queries`: the read verbs; `integrity`: the audit checks (`verify_chain`, `verify_rows`,
  `verify_storage`, `verify_triggers`); `policies`: trust policy versions, releases,
  attestations and resumes (v5); `sweeps`: sweeps, their trials and ends (v6);
  `annotations`: tags and descriptions of runs and variants (v7); `search`: `catalog search`'s
  filter language and its queries;
- `repository`: `Catalog`, the one door, built from the modules above, with the write verbs;
  the names other packages import stay importable from it;
- `audit`: `compressgate audit` (checkpoints, report files, artifacts) over a `Catalog`;
- `store`: the content-addressed artifact store; `views`: what the catalog commands return.
"""
