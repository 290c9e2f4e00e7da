"""`policytag predict` (batch tagging) and `policytag export-onnx`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List

import typer
from rich.progress import TextColumn
from rich.table import Table

from policytag.console import err, progress
from policytag.models.tagger import Runtime


def fail(message: str, code: int = 2):
    """One line on stderr (never wrapped, no markup), then exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def model_load_errors() -> tuple[type[BaseException], ...]:
    """What loading a damaged or foreign model directory raises (a weights file cut short is
    a SafetensorError; a bad config a ValueError/KeyError; a missing file an OSError…)."""
    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, ImportError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import pickle

        errors.append(pickle.UnpicklingError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def load_model_or_exit(model: Path, backend: str = "torch", device: str | None = None):
    """Load a model directory for a command, or end it with a one-line reason (exit 2)."""
    from policytag.models.tagger import load_model

    try:
        return load_model(model, device, backend)
    except model_load_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"cannot load model {model}: {type(exc).__name__}: {reason}"
             if not isinstance(exc, (OSError, ValueError)) else f"cannot load model {model}: {reason}")


def predict(
    inputs: List[Path] = typer.Argument(..., help="Document files/folders, or paragraph JSONL from `policytag ingest`."),
    model: Path = typer.Option(..., "--model", help="Model directory from `policytag train`."),
    out: Path = typer.Option(..., "--out", help="tags.csv / .jsonl / .xlsx / .parquet"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run: documents already tagged are kept."),
    skip_headings: bool = typer.Option(False, "--skip-headings", help="Don't tag headings (they are still listed)."),
    explain: bool = typer.Option(False, "--explain", help="Add the words that drove each label (occlusion; slower)."),
    backend: Runtime = typer.Option(Runtime.torch, help="torch, or onnx (int8) / onnx-fp32 after `policytag export-onnx`."),
) -> None:
    """Tag every paragraph of new policy documents. Rows out = paragraphs in, checked at the end."""
    from policytag.files import OutputBusy, OutputPathError, check_writable_file, lock_path

    from policytag.nlp.tagsfile import FORMATS
    from policytag.models.batch import BatchInterrupted, RowCountMismatch, journal_paths, run_batch

    if out.suffix not in FORMATS:
        fail(f"--out must end in one of {', '.join(sorted(FORMATS))}")
    try:  # before loading the model or tagging anything
        for path, what in ((out, "--out"), *((p, "the journal") for p in journal_paths(out))):
            check_writable_file(path, what)
    except OutputPathError as exc:
        fail(str(exc))
    if lock_path(out).exists():
        from policytag.files import exclusive_lock

        try:  # fail fast, before the model loads, when another run holds this output
            with exclusive_lock(out):
                pass
        except OutputBusy as exc:
            fail(str(exc))
    tagger = load_model_or_exit(model, backend.value)
    start = time.time()
    with progress(TextColumn("{task.fields[rate]}")) as bar:
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

        try:
            summary = run_batch(tagger, inputs, out, resume=resume, skip_headings=skip_headings, explain=explain,
                                progress=on_progress, on_file=on_file)
        except OutputBusy as exc:
            bar.stop()
            fail(str(exc))
        except BatchInterrupted as exc:
            bar.stop()
            typer.echo(f"\ninterrupted (Ctrl-C): {exc}", err=True)
            raise typer.Exit(130)
        except RowCountMismatch as exc:
            bar.stop()
            fail(str(exc), 1)
        except OSError as exc:  # e.g. the disk filled while writing the output
            from policytag.files import describe_error

            bar.stop()
            journal = journal_paths(out)[0]
            kept = f"; tagged rows are kept in {journal}: rerun with --resume" if journal.exists() else ""
            fail(f"{describe_error(exc)}{kept}")
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
        err.print(f"  failed: {source}: {reason}", markup=False, soft_wrap=True)
    for note in summary.notes:
        err.print(f"note: {note}", markup=False, soft_wrap=True)
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
    from policytag.models.onnx import export_onnx
    from policytag.models.tagger import load_model

    try:
        paths = export_onnx(load_model(model, device="cpu"), quantize)
    except model_load_errors() as exc:
        fail(f"{model}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    for p in paths:
        err.print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
