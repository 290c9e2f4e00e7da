"""Cross-validation over documents: the honest estimate of quality on unseen documents.

Paragraphs of one document always fall in the same fold (iterative multi-label
stratification over documents). Every member of the recipe is trained on K-1 folds and
predicts the held-out fold, so each paragraph gets out-of-fold (OOF) probabilities from
models that never saw its document. Metrics are then *cross-fitted*: the thresholds applied
to fold f are tuned on the OOF probabilities of the other folds only, so no figure is
measured on the rows that chose its thresholds. Figures are reported per fold, as mean ± sd.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from policytag.labels.schema import Codebook
from policytag.models.tagger import context_texts

from .data import DataError
from .metrics import choose_thresholds, evaluate

SUMMARY_KEYS = ("micro_f1", "macro_f1", "micro_precision", "micro_recall")


def usable_folds(groups: list[str], k: int) -> tuple[int, str]:
    """How many folds these documents allow, and a note when that is fewer than asked."""
    n_docs = len(set(groups))
    if k < 2:
        return 0, ""
    if n_docs < 2:
        return 0, ("the data come from one document: the model is trained on everything with one global "
                   "threshold (0.5) and there is NO held-out estimate of its quality — annotate paragraphs "
                   "from at least 2 more documents for one")
    if n_docs < k:
        return n_docs, (f"only {n_docs} documents for {k} folds: using {n_docs} folds (one document each); "
                        f"annotate paragraphs from {k - n_docs} more document(s) for {k}")
    return k, ""


def document_folds(y: np.ndarray, groups: list[str], k: int, seed: int = 13) -> np.ndarray:
    """Fold number (0..k-1) of every row; a document's rows share a fold."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    doc_ids = sorted(set(groups))
    if len(doc_ids) < k:
        raise DataError(f"{k}-fold cross-validation needs paragraphs from at least {k} documents, got "
                        f"{len(doc_ids)}: add documents or lower --cv")
    pos = {d: i for i, d in enumerate(doc_ids)}
    row_doc = np.array([pos[g] for g in groups])
    doc_y = np.zeros((len(doc_ids), y.shape[1]), dtype=np.int64)
    np.add.at(doc_y, row_doc, (y > 0).astype(np.int64))
    doc_y = (doc_y > 0).astype(np.int64)
    doc_fold = np.zeros(len(doc_ids), dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f, (_, test_docs) in enumerate(splitter.split(np.zeros(len(doc_ids)), doc_y)):
            doc_fold[test_docs] = f
    fold = doc_fold[row_doc]
    empty = [f for f in range(k) if not (fold == f).any()]
    if empty:
        raise DataError(f"fold(s) {', '.join(str(f + 1) for f in empty)} got no paragraph: add documents or lower --cv")
    return fold


@dataclass
class CVRun:
    fold: np.ndarray  # fold of every row
    probs: dict[str, np.ndarray]  # member name -> OOF probabilities (rows × labels)
    seconds: dict[str, float]  # member name -> training seconds summed over folds

    def combined(self, cfg) -> np.ndarray:
        """The recipe's OOF probabilities: its members' weighted mean."""
        return mix(self.probs, cfg.members, cfg.weights)

    def mixer(self, cfg, y: np.ndarray):
        """For `cross_fitted_metrics`: rows -> the recipe's probabilities for every row, with an
        ensemble weight left open (tfidf_weight None) learned on `rows` only."""
        if cfg.model != "ensemble" or cfg.tfidf_weight is not None:
            combined = self.combined(cfg)
            return lambda rows: combined

        def on(rows):
            w = learn_tfidf_weight(y[rows], self.probs["encoder"][rows], self.probs["tfidf"][rows])
            return mix(self.probs, ["encoder", "tfidf"], [1 - w, w])
        return on


def mix(probs: dict[str, np.ndarray], members: list[str], weights: list[float]) -> np.ndarray:
    return sum(w * probs[n] for n, w in zip(members, weights)) / float(sum(weights))


WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 11), 2)


