"""One exception tree for every error compressgate raises on purpose.

    CompressgateError                 exit 1  (root; str(err) is shown to users verbatim)
    ├── Refused                       exit 1  a gate has not passed: promotion refused
    ├── ManifestError (ValueError)    exit 2  bad input: manifest, trust file, key, arguments
    ├── StageError                    exit 2  a stage cannot run on the recipe's model or data
    ├── IntegrityError                exit 3  signature, digest, broken chain
    ├── NotFoundError (LookupError)   exit 4  a file, run or variant that does not exist
    ├── EnvironmentMismatch           exit 5  the running environment differs from the lock
    └── Conflict                      exit 6  another process changed it first: retry

Anything else that escapes a command is a bug: the CLI prints one line naming a log file that
holds the traceback, and exits 70 (`EXIT_INTERNAL`, sysexits' EX_SOFTWARE) — never 1, which
means "a gate failed". A failing gate is a result, not an exception. docs/architecture.md lists
the exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_INTEGRITY = 3
EXIT_NOT_FOUND = 4
EXIT_ENVIRONMENT = 5
EXIT_CONFLICT = 6
EXIT_INTERNAL = 70


class CompressgateError(Exception):
    """Root of every error we raise on purpose; str(err) is shown to users verbatim."""

    exit_code: ClassVar[int] = EXIT_REJECTED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Issue:
    """One problem in an input document, located as precisely as we can."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class Refused(CompressgateError):
    """Governance refuses the action: a gate has not passed, a review is not approved."""

    exit_code = EXIT_REJECTED


class ManifestError(CompressgateError, ValueError):
    """Bad input: a manifest, trust file, key or argument that cannot be used as given."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self, message: str | None = None, *, issues: tuple[Issue, ...] = (), hint: str | None = None
    ) -> None:
        if message is None:
            message = "\n".join(str(issue) for issue in issues)
        super().__init__(message, hint=hint)
        self.issues = issues


class IntegrityError(CompressgateError):
    """A signature, digest or hash chain does not verify."""

    exit_code = EXIT_INTEGRITY


class NotFoundError(CompressgateError, LookupError):
    """A file, run, variant or alias that does not exist."""

    exit_code = EXIT_NOT_FOUND


class EnvironmentMismatch(CompressgateError):
    """The running environment differs from the recipe's pinned lock."""

    exit_code = EXIT_ENVIRONMENT


class StageError(CompressgateError):
    """A stage cannot do what the recipe asks of it with this model and data.

    Bad input found at run time (an unknown layer name, an empty calibration split, a factory
    that raises, a student that does not fit the data): exit 2, like any other bad input. The
    message names the stage and the seed; the stage leaves no artifact behind.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, stage: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.stage = stage


class Conflict(CompressgateError):
    """A lost race: another process moved the alias or recorded the sign-off first.

    Nothing was written; the same command, run again, sees the other process's change.
    """

    exit_code = EXIT_CONFLICT

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = "conflict: retry the command, which then sees the other change",
    ) -> None:
        super().__init__(message, hint=hint)
