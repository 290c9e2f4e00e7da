"""`policytag report`: the 6D tables for a tagged corpus."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

err = Console(stderr=True)
out_console = Console()


def report(
    tags: Path = typer.Argument(..., help="Output of `policytag predict` (.jsonl/.csv/.xlsx/.parquet)."),
    out: Path = typer.Option(..., "--out", help="Folder for the workbook, CSVs, charts and HTML page."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="Codebook YAML (default: shipped IHMS)."),
    charts: bool = typer.Option(True, help="Draw PNG charts (needs a font with Chinese glyphs)."),
) -> None:
    """Regenerate the 6D paper's 1D and 2D tables for any tagged corpus."""
    from labels.cli import load_or_exit
    from models.batch import read_tags

    from .render import FontMissing, write_report
    from .sixd import build_tables

    book = load_or_exit(schema)
    try:
        frame = read_tags(tags)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read {tags}[/red]: {exc}")
        raise typer.Exit(2)
    missing = [d for d in book.dimension_ids if d not in frame.columns]
    if missing or "doc_id" not in frame.columns:
        err.print(f"[red]{tags} is not a tags file for codebook {book.name}[/red]: missing columns {missing or ['doc_id']}")
        raise typer.Exit(2)
    tables = build_tables(frame, book)
    intro = (f"{frame['doc_id'].nunique()} documents, {len(frame)} paragraphs from {tags.name}. "
             "Year/level/nature count documents; tools, stakeholders and orientation count coded paragraphs.")
    try:
        written = write_report(tables, out, charts=charts, intro=intro)
    except FontMissing as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    for name in list(tables)[:6]:
        t = Table(title=name)
        t.add_column(tables[name].index.name or "")
        for c in tables[name].columns:
            t.add_column(str(c), justify="right")
        for idx, row in tables[name].iterrows():
            t.add_row(str(idx), *[f"{v:g}" for v in row.values])
        out_console.print(t)
    err.print(f"{len(tables)} tables → {out}: {len(written['csv'])} CSV, {len(written['png'])} PNG, "
              f"{written['xlsx'][0].name}, {written['html'][0].name}")
