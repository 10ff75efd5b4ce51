"""The catalog: the append-only, hash-chained database of recipes, runs, variants, evaluations,
gate outcomes, sign-offs, alias moves and reports (SQLite or PostgreSQL), the content-addressed
artifact store beside it, and the audit checks over both.

Only this package knows SQL. It takes and returns pydantic records (`records`), never sessions
or rows.
"""
