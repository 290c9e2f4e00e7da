"""One console pair and one progress-bar factory for everything that talks to a person.

Results (tables a user may pipe into a file) go to `out`; messages, warnings and progress go
to `err`, which never wraps a line (a long path stays one line, greppable in logs)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

out = Console()
err = Console(stderr=True, soft_wrap=True)


def progress(*extra: ProgressColumn, disable: bool = False) -> Progress:
    """A progress bar on stderr: description, bar, done/total, then `extra` columns, elapsed time.
    `disable=True` where nobody watches (a retrain inside the service logs instead)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra, TimeElapsedColumn(),
                    console=err, disable=disable)
