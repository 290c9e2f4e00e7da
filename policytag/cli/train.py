"""`policytag train` and `policytag evaluate`."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from policytag.cli.labels import load_or_exit
from policytag.console import err
from policytag.console import out as out_console
from policytag.labels.export import ParseReport, parse_export
from policytag.training.data import DataError, prepare
from policytag.training.fit import fit
from policytag.training.train import LONG_PARAGRAPHS, LOSSES, PRECISIONS, Interrupted, TrainConfig
from policytag.training.metrics import THRESHOLD_POLICIES
from policytag.models.tagger import POOLINGS


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


class ModelKind(str, Enum):
    ensemble = "ensemble"
    encoder = "encoder"
    tfidf = "tfidf"


class Context(str, Enum):
    title = "title"
    none = "none"


D = TrainConfig()  # every default comes from the one definition of the hyperparameters


def train(
    data: List[Path] = typer.Option(..., "--data", help="Label Studio JSON export(s); repeat for several."),
    out: Path = typer.Option(..., "--out", help="Model directory to write (replaced atomically; only a model directory is ever replaced)."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Hugging Face encoder directory or hub name."),
    model: ModelKind = typer.Option(D.model, "--model", help="ensemble: fine-tuned encoder + TF-IDF averaged (default); encoder; tfidf."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="'tfidf': the TF-IDF baseline alone (same as --model tfidf)."),
    context: Context = typer.Option(D.context, "--context", help="title: read each paragraph with its document title; none: the paragraph alone."),
    tfidf_title: Optional[List[str]] = typer.Option(
        None, "--tfidf-title", help="A dimension whose labels the TF-IDF member takes from the document title + paragraph; "
        f"repeat for several, 'none' for none (default: {', '.join(D.tfidf_title)}, where the codebook has it)."),
    cv: int = typer.Option(D.cv_folds, "--cv", min=0, help="Document folds for out-of-fold thresholds and metrics (0: none, global threshold 0.5)."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="Codebook YAML (default: shipped IHMS)."),
    epochs: int = typer.Option(D.epochs, min=1),
    lr: float = typer.Option(D.lr),
    batch_size: int = typer.Option(D.batch_size, "--batch-size", min=1),
    max_length: int = typer.Option(D.max_length, "--max-length", min=8),
    long_paragraphs: str = typer.Option(D.long_paragraphs, "--long-paragraphs", help="Tagging a paragraph over --max-length tokens: windows (overlapping, each label's highest probability) or truncate."),
    seed: int = typer.Option(D.seed),
    freeze_embeddings: bool = typer.Option(D.freeze_embeddings, help="Keep the word embeddings fixed (6–14 % faster in the benchmarks; the default fine-tunes them, which scored higher: README Quality)."),
    frozen_layers: int = typer.Option(D.frozen_layers, "--frozen-layers", min=0, help="Also freeze the lowest N transformer layers; their output is computed once, not every epoch (faster)."),
    pooling: str = typer.Option(D.pooling, "--pooling", help="mean: one mean over the tokens for every label; label-attention: each label its own attention-weighted mean."),
    loss: str = typer.Option(D.loss, "--loss", help="bce: binary cross-entropy, rare labels up-weighted (default); asymmetric: focuses on hard negatives (Ridnik et al. 2021)."),
    label_init: str = typer.Option(D.label_init, "--label-init", help="codebook: start each label's head row from its name and cue words (default); random."),
    precision: str = typer.Option(D.precision, "--precision", help="Fine-tuning arithmetic: fp32, bf16 (mixed precision), or auto: bf16 where the CPU/GPU does it natively."),
    thresholds: str = typer.Option(D.thresholds, "--thresholds", help="Decision thresholds from the out-of-fold probabilities: global (one for all labels), per-label (shrunk toward it) or flat (0.5)."),
    tfidf_weight: str = typer.Option(str(D.tfidf_weight), "--tfidf-weight",
                                     help="Share of TF-IDF in the ensemble average, 0 to 1, or 'learned': chosen out of fold."),
    policy: str = typer.Option("majority", help="Several annotators: majority / latest / first (ground truth always wins)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from <out>.checkpoint/."),
    checkpoint_every: int = typer.Option(D.checkpoint_every, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    device: Optional[str] = typer.Option(None, help="cpu / cuda (default: cuda when available)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder even if it is not a policytag model."),
) -> None:
    """Train a multi-label tagger on Label Studio exports: cross-validate over documents
    (thresholds and metrics out of fold), then train the shipped model on all the data."""
    from policytag.files import OutputPathError, check_model_out_dir

    if baseline not in (None, "tfidf"):
        err.print("[red]--baseline must be 'tfidf'[/red]")
        raise typer.Exit(2)
    kind = "tfidf" if baseline else model.value
    if kind != "tfidf" and not base_model:
        err.print("[red]--base-model is required[/red] (a directory such as ../shared/models/m3e-small, or a hub name; "
                  "or --model tfidf for the baseline alone)")
        raise typer.Exit(2)
    try:
        weight = None if tfidf_weight == "learned" else float(tfidf_weight)
        if weight is not None and not 0.0 <= weight <= 1.0:
            raise ValueError
    except ValueError:
        err.print(f"[red]--tfidf-weight must be a number from 0 to 1 or 'learned'[/red], not {tfidf_weight!r}")
        raise typer.Exit(2)
    if label_init not in ("random", "codebook"):
        err.print("[red]--label-init must be 'random' or 'codebook'[/red]")
        raise typer.Exit(2)
    if pooling not in POOLINGS:
        err.print(f"[red]--pooling must be one of {', '.join(POOLINGS)}[/red], not {pooling!r}")
        raise typer.Exit(2)
    if loss not in LOSSES:
        err.print(f"[red]--loss must be one of {', '.join(LOSSES)}[/red], not {loss!r}")
        raise typer.Exit(2)
    if thresholds not in THRESHOLD_POLICIES:
        err.print(f"[red]--thresholds must be one of {', '.join(THRESHOLD_POLICIES)}[/red], not {thresholds!r}")
        raise typer.Exit(2)
    if long_paragraphs not in LONG_PARAGRAPHS:
        err.print(f"[red]--long-paragraphs must be one of {', '.join(LONG_PARAGRAPHS)}[/red], not {long_paragraphs!r}")
        raise typer.Exit(2)
    if precision not in PRECISIONS:
        err.print(f"[red]--precision must be one of {', '.join(PRECISIONS)}[/red], not {precision!r}")
        raise typer.Exit(2)
    try:
        check_model_out_dir(out, force)
        for path in data:
            if path.resolve() == out.resolve():
                raise OutputPathError(f"{out} is one of the --data exports; refusing to replace it: choose another --out")
    except OutputPathError as exc:
        err.print(f"[red]cannot write the model[/red]: {exc}")
        raise typer.Exit(2)
    book = load_or_exit(schema)
    if tfidf_title is None:
        tfidf_title = D.tfidf_title
    elif tfidf_title == ["none"]:
        tfidf_title = []
    elif unknown := [d for d in tfidf_title if d not in book.dimension_ids]:
        err.print(f"[red]--tfidf-title: {', '.join(unknown)} is not a dimension of the codebook[/red] "
                  f"({', '.join(book.dimension_ids)}; or 'none')")
        raise typer.Exit(2)
    examples, report = load_examples(data, book, policy)
    cfg = TrainConfig(base_model=base_model or "", model=kind, context=context.value, cv_folds=cv, epochs=epochs, lr=lr,
                      batch_size=batch_size, max_length=max_length, long_paragraphs=long_paragraphs, seed=seed, freeze_embeddings=freeze_embeddings,
                      frozen_layers=frozen_layers, label_init=label_init, pooling=pooling, loss=loss, precision=precision, thresholds=thresholds, tfidf_weight=weight, tfidf_title=list(tfidf_title),
                      checkpoint_every=checkpoint_every,
                      data=[str(p) for p in data], schema=str(book.path))
    try:
        prepared = prepare(examples, book)
    except DataError as exc:
        err.print(f"[red]cannot train[/red]: {exc}")
        raise typer.Exit(2)
    for n in prepared.notes:
        err.print(f"[yellow]warning[/yellow] {n}")
    err.print(prepared.summary)
    try:
        result = fit(prepared, book, cfg, out, report, resume, device)
    except Interrupted as exc:
        err.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(130)
    except (DataError, ValueError) as exc:
        err.print(f"[red]training failed[/red]: {exc}")
        raise typer.Exit(2)
    if result["metrics"]:
        out_console.print(metrics_table({out.name: result["metrics"]["cv"]["mean"] | {"n_paragraphs": len(prepared.texts)}},
                                        f"out-of-fold metrics, mean over {result['folds']} document folds"))
    else:
        why = "--cv 0" if cv == 0 else "too few documents"
        err.print(f"[yellow]no out-of-fold estimate[/yellow] ({why}): the model was trained on all of them")
    err.print(f"model written to {out} in {result['seconds']:.0f} s")


def evaluate_cmd(
    data: List[Path] = typer.Option(..., "--data", help="Label Studio JSON export(s) with reference annotations."),
    model: Optional[Path] = typer.Option(None, "--model", help="Score this model directory on --data."),
    cv: int = typer.Option(0, "--cv", min=0, help="Instead of --model: K-fold cross-validation over documents of the "
                                                   "training recipe on --data, the TF-IDF baseline on the same folds."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="With --cv: the encoder to fine-tune (omit: TF-IDF only)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="With --cv: 'tfidf' cross-validates the baseline alone."),
    context: Context = typer.Option(D.context, "--context", help="With --cv: title or none."),
    epochs: int = typer.Option(D.epochs, min=1, help="With --cv: fine-tuning epochs."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="With --cv: codebook YAML (default: shipped IHMS)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write metrics JSON here."),
    report_path: Optional[Path] = typer.Option(None, "--report", help="Write a Markdown report here."),
    policy: str = typer.Option("majority"),
    device: Optional[str] = typer.Option(None, help="cpu / cuda (default: cuda when available)."),
) -> None:
    """Score a model on annotated data, or (--cv K) cross-validate the training recipe over
    documents: table on screen, JSON for other tools, Markdown for people."""
    from policytag.files import OutputPathError, check_writable_file, write_json_atomic, write_text_atomic

    try:
        for path, what in ((output, "the metrics JSON"), (report_path, "the Markdown report")):
            if path:
                check_writable_file(path, what)
    except OutputPathError as exc:
        err.print(f"[red]cannot write[/red]: {exc}")
        raise typer.Exit(2)
    if (model is None) == (cv == 0):
        err.print("[red]give either --model DIR (score a model) or --cv K (cross-validate the recipe)[/red]")
        raise typer.Exit(2)
    if cv:
        results = _cross_validate_cmd(data, cv, base_model, baseline, context.value, epochs, schema, policy, device)
        if output:
            write_json_atomic(output, {"folds": cv, "models": results})
        if report_path:
            from policytag.training.cv import markdown_table

            write_text_atomic(report_path, f"# {cv}-fold cross-validation over documents\n\n"
                              "Out-of-fold figures, mean ± sd over folds; thresholds tuned on the other folds only.\n\n"
                              + markdown_table(results) + "\n")
        return
    from policytag.models.tagger import load_model

    from policytag.training.metrics import evaluate

    try:
        tagger = load_model(model)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot load model[/red]: {exc}")
        raise typer.Exit(2)
    examples, _ = load_examples(data, tagger.book, policy)
    if not examples:
        err.print("[red]no annotated paragraphs to evaluate[/red]")
        raise typer.Exit(2)
    prepared = prepare(examples, tagger.book)
    if [tuple(x) for x in tagger.book.flat_labels] != tagger.labels:
        err.print("[red]the model's labels do not match its codebook[/red]")
        raise typer.Exit(2)
    probs = tagger.predict_proba(prepared.texts, prepared.titles)
    metrics = evaluate(tagger.book, tagger.labels, prepared.y, tagger.decide(probs), model=str(model))
    out_console.print(metrics_table({model.name: metrics}, f"evaluation on {len(prepared.texts)} paragraphs"))
    if output:
        write_json_atomic(output, metrics)
    if report_path:
        write_text_atomic(report_path, markdown_report(metrics, tagger.book))


def _cross_validate_cmd(data, k, base_model, baseline, context, epochs, schema, policy, device) -> dict[str, dict]:
    from policytag.training import cv

    book = load_or_exit(schema)
    examples, _ = load_examples(data, book, policy)
    try:
        prepared = prepare(examples, book)
        cv.document_folds(prepared.y, prepared.groups, k)  # enough documents? say so before any training
    except DataError as exc:
        err.print(f"[red]cannot cross-validate[/red]: {exc}")
        raise typer.Exit(2)
    err.print(prepared.summary)
    results = cv.compare_recipes(prepared, book, k, base_model=None if baseline else base_model,
                                 context=context, epochs=epochs, device=device)
    out_console.print(cv_table(results, k))
    return results


def cv_table(results: dict[str, dict], k: int) -> Table:
    """Mean ± sd over folds, one column per model."""
    table = Table(title=f"{k}-fold cross-validation over documents (out of fold, mean ± sd)")
    table.add_column("dimension")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    first = next(iter(results.values()))["cv"]["mean"]
    for dim in first["dimensions"]:
        for metric in ("micro_f1", "macro_f1"):
            table.add_row(dim, metric, *[f"{r['cv']['mean']['dimensions'][dim][metric]:.3f} ± "
                                         f"{r['cv']['sd']['dimensions'][dim][metric]:.3f}" for r in results.values()])
    table.add_row("all", "kappa_mean", *[f"{r['cv']['mean']['kappa_mean']:.3f} ± {r['cv']['sd']['kappa_mean']:.3f}"
                                         for r in results.values()])
    return table


def markdown_report(metrics: dict, book=None) -> str:
    human = " (two human coders, 6D paper: 0.746)" if book is None or book.name == "ihms" else ""
    lines = [f"# Evaluation of `{metrics['model']}`", "", f"{metrics['n_paragraphs']} paragraphs; mean per-label "
             f"kappa {metrics['kappa_mean']:.3f}{human}.", ""]
    for dim, m in metrics["dimensions"].items():
        lines += [f"## {dim}", "", f"micro-F1 {m['micro_f1']:.3f} · macro-F1 {m['macro_f1']:.3f} · "
                  f"micro-P {m['micro_precision']:.3f} · micro-R {m['micro_recall']:.3f}", "",
                  "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for label, s in m["per_label"].items():
            lines.append(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
        lines.append("")
    return "\n".join(lines)
