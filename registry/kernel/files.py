"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    overwrite: bool = True,
    before: Callable[[], object] | None = None,
) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place.

    With `overwrite=False` an existing `path` is left alone and FileExistsError is raised.
    `before` runs once the bytes are safely on disk and before the rename (a report is recorded
    there): if it raises, or the process dies in it, `path` is never written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before is not None:
            before()
        if overwrite:
            tmp.replace(path)
        else:
            # link() fails if the target exists, so a concurrent writer cannot be clobbered.
            os.link(tmp, path)
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def read_input(path: Path, what: str) -> bytes:
    """The bytes of an input file the user named (`what`: "private key", "policy", …); missing
    is exit 4, a folder or an unreadable file exit 2, each naming the file."""
    from compressgate.registry.kernel.errors import ManifestError, NotFoundError

    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path} is a directory, not a {what} file") from None
    except OSError as exc:  # a symbolic link loop, no permission to read, …
        raise ManifestError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