def learn_tfidf_weight(y: np.ndarray, encoder: np.ndarray, tfidf: np.ndarray) -> float:
    """The TF-IDF share of the ensemble average that ranks these out-of-fold rows best (micro
    average precision over all labels: no threshold involved); ties go to the value nearest 0.5.
    The two members are not equally good, and which is better depends on the data."""
    from sklearn.metrics import average_precision_score

    truth = (y > 0).ravel()
    if not truth.any():
        return 0.5
    scores = {float(w): average_precision_score(truth, ((1 - w) * encoder + w * tfidf).ravel()) for w in WEIGHT_GRID}
    best = max(scores.values())
    return min((w for w, s in scores.items() if s >= best - 1e-9), key=lambda w: abs(w - 0.5))


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def cross_validate(data, book: Codebook, cfg, k: int, device=None, ckpt=None, seed: int | None = None,
                   final_rows: int = 0) -> CVRun:
    """OOF probabilities of every member of `cfg`'s recipe over k document folds. After each fold
    trained, the time left is estimated from its speed: the other folds, then a final training on
    `final_rows` paragraphs when one follows (one 2-core CPU trained 3 times slower than another)."""
    from policytag.console import err

    from .train import _device, train_members

    device = device if device is not None else (_device(None) if "encoder" in cfg.members else None)
    fold = document_folds(data.y, data.groups, k, cfg.seed if seed is None else seed)
    titles = context_texts(data.titles, len(data.texts))  # read by the members trained with them
    probs = {n: np.zeros(data.y.shape, dtype=np.float32) for n in cfg.members}
    seconds = {n: 0.0 for n in cfg.members}
    for f in range(k):
        test = np.flatnonzero(fold == f)
        done = ckpt.load_fold(f) if ckpt else None
        if done is not None:
            for n in cfg.members:
                probs[n][test] = done[n]
            err.print(f"fold {f + 1}/{k}: restored from {ckpt.dir}")
            continue
        train = np.flatnonzero(fold != f)
        pick = (lambda xs, rows: None if xs is None else [xs[i] for i in rows])
        err.print(f"fold {f + 1}/{k}: training on {len(train)} paragraphs, predicting {len(test)} "
                  f"from {len(set(data.groups[i] for i in test))} unseen documents")
        start = time.time()
        members, stats = train_members(pick(data.texts, train), pick(titles, train), data.y[train], cfg, book,
                                       device, ckpt, f"fold-{f}", f"fold {f + 1}/{k}")
        for n, m in members.items():
            probs[n][test] = m.predict_proba(pick(data.texts, test), pick(titles, test))
        to_train = int(sum((fold != g).sum() for g in range(f + 1, k))) + final_rows
        if to_train and "encoder" in members:  # TF-IDF alone takes seconds: nothing worth estimating
            took = time.time() - start
            left = _duration(took / len(train) * to_train)
            rest = ([f"{k - f - 1} more fold(s)"] if f + 1 < k else []) + (["the final model"] if final_rows else [])
            err.print(f"fold {f + 1}/{k} took {_duration(took)}; {' and '.join(rest)}: "
                      f"{left if left.startswith('under') else 'about ' + left} more at this speed")
        if "tfidf" in members:
            seconds["tfidf"] += stats.get("tfidf_seconds", 0.0)
        if "encoder" in members:
            seconds["encoder"] += stats.get("seconds", 0.0)
        if ckpt:
            ckpt.save_fold(f, {n: probs[n][test] for n in cfg.members})
    return CVRun(fold, probs, seconds)


