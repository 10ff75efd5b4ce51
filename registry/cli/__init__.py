"""The `compressgate` command line: thin over the Python API, `compressgate.registry.Workspace`.

Each command parses its arguments, makes one API call and prints. The package holds one module
per noun (`recipe`, `keys` and trust, `run` with reproduce and evaluate, `env`, `catalog`,
`review` with submit, approve and waive, `alias` with promote and rollback, `audit`, `report`,
`ci`, and `validate`, which checks each file as its kind says), the options they share
(`options`), how results are printed (`tables`), the progress display (`progress`), and the root
group with the one place that turns errors into exit codes (`app`). Importing it loads click and
nothing heavy: every command imports what it needs when it runs, so that `compressgate --help`
answers at once and the read commands start fast.
"""

from __future__ import annotations

from compressgate.registry.cli.app import cli, main

__all__ = ["cli", "main"]
