"""`policytag train` and `policytag evaluate`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from labels.cli import load_or_exit
from labels.export import ParseReport, parse_export

from .data import DataError, prepare, to_arrays
from .train import Interrupted, TrainConfig, fit

out_console = Console()
err = Console(stderr=True)


def load_examples(paths: List[Path], book, policy: str = "majority"):
    """Parse one or more exports; bad files end the command with a clear message."""
    examples, total = [], ParseReport()
    for path in paths:
        try:
            ex, report = parse_export(path, book, policy)
        except (OSError, ValueError) as exc:
            err.print(f"[red]cannot read {path}[/red]: {exc}")
            raise typer.Exit(2)
        for line in report.lines():
            err.print(f"  {path.name}: {line}")
        examples += ex
        total.tasks += report.tasks
        total.examples += report.examples
        total.dropped.update(report.dropped)
        total.notes.update(report.notes)
        total.unknown_labels.update(report.unknown_labels)
    return examples, total


def metrics_table(results: dict[str, dict], title: str) -> Table:
    """Side-by-side metrics of one or more models."""
    table = Table(title=title)
    table.add_column("dimension")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    first = next(iter(results.values()))
    for dim in first["dimensions"]:
        for metric in ("micro_f1", "macro_f1", "micro_precision", "micro_recall"):
            table.add_row(dim, metric, *[f"{r['dimensions'][dim][metric]:.3f}" for r in results.values()])
    table.add_row("all", "kappa_mean", *[f"{r['kappa_mean']:.3f}" for r in results.values()])
    table.add_row("", "n_paragraphs", *[str(r["n_paragraphs"]) for r in results.values()])
    return table


def train(
    data: List[Path] = typer.Option(..., "--data", help="Label Studio JSON export(s); repeat for several."),
    out: Path = typer.Option(..., "--out", help="Model directory to write (replaced atomically)."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Hugging Face encoder directory or hub name."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="'tfidf': train the TF-IDF + logistic regression baseline instead."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="Codebook YAML (default: shipped IHMS)."),
    epochs: int = typer.Option(6, min=1),
    lr: float = typer.Option(1e-4),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    max_length: int = typer.Option(256, "--max-length", min=8),
    seed: int = typer.Option(13),
    dev_size: float = typer.Option(0.2, "--dev-size", min=0.05, max=0.5),
    freeze_embeddings: bool = typer.Option(True, help="Keep the word embeddings fixed (faster, less overfitting on small data)."),
    policy: str = typer.Option("majority", help="Several annotators: majority / latest / first (ground truth always wins)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from <out>.checkpoint/."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    device: Optional[str] = typer.Option(None, help="cpu / cuda (default: cuda when available)."),
) -> None:
    """Fine-tune a multi-label tagger (or the baseline) on Label Studio exports."""
    if baseline not in (None, "tfidf"):
        err.print("[red]--baseline must be 'tfidf'[/red]")
        raise typer.Exit(2)
    if baseline is None and not base_model:
        err.print("[red]--base-model is required[/red] (a directory such as ../shared/models/m3e-small, or a hub name)")
        raise typer.Exit(2)
    book = load_or_exit(schema)
    examples, report = load_examples(data, book, policy)
    cfg = TrainConfig(base_model=base_model or "", epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length,
                      seed=seed, dev_size=dev_size, freeze_embeddings=freeze_embeddings, baseline=baseline, checkpoint_every=checkpoint_every,
                      data=[str(p) for p in data], schema=str(book.path))
    try:
        data = prepare(examples, book, dev_size, seed)
    except DataError as exc:
        err.print(f"[red]cannot train[/red]: {exc}")
        raise typer.Exit(2)
    for n in data.notes:
        err.print(f"[yellow]warning[/yellow] {n}")
    err.print(data.summary)
    try:
        result = fit(data, book, cfg, out, report, resume, device)
    except Interrupted as exc:
        err.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(130)
    except (OSError, ValueError) as exc:
        err.print(f"[red]training failed[/red]: {exc}")
        raise typer.Exit(2)
    out_console.print(metrics_table({out.name: result["metrics"]}, f"dev metrics ({len(data.dev_idx)} paragraphs)"))
    err.print(f"model written to {out} in {result['seconds']:.0f} s")


def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory."),
    data: List[Path] = typer.Option(..., "--data", help="Label Studio JSON export(s) with reference annotations."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write metrics JSON here."),
    report_path: Optional[Path] = typer.Option(None, "--report", help="Write a Markdown report here."),
    policy: str = typer.Option("majority"),
) -> None:
    """Score a model against annotated data: table on screen, JSON for other tools."""
    from models.tagger import load_model
    from nlp.files import write_json_atomic, write_text_atomic

    from .metrics import evaluate

    try:
        tagger = load_model(model)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot load model[/red]: {exc}")
        raise typer.Exit(2)
    examples, _ = load_examples(data, tagger.book, policy)
    if not examples:
        err.print("[red]no annotated paragraphs to evaluate[/red]")
        raise typer.Exit(2)
    texts, y, _ = to_arrays(examples, tagger.book)
    if [tuple(x) for x in tagger.book.flat_labels] != tagger.labels:
        err.print("[red]the model's labels do not match its codebook[/red]")
        raise typer.Exit(2)
    probs = tagger.predict_proba(texts)
    metrics = evaluate(tagger.book, tagger.labels, y, tagger.decide(probs), model=str(model))
    out_console.print(metrics_table({model.name: metrics}, f"evaluation on {len(texts)} paragraphs"))
    if output:
        write_json_atomic(output, metrics)
    if report_path:
        write_text_atomic(report_path, markdown_report(metrics))


def markdown_report(metrics: dict) -> str:
    lines = [f"# Evaluation of `{metrics['model']}`", "", f"{metrics['n_paragraphs']} paragraphs; mean per-label "
             f"kappa {metrics['kappa_mean']:.3f} (two human coders, 6D paper: 0.746).", ""]
    for dim, m in metrics["dimensions"].items():
        lines += [f"## {dim}", "", f"micro-F1 {m['micro_f1']:.3f} · macro-F1 {m['macro_f1']:.3f} · "
                  f"micro-P {m['micro_precision']:.3f} · micro-R {m['micro_recall']:.3f}", "",
                  "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for label, s in m["per_label"].items():
            lines.append(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
        lines.append("")
    return "\n".join(lines)
