"""The one progress bar every long command shows: what, how far, and the time left."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


def progress_bar(
    *, console: Console | None = None, transient: bool = True, label_width: int = 0
) -> Progress:
    label = f"{{task.description:<{label_width}}}" if label_width else "{task.description}"
    return Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        transient=transient,
        console=console,
    )
