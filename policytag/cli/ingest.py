"""`policytag ingest`: documents in, paragraphs JSONL out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from policytag.console import err, progress
from policytag.files import OutputPathError, atomic_path, check_writable_file
from policytag.nlp.ingest import MetadataError, iter_ingest, load_metadata_option


class _NothingRead(Exception):
    pass


def ingest(
    paths: List[Path] = typer.Argument(..., help="Files and folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Paragraphs JSONL to write."),
    unit: str = typer.Option("paragraph", help="'paragraph' or 'sentence' (spaCy Chinese sentencizer)."),
    metadata: Optional[Path] = typer.Option(None, help="Metadata sidecar (CSV with a 'file' column, or JSON) overriding parsed headers."),
) -> None:
    """Read .txt .md .docx .pdf .html .jsonl .csv files and write one JSON line per paragraph.

    Unreadable files are reported and skipped; exit code 0 if anything was written, 2 if nothing could be read."""
    if unit not in ("paragraph", "sentence"):
        err.print("[red]--unit must be 'paragraph' or 'sentence'[/red]")
        raise typer.Exit(2)
    try:  # before reading anything: a bad --out or --metadata is a one-line message, not a traceback
        check_writable_file(out, "--out")
        if metadata is not None:
            load_metadata_option(metadata)
    except (OutputPathError, MetadataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    read = skipped = written = 0
    failures: list[tuple[str, str]] = []
    try:
        with progress() as bar, atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            task = bar.add_task("ingesting", total=None)
            for result in iter_ingest(paths, unit, metadata, progress=lambda n: bar.update(task, total=n)):
                bar.advance(task)
                for problem in result.problems:
                    failures.append((result.path, problem))
                    err.print(f"[yellow]warning[/yellow] {result.path}: {problem}")
                if result.error:
                    skipped += 1
                    failures.append((result.path, result.error))
                    err.print(f"[red]skipped[/red] {result.path}: {result.error}")
                    continue
                read += 1
                for record in result.records:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += len(result.records)
            if written == 0:
                raise _NothingRead  # leaves any earlier output file untouched
    except _NothingRead:
        pass
    summary = Table(title="ingest summary", show_header=False)
    summary.add_row("files read", str(read))
    summary.add_row("files skipped", str(skipped))
    summary.add_row("problems reported", str(len(failures)))
    summary.add_row("paragraphs written", f"{written} → {out if written else '(nothing written)'}")
    err.print(summary)
    if failures:
        t = Table(title="skipped / problems")
        t.add_column("file", overflow="fold")
        t.add_column("reason", overflow="fold")
        for path, reason in failures:
            t.add_row(path, reason)
        err.print(t)
    if written == 0:
        raise typer.Exit(2)
