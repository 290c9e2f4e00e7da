"""`policytag predict` (batch tagging) and `policytag export-onnx`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

err = Console(stderr=True)


def predict(
    inputs: List[Path] = typer.Argument(..., help="Document files/folders, or paragraph JSONL from `policytag ingest`."),
    model: Path = typer.Option(..., "--model", help="Model directory from `policytag train`."),
    out: Path = typer.Option(..., "--out", help="tags.csv / .jsonl / .xlsx / .parquet"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run: documents already tagged are kept."),
    skip_headings: bool = typer.Option(False, "--skip-headings", help="Don't tag headings (they are still listed)."),
    explain: bool = typer.Option(False, "--explain", help="Add the words that drove each label (occlusion; slower)."),
    backend: str = typer.Option("torch", help="torch, or onnx (int8) / onnx-fp32 after `policytag export-onnx`."),
) -> None:
    """Tag every paragraph of new policy documents. Rows out = paragraphs in, checked at the end."""
    from .batch import FORMATS, run_batch
    from .tagger import load_model

    if out.suffix not in FORMATS:
        err.print(f"[red]--out must end in one of {', '.join(sorted(FORMATS))}[/red]")
        raise typer.Exit(2)
    try:
        tagger = load_model(model, backend=backend)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot load model[/red]: {exc}")
        raise typer.Exit(2)
    start = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("tagging paragraphs", total=0, rate="")

        def on_file(result):
            if result.error:
                err.print(f"[red]skipped[/red] {result.path}: {result.error}")
            for p in result.problems:
                err.print(f"[yellow]warning[/yellow] {result.path}: {p}")
            bar.update(task, total=(bar.tasks[0].total or 0) + len(result.records))

        def on_progress(n):
            bar.advance(task, n)
            done = bar.tasks[0].completed
            bar.update(task, rate=f"{done / max(time.time() - start, 1e-9):.1f} paragraphs/s")

        summary = run_batch(tagger, inputs, out, resume=resume, skip_headings=skip_headings, explain=explain,
                            progress=on_progress, on_file=on_file)
    seconds = time.time() - start
    table = Table(title="predict summary", show_header=False)
    table.add_row("documents tagged", str(summary.documents))
    if resume:
        table.add_row("documents kept from the earlier run", str(summary.resumed_documents))
    table.add_row("paragraphs in (this run)", str(summary.paragraphs_in))
    table.add_row("rows out (total)", str(summary.rows_out))
    table.add_row("files/documents failed", str(len(summary.failed)))
    table.add_row("time", f"{seconds:.1f} s ({summary.paragraphs_in / max(seconds, 1e-9):.1f} paragraphs/s)")
    table.add_row("output", str(out))
    err.print(table)
    for source, reason in summary.failed:
        err.print(f"  failed: {source}: {reason}")
    expected = summary.paragraphs_in + summary.rows_kept
    if summary.rows_out != expected:
        err.print(f"[red]row count mismatch: {summary.rows_out} rows for {expected} paragraphs[/red]")
        raise typer.Exit(1)
    err.print(f"[green]check passed[/green]: {summary.rows_out} rows = {expected} paragraphs")
    if summary.rows_out == 0:
        raise typer.Exit(2)


def export_onnx_cmd(
    model: Path = typer.Option(..., "--model", help="Fine-tuned model directory."),
    quantize: bool = typer.Option(True, help="Also write an int8 dynamically quantised model."),
) -> None:
    """Export the model to ONNX (and int8) inside its directory; use with `predict --backend onnx`."""
    from .onnx import export_onnx

    try:
        paths = export_onnx(model, quantize)
    except (OSError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    for p in paths:
        err.print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
