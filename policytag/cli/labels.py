"""`policytag labels …`: look at and check codebooks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from policytag.console import err, out
from policytag.labels.schema import CodebookError, load_codebook


app = typer.Typer(help="Show and validate label codebooks.", no_args_is_help=True)

SchemaOption = typer.Option(None, "--schema", help="Codebook YAML (default: the shipped IHMS codebook).")


def load_or_exit(path: Optional[Path]):
    """Load a codebook for a command; a bad one ends the command with a clear message."""
    try:
        return load_codebook(path)
    except CodebookError as exc:
        err.print(f"[red]invalid codebook[/red] {exc}")
        raise typer.Exit(2)


@app.command("show")
def show(schema: Optional[Path] = SchemaOption) -> None:
    """Print the codebook as a table: dimension, group, id, names, definition."""
    book = load_or_exit(schema)
    if not out.is_terminal:  # piped into a file or a pager: don't squeeze to 80 columns
        out.width = 200
    table = Table(title=f"{book.name} v{book.version} — {len(book.flat_labels)} labels", show_lines=False)
    for col in ("dimension", "group", "id", "中文"):
        table.add_column(col, no_wrap=True)  # ids must stay copy-pasteable
    table.add_column("English", overflow="fold")
    table.add_column("definition", overflow="fold", ratio=1)
    for dim in book.dimensions:
        for label in dim.labels:
            group = book.group(label.group) if label.group else None
            table.add_row(f"{dim.id} ({dim.zh})", f"{group.id} ({group.zh})" if group else "",
                          label.id, label.zh, label.en, label.definition)
    out.print(table)


@app.command("validate")
def validate(file: Path = typer.Argument(..., help="Codebook YAML to check.")) -> None:
    """Check a codebook; exit 0 and a summary when valid, 2 and the problem when not."""
    book = load_or_exit(file)
    dims = ", ".join(f"{d.id} ({len(d.labels)} labels{f', {len(d.groups)} groups' if d.groups else ''})" for d in book.dimensions)
    out.print(f"[green]valid[/green] {file}: schema {book.name} v{book.version}: {dims}")
