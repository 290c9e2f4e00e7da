"""MODEL_CARD.md: what a model is, what it was trained on, and how good it is on documents it
has not seen (out-of-fold figures, mean ± sd over document folds)."""
from __future__ import annotations

from policytag.labels.export import ParseReport
from policytag.labels.schema import Codebook

from .cv import CVRun

THRESHOLD_TEXT = {
    "global": "one threshold for every label, the one that maximises micro-F1 over the out-of-fold probabilities",
    "per-label": "chosen on out-of-fold probabilities, one global threshold and per-label thresholds shrunk toward "
                 "it (labels with < 10 positives keep the global one)",
    "flat": "0.5 for every label",
}


def model_card(book: Codebook, cfg, data, metrics: dict | None, run: CVRun | None, report: ParseReport | None,
               seconds: float, licence: str, notes: list[str], stats: dict, weight_learned: bool = False) -> str:
    flat = book.flat_labels
    lines = ["# policytag model `{model_version}`", "",
             f"Multi-label tagger for the **{book.name}** codebook (v{book.version}): "
             f"{len(flat)} labels over {', '.join(book.dimension_ids)}.", ""]
    encoder = cfg.model in ("ensemble", "encoder")
    if encoder:
        lines += [f"- Base model: `{cfg.base_model}` — licence: {licence}",
                  ("- Encoder: mean pooling over tokens" if cfg.pooling == "mean" else
                   "- Encoder: label-wise attention pooling (each label its own weighted mean of the tokens)") +
                  " → dropout → one linear layer over all labels; sigmoid per " +
                  (f"label (BCE with logits, rare labels up-weighted by sqrt(neg/pos), capped at {cfg.max_pos_weight:g}); "
                   if cfg.loss == "bce" else
                   "label (asymmetric loss: negatives weighted by max(p - 0.05, 0)^4, positives in full); ") +
                  f"head {'started from the codebook cue words' if cfg.label_init == 'codebook' else 'randomly initialised'}.",
                  (f"- Long paragraphs: tagged in overlapping {cfg.max_length}-token windows, each label's highest "
                   "probability counting; training reads the first window." if cfg.long_paragraphs == "windows" else
                   f"- Long paragraphs: truncated to the first {cfg.max_length} tokens."),
                  f"- Training: {cfg.epochs} epochs, lr {cfg.lr:g} (head {cfg.head_lr:g}), batch {cfg.batch_size} "
                  f"length-sorted, embeddings {'frozen' if cfg.freeze_embeddings or cfg.frozen_layers else 'trained'}"
                  f"{f', lowest {cfg.frozen_layers} transformer layer(s) frozen (run once per paragraph)' if cfg.frozen_layers else ''}, "
                  f"seed {cfg.seed}, "
                  f"{'bf16 mixed precision' if stats.get('precision') == 'bf16' else 'fp32'} arithmetic."]
    if cfg.model in ("ensemble", "tfidf"):
        lines.append("- TF-IDF: character 1–3-grams + one balanced logistic regression per label (scikit-learn).")
        if titled := cfg.title_dimensions(book):
            lines.append(f"- TF-IDF for {', '.join(titled)}: a second one reads the document title with the paragraph "
                         "(a paragraph whose title is unknown keeps the paragraph-only figures).")
    if cfg.model == "ensemble":
        how = ("learned out of fold: the TF-IDF share that ranks the out-of-fold paragraphs best, micro average "
               "precision; the figures below learn it without the fold they score" if weight_learned else "set by --tfidf-weight")
        lines.append(f"- Ensemble: weighted mean of the members' probabilities, encoder {1 - cfg.weights[1]:g} / "
                     f"TF-IDF {cfg.weights[1]:g} ({how}).")
    lines += [f"- Input: {'document title and paragraph (sentence pair `title [SEP] paragraph`)' if cfg.context == 'title' else 'the paragraph alone'}.",
              "- Tool groups are derived from predicted sub-tools, never predicted on their own.",
              "- Decision thresholds (`thresholds.json`): " + (THRESHOLD_TEXT[cfg.thresholds] if run is not None else
                                                              "0.5 for every label: no out-of-fold predictions to choose them from") + ".",
              f"- Data: {', '.join(cfg.data) or '(in memory)'} → {len(data.texts)} paragraphs from "
              f"{len(set(data.groups))} documents; the shipped model is trained on all of them.",
              f"- Training time: {seconds:.0f} s in all (cross-validation and the final model).", ""]
    if report is not None:
        lines += ["## Data report", "", *[f"- {l}" for l in report.lines()], ""]
    if notes:
        lines += ["## Warnings", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Label counts", "", "| dimension | label | paragraphs |", "|---|---|---:|"]
    for j, (dim, label) in enumerate(flat):
        lines.append(f"| {dim} | {label} | {int(data.y[:, j].sum())} |")
    lines.append("")
    if metrics is None:
        why = "trained with --cv 0" if cfg.cv_folds == 0 else "too few documents (see Warnings)"
        lines += ["## Quality", "", f"No out-of-fold estimate: {why}.", ""]
        return "\n".join(lines)
    cv = metrics["cv"]
    lines += [f"## Quality on unseen documents ({cv['folds']}-fold cross-validation over documents)", "",
              "Every figure is out of fold: each paragraph scored by a model that never saw its document, with "
              "thresholds tuned on the other folds only. Mean ± sd over folds.", "",
              "| dimension | micro-F1 | macro-F1 | micro-P | micro-R |", "|---|---:|---:|---:|---:|"]
    for dim in cv["mean"]["dimensions"]:
        m, s = cv["mean"]["dimensions"][dim], cv["sd"]["dimensions"][dim]
        lines.append(f"| {dim} | {m['micro_f1']:.3f} ± {s['micro_f1']:.3f} | {m['macro_f1']:.3f} ± {s['macro_f1']:.3f} "
                     f"| {m['micro_precision']:.3f} | {m['micro_recall']:.3f} |")
    human = " (two human coders in the 6D paper: 0.746)" if book.name == "ihms" else ""
    lines += ["", f"Mean per-label Cohen's kappa: {cv['mean']['kappa_mean']:.3f} ± {cv['sd']['kappa_mean']:.3f}{human}.", ""]
    if run is not None and len(run.probs) > 1:
        from .cv import cross_fitted_metrics

        titled = cfg.title_dimensions(book)
        titled_text = f", the document title for {', '.join(titled)} in the TF-IDF member" if titled else ""
        lines += ["### Members alone (same folds)", "",
                  "What each member would score without the other: what the ensemble gains here. The recipe itself "
                  f"(the paragraph alone{titled_text}, the head started from the codebook, 0.5/0.5 average, one global threshold) was chosen by `benchmarks/quality.py`; the "
                  "alternatives that lost are listed with their figures in the README, section Quality.", "",
                  "| member | tool micro-F1 | tool macro-F1 | mean kappa |", "|---|---:|---:|---:|"]
        for name, probs in run.probs.items():
            r = cross_fitted_metrics(book, data.y, probs, run.fold, thresholds=cfg.thresholds)["cv"]["mean"]
            first = next(iter(r["dimensions"]))
            lines.append(f"| {name} | {r['dimensions'][first]['micro_f1']:.3f} | {r['dimensions'][first]['macro_f1']:.3f} "
                         f"| {r['kappa_mean']:.3f} |")
        lines.append("")
    lines += ["### Per label (pooled out-of-fold)", "", "| dimension | label | precision | recall | F1 | support |",
              "|---|---|---:|---:|---:|---:|"]
    for dim in book.dimension_ids:
        for label, s in metrics["dimensions"][dim]["per_label"].items():
            lines.append(f"| {dim} | {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    lines.append("")
    return "\n".join(lines)