def cross_fitted_metrics(book: Codebook, y: np.ndarray, probs, fold: np.ndarray,
                         model: str = "", thresholds: str = "global") -> dict:
    """Per-fold metrics (the metrics.json contract each), their mean and sd, and the pooled
    figures over all rows. thresholds: the policy (`choose_thresholds`), applied to the other
    folds' OOF probabilities for each fold. `probs`: OOF probabilities, or a
    function of the rows to learn on (the other folds) giving them (`CVRun.mixer`): whatever is
    chosen from data for fold f is chosen without fold f."""
    folds = []
    pooled_pred = np.zeros_like(y, dtype=bool)
    for f in np.unique(fold):
        test, rest = fold == f, fold != f
        probs_f = probs(rest) if callable(probs) else probs
        t = choose_thresholds(y[rest], probs_f[rest], thresholds if rest.any() else "flat")
        pooled_pred[test] = probs_f[test] >= t
        folds.append(evaluate(book, book.flat_labels, y[test], pooled_pred[test], model=f"{model} fold {f + 1}"))
    pooled = evaluate(book, book.flat_labels, y, pooled_pred, model=model)
    return {**pooled, "cv": {"folds": len(folds), "thresholds": thresholds, "mean": _summary(folds, np.mean),
                             "sd": _summary(folds, lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0),
                             "per_fold": folds}}


def _summary(folds: list[dict], fn) -> dict:
    dims = {d: {k: float(fn([f["dimensions"][d][k] for f in folds])) for k in SUMMARY_KEYS}
            for d in folds[0]["dimensions"]}
    return {"dimensions": dims, "kappa_mean": float(fn([f["kappa_mean"] for f in folds]))}


def markdown_table(results: dict[str, dict], dims: list[str] | None = None) -> str:
    """One row per model: micro/macro-F1 per dimension and mean kappa, mean ± sd over folds."""
    first = next(iter(results.values()))["cv"]["mean"]
    dims = dims or list(first["dimensions"])
    head = ["model"]
    for d in dims:
        head += [f"{d} micro-F1", f"{d} macro-F1"]
    head.append("mean kappa")
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, r in results.items():
        m, s = r["cv"]["mean"], r["cv"]["sd"]
        cells = [name]
        for d in dims:
            for k in ("micro_f1", "macro_f1"):
                cells.append(f"{m['dimensions'][d][k]:.3f} ± {s['dimensions'][d][k]:.3f}")
        cells.append(f"{m['kappa_mean']:.3f} ± {s['kappa_mean']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_recipes(data, book: Codebook, k: int, base_model: str | None = None, context: str | None = None,
                    epochs: int | None = None, device: str | None = None, seed: int = 13) -> dict[str, dict]:
    """The TF-IDF baseline and (with a base model) the default recipe — its encoder and TF-IDF
    members alone and their ensemble — on the same document folds: {name: cross-fitted metrics}."""
    from .train import TrainConfig

    baseline = TrainConfig(model="tfidf", context="none", tfidf_title=[], seed=seed)  # the paragraph alone
    runs = {"tfidf baseline": (cross_validate(data, book, baseline, k), baseline)}
    if base_model:
        cfg = TrainConfig(base_model=base_model, seed=seed, **({"context": context} if context else {}),
                          **({"epochs": epochs} if epochs else {}))
        run = cross_validate(data, book, cfg, k, None if device is None else __import__("torch").device(device))
        runs["recipe"] = (run, cfg)
    out = {"tfidf baseline": cross_fitted_metrics(book, data.y, runs["tfidf baseline"][0].probs["tfidf"],
                                                  runs["tfidf baseline"][0].fold, model="tfidf baseline")}
    if "recipe" in runs:
        run, cfg = runs["recipe"]
        for name in cfg.members:
            label = f"{name} ({cfg.context} context)"
            out[label] = cross_fitted_metrics(book, data.y, run.probs[name], run.fold, model=label)
        out[f"ensemble ({cfg.context} context)"] = cross_fitted_metrics(book, data.y, run.mixer(cfg, data.y), run.fold,
                                                                        model="ensemble")
    return out
