"""The progress display of long commands: rich progress bars on stderr.

The engine draws nothing itself: it takes any object with `task(description, total)` (the
`compressgate.recipes.stages.base.Progress` protocol) in `RunOptions.progress`, and the CLI
hands it a `RichProgress`. Bars are drawn only when stderr is a terminal; elsewhere the steps
tick silently. rich is imported when a progress display is made, not with the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compressgate.recipes.training import Ticker


class _Silent:
    def advance(self, steps: int = 1) -> None:
        pass


class RichProgress:
    """Progress bars on stderr for the long steps (epochs, rounds, calibration)."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Ticker]:
        if not self.enabled:
            yield _Silent()
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as bars:
            task_id = bars.add_task(description, total=total)

            class _Ticker:
                def advance(self, steps: int = 1) -> None:
                    bars.advance(task_id, steps)

            yield _Ticker()
