"""Progress bars for the tools that read a range of a topic (`dlq replay`, `budget estimate`):
rich's, one line per task with records done of total, rate and time left. They are drawn only on
a terminal, so a pipe, a log file or a CI run gets the summary alone."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Rate(ProgressColumn):
    """Records a second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


def progress_bar(out: IO[str]) -> Progress:
    """A `Progress` writing to `out`, disabled unless `out` is a terminal; use it as a context
    manager, one `add_task(description, total=records)` per bar."""
    console = Console(file=out)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
