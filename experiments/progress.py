"""A live progress bar for the search on stderr: trials done, front size, ETA.

On a terminal it is a rich progress bar with log lines above it; elsewhere (pipes, CI logs) it
prints one plain line per event, so logs stay readable. stdout is left to the final summary.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class SearchProgress:
    """Progress of one search; ``done`` starts at the trials already finished (resume)."""

    def __init__(self, total: int, done: int = 0, *, title: str = "search", enabled: bool = True) -> None:
        self.total = total
        self.done = done
        self.front = 0
        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False)
        self.live = enabled and self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self.title = title

    def __enter__(self) -> SearchProgress:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("front {task.fields[front]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=self.console, transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.title, total=self.total, completed=self.done, front=self.front)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
            self._progress = None

    def log(self, message: str) -> None:
        """A line above the bar (or a plain stderr line without a terminal)."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def update(self, done: int, front: int) -> None:
        self.done, self.front = done, front
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, front=front)
