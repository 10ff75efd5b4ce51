"""The root `compressgate` group: its commands, and the one place that turns errors into
messages and exit codes.

- a `CompressgateError`: `Error: <message>` (one line per line of it) and `hint: <hint>` on
  stderr, exit with its code (1 to 6, `compressgate.registry.kernel.errors`);
- a click usage error: one line, `Error: … (see 'compressgate CMD --help')`, exit 2;
- Ctrl-C: `Aborted!`, exit 130;
- under `--json`, each of these is also one JSON object on stdout, `{"error": …, "exit_code": …,
  "hint": …}`, so that a program reading stdout learns why there is no result;
- anything else is a bug: one line `Error: internal error (BUG): <type>: <message>; traceback
  in <log>`, the full traceback in that log file (mode 0600), exit 70 — never 1, which means
  "a gate failed". The log goes to $COMPRESSGATE_LOG_DIR, else the workspace's logs/ folder
  (the command's --workspace, or ./.compressgate when it exists), else the system's temporary
  folder.

`-v/--verbose` (or $COMPRESSGATE_LOG=debug|info|warning|error) turns on the standard `logging`
records of the `compressgate` loggers on stderr: what is verified, built, reused and run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from compressgate.registry.cli import (
    alias,
    annotate,
    audit,
    catalog,
    ci,
    env,
    keys,
    recipe,
    report,
    review,
)
from compressgate.registry.cli import export as export_commands
from compressgate.registry.cli import plugins as plugin_commands
from compressgate.registry.cli import policy as _policy  # noqa: F401 - adds `trust` verbs
from compressgate.registry.cli import run as run_commands
from compressgate.registry.cli import sweep as sweep_commands
from compressgate.registry.cli import validate as _validate
from compressgate.registry.cli.options import WORKSPACE_META, printable
from compressgate.registry.kernel.errors import EXIT_INTERNAL, CompressgateError

LOG_DIR_ENV = "COMPRESSGATE_LOG_DIR"
LOG_ENV = "COMPRESSGATE_LOG"
JSON_META = "compressgate.json_errors"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _json_error(message: str, exit_code: int, hint: str | None = None) -> None:
    """The error as one JSON object on stdout (under `--json`)."""
    click.echo(json.dumps({"error": message, "exit_code": exit_code, "hint": hint}))


class _UsageLine(click.UsageError):
    """A usage error shown as one line, `Error: … (see 'compressgate run --help')`, exit 2."""

    def __init__(self, error: click.UsageError, *, as_json: bool) -> None:
        super().__init__(error.format_message(), error.ctx)
        self.as_json = as_json

    def show(self, file: Any = None) -> None:
        see = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        message = " ".join(self.format_message().split()).removesuffix(".")
        click.echo(printable(f"Error: {message}{see}"), err=True)
        if self.as_json:
            _json_error(f"{message}{see}", self.exit_code)


def _one_line(error: click.UsageError, args: list[str]) -> click.UsageError:
    # A group called without a command still prints its help, as click does.
    if isinstance(error, click.exceptions.NoArgsIsHelpError):
        return error
    return _UsageLine(error, as_json="--json" in args)


class _Compressgate(click.Group):
    """The root group: the one place that turns our errors into messages and exit codes."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        given = list(args)
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc, given) from None
        ctx.meta[JSON_META] = "--json" in given
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get(JSON_META))
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc, ["--json"] if as_json else []) from None
        except CompressgateError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(printable(f"Error: {line}"), err=True)
            if exc.hint:
                click.echo(printable(f"hint: {exc.hint}"), err=True)
            if as_json:
                _json_error(str(exc) or type(exc).__name__, exc.exit_code, exc.hint)
            ctx.exit(exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: it prints them and exits with their codes
        except KeyboardInterrupt:
            click.echo(err=True)  # closes the terminal's ^C
            click.echo("Aborted!", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # stdout closed early (`| head`): click quiets it
            _internal_error(ctx, exc)


def _internal_error(ctx: click.Context, exc: Exception) -> NoReturn:
    """A bug: one line on stderr naming the log that holds the traceback; exit 70."""
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"
    message = printable(" ".join(str(exc).split()))
    what = f"{kind}: {message}" if message else kind
    try:
        log = _write_log(exc, ctx.meta.get(WORKSPACE_META))
    except OSError as problem:
        click.echo(
            f"Error: internal error (BUG): {what}; no log could be written ({problem}): "
            "the traceback follows",
            err=True,
        )
        click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
    else:
        click.echo(f"Error: internal error (BUG): {what}; traceback in {log}", err=True)
    if ctx.meta.get(JSON_META):
        _json_error(f"internal error (BUG): {what}", EXIT_INTERNAL)
    ctx.exit(EXIT_INTERNAL)


def _log_folders(workspace: Path | None) -> list[Path]:
    """Where an internal error's log may go, in order of preference."""
    folders = []
    if os.environ.get(LOG_DIR_ENV):
        folders.append(Path(os.environ[LOG_DIR_ENV]))
    known = workspace if workspace is not None else Path(".compressgate")
    if known.is_dir():
        folders.append(known / "logs")
    folders.append(Path(tempfile.gettempdir()))
    return folders


def _write_log(exc: Exception, workspace: Path | None) -> Path:
    """Write the traceback (with the command line and versions) to a new file, mode 0600, in
    the first folder that takes it; its path."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("compressgate")
    except PackageNotFoundError:
        ours = "unknown"
    at = datetime.now(UTC)
    text = (
        f"compressgate internal error at {at.isoformat()}\n"
        f"command: {' '.join(sys.argv)}\n"
        f"compressgate {ours}, Python {sys.version.split()[0]} ({sys.executable})\n\n"
        + "".join(traceback.format_exception(exc))
    )
    name = f"compressgate-internal-{at.strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}.log"
    last: OSError | None = None
    for folder in _log_folders(workspace):
        path = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as problem:
            last = problem
            continue
        with os.fdopen(handle, "w", encoding="utf-8") as log:
            log.write(text)
        return path.resolve()
    assert last is not None
    raise last


@click.group(cls=_Compressgate, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compressgate")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log what is verified, built, reused and run on stderr (-v info, -vv debug; "
    "or $COMPRESSGATE_LOG=LEVEL).",
)
def cli(verbose: int) -> None:
    """Govern model compression: signed recipes, gated decisions, an auditable catalog.

    Exit codes: 0 ok, 1 a gate failed or a review was rejected, 2 bad input,
    3 integrity failure, 4 not found, 5 environment mismatch, 6 conflict (another process
    changed it first: retry), 70 internal error (a bug: the log named holds the traceback),
    130 interrupted. Under --json an error is also a JSON object on stdout:
    {"error": ..., "exit_code": ..., "hint": ...}.
    """
    configure_logging(verbose)
    # When this command started, for the commands that report their wall time (`audit
    # verify`): the console script's process start (`main`), else now (in-process callers).
    context = click.get_current_context()
    if not isinstance(context.obj, dict) or "started" not in context.obj:
        context.obj = {"started": time.perf_counter()}


def started() -> float:
    """When the running command started, on the `time.perf_counter()` clock."""
    obj = click.get_current_context().find_root().obj
    return (
        float(obj["started"]) if isinstance(obj, dict) and "started" in obj else time.perf_counter()
    )


def _process_start() -> float:
    """When this process started, on the `time.perf_counter()` clock: from the kernel's record
    of it (Linux, to a clock tick: the interpreter's start and the imports included), else
    now."""
    now = time.perf_counter()
    try:
        with Path("/proc/self/stat").open("rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0 <= age < 60 else now


def configure_logging(verbose: int) -> None:
    """The `compressgate` loggers on stderr at the level -v/-vv or $COMPRESSGATE_LOG asks for
    (the more verbose of the two); nothing is logged otherwise. Other libraries' loggers are
    left as they are."""
    named = os.environ.get(LOG_ENV, "").strip().lower()
    if named and named not in _LEVELS:
        raise click.UsageError(
            f"${LOG_ENV}={named!r} is not a level: use debug, info, warning or error"
        )
    levels = [_LEVELS[named]] if named else []
    if verbose:
        levels.append(logging.INFO if verbose == 1 else logging.DEBUG)
    logger = logging.getLogger("compressgate")
    for handler in list(logger.handlers):
        if getattr(handler, "compressgate_cli", False):
            logger.removeHandler(handler)
    if not levels:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.compressgate_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    logger.addHandler(handler)
    logger.setLevel(min(levels))
    logger.propagate = False


COMMANDS: tuple[click.Command, ...] = (
    recipe.recipe,
    _validate.validate,
    keys.keys,
    keys.trust,
    run_commands.run,
    run_commands.reproduce,
    run_commands.evaluate,
    env.env_group,
    catalog.catalog_group,
    annotate.tag,
    annotate.describe,
    report.report,
    export_commands.export_group,
    review.submit,
    review.resume,
    review.review_group,
    review.approve,
    review.waive,
    ci.ci,
    alias.promote,
    alias.rollback,
    alias.alias_group,
    audit.audit_group,
    plugin_commands.plugins,
    sweep_commands.sweep_group,
)
for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """The console script. Once the command has answered, the process ends without tearing
    down the interpreter: with SQLAlchemy, pydantic and our models loaded, collecting and
    freeing every module's objects took a fifth of a second a command (0.17 s on this
    machine), after the answer was printed. What must happen at exit still does: the
    standard streams and logging flushed, and every `atexit` function run (multiprocessing's,
    Ray's, temporary files'). The cyclic garbage collector runs a thirtieth as often as
    Python's default: a command's imports allocate some million objects that all live to the
    end, and the default's collections over them took about 30 ms of a read command's half
    second; objects are still freed as their last reference goes."""
    import gc

    gc.set_threshold(20_000, 20, 20)
    try:
        cli(prog_name="compressgate", obj={"started": _process_start()})
    except SystemExit as exc:
        _end(exc.code)
    _end(0)


def _end(code: object) -> NoReturn:
    """Exit with `code` as `sys.exit` would take it, skipping the interpreter's teardown."""
    import atexit

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, exit 1
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe (`| head`) or stream: nothing left to flush.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    atexit._run_exitfuncs()
    os._exit(status)
