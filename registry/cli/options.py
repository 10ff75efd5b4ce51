"""The options several commands share: paths, trust, workspace, catalog, environments, actor,
JSON output, and the sign-off options of `approve` and `waive`.

Only click is imported here: every command module decorates with these at import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from compressgate.registry.workspace import Workspace

FILE = click.Path(path_type=Path, dir_okay=False)
DIR = click.Path(path_type=Path, file_okay=False)

# Where the root group finds the workspace a command was given, to put an internal error's
# log in its logs/ folder (click shares `meta` between a context and its children).
WORKSPACE_META = "compressgate.workspace"


def _remember_workspace(ctx: click.Context, _: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        ctx.meta[WORKSPACE_META] = value
    return value


TRUST_OPTION = click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file of owners and keys [default: trust.yaml beside the recipe].",
)
RUN_TRUST_OPTION = click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file the sign-offs are checked against [default: trust.yaml beside the "
    "recipe the run recorded].",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
WORKSPACE_OPTION = click.option(
    "--workspace",
    type=DIR,
    envvar="COMPRESSGATE_WORKSPACE",
    callback=_remember_workspace,
    help="Where the artifact store, the stage cache and the default catalog live "
    "[default: ./.compressgate].",
)
ENVS_OPTION = click.option(
    "--envs",
    type=DIR,
    envvar="COMPRESSGATE_ENVS",
    help="Where environments built from locks are kept, one folder per lock sha256 "
    "[default: WORKSPACE/envs].",
)
CATALOG_OPTION = click.option(
    "--catalog",
    metavar="URL",
    envvar="COMPRESSGATE_CATALOG",
    help="Catalog database: a path or sqlite:///PATH, or postgresql+psycopg://USER@HOST/DB "
    "[default: WORKSPACE/catalog.db].",
)
ACTOR_OPTION = click.option(
    "--actor",
    envvar="COMPRESSGATE_ACTOR",
    help="Who is acting, for the record [default: the login name].",
)

RUNNER_KEY_OPTION = click.option(
    "--key",
    "runner_key",
    type=FILE,
    envvar="COMPRESSGATE_RUNNER_KEY",
    help="A runner's private key: attests the run (required under a trust policy).",
)

SIGNOFF_OPTIONS = [
    click.option("--gate", required=True, help="The gate's name in the recipe."),
    click.option("--key", "key_path", type=FILE, help="The gate owner's private key."),
    click.option(
        "--envelope",
        "envelope_path",
        type=FILE,
        help="Record a sign-off the owner signed elsewhere (instead of --key).",
    ),
    click.option("--out", type=FILE, help="Also write the signed envelope here."),
    RUN_TRUST_OPTION,
    WORKSPACE_OPTION,
    CATALOG_OPTION,
    JSON_OPTION,
]


def with_options(options: list[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Apply a list of click options in order, as if each decorated the command."""

    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def open_workspace(
    workspace: Path | None,
    *,
    catalog: str | None = None,
    trust: Path | None = None,
    envs: Path | None = None,
    key: Path | None = None,
) -> Workspace:
    """The command's one `Workspace`, built from its options (use it in a `with` block)."""
    from compressgate.registry.workspace import Workspace

    return Workspace(workspace, catalog=catalog, trust=trust, envs=envs, key=key)


# Characters that steer a terminal instead of being shown: C0 and C1 controls, DEL, and the
# bidirectional overrides and isolates that reorder what is read ("Trojan Source").
_STEERING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What else breaks a line or a table cell: tab, line feed and the Unicode line separators.
_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    return ascii(match.group())[1:-1]


def printable(text: str, *, one_line: bool = False) -> str:
    """`text` as a terminal may show it: every character that steers a terminal (an ANSI
    escape sequence in a file name or a value, a carriage return, a bidi override) written as
    its escape (`\\x1b`, `\\r`, `\\u202e`). With `one_line` (a table cell, a field of a line),
    tabs and line breaks too, so that what someone typed cannot draw a row or a line of its
    own. Every line and cell of text a command prints that a person supplied goes through
    here."""
    return (_BREAKING if one_line else _STEERING).sub(_escape, text)


def json_printable(text: str) -> str:
    """JSON text (`json.dumps` with `ensure_ascii`) with the characters that steer a terminal
    and that JSON leaves as they are (DEL, and any other when not `ensure_ascii`) written as
    `\\u` escapes: the same JSON value, inert on a terminal. They can only stand in strings."""
    return _STEERING.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
