"""Metrics in the shape other tools read, and threshold tuning."""
from __future__ import annotations

import numpy as np

from policytag.labels.schema import Codebook

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float((pred & (y > 0)).sum())
    return 2 * tp / max(1.0, float(pred.sum() + (y > 0).sum()))


def global_threshold(y: np.ndarray, probs: np.ndarray, default: float = 0.5) -> float:
    """The one threshold maximising micro-F1 over every label pooled (ties: nearest the default)."""
    best, best_f1 = default, -1.0
    for t in sorted(THRESHOLD_GRID, key=lambda t: abs(t - default)):
        f1 = _f1(y, probs >= t)
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(t), f1
    return best


def tune_thresholds(y: np.ndarray, probs: np.ndarray, default: float = 0.5, min_positives: int = 10,
                    prior: float = 20.0) -> np.ndarray:
    """Per-label thresholds that transfer to unseen documents.

    `y, probs` must be out-of-fold predictions (never the rows a model was trained on). One
    global threshold is chosen for all labels; each label's own F1-optimal threshold is then
    shrunk toward it with weight n_pos / (n_pos + prior), and a label with fewer than
    `min_positives` positives keeps the global value: a threshold tuned on a handful of
    paragraphs fits those paragraphs, not the next document."""
    g = global_threshold(y, probs, default)
    out = np.full(y.shape[1], g, dtype=np.float32)
    for j in range(y.shape[1]):
        n_pos = float((y[:, j] > 0).sum())
        if n_pos < min_positives:
            continue
        best, best_f1 = g, -1.0
        for t in sorted(THRESHOLD_GRID, key=lambda t: abs(t - g)):
            f1 = _f1(y[:, j], probs[:, j] >= t)
            if f1 > best_f1 + 1e-9:
                best, best_f1 = float(t), f1
        w = n_pos / (n_pos + prior)
        out[j] = w * best + (1 - w) * g
    return out


THRESHOLD_POLICIES = ("global", "per-label", "flat")


def choose_thresholds(y: np.ndarray, probs: np.ndarray, policy: str = "global") -> np.ndarray:
    """Thresholds for every label from out-of-fold `y, probs`: 'global', one threshold for all
    labels (what transferred best to unseen documents on both codebooks: README "Quality");
    'per-label', each label's own shrunk toward it (`tune_thresholds`); 'flat', 0.5."""
    if policy == "global":
        return np.full(y.shape[1], global_threshold(y, probs), dtype=np.float32)
    if policy == "per-label":
        return tune_thresholds(y, probs)
    if policy == "flat":
        return np.full(y.shape[1], 0.5, dtype=np.float32)
    raise ValueError(f"thresholds must be one of {', '.join(THRESHOLD_POLICIES)}, not {policy!r}")


def _block(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support  # imported here: `policytag --help` stays fast

    p, r, f, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0, labels=range(len(names)))
    mp, mr, mf, _ = precision_recall_fscore_support(y, pred, average="micro", zero_division=0)
    supported = s > 0
    return {
        "micro_f1": float(mf), "macro_f1": float(f[supported].mean()) if supported.any() else 0.0,
        "micro_precision": float(mp), "micro_recall": float(mr),
        "per_label": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(names)},
    }


def group_matrix(book: Codebook, dim: str, flat: list[tuple[str, str]], y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Group columns derived from sub-label columns (a group is on if any of its labels is)."""
    groups = book.dimension(dim).groups
    cols = []
    for g in groups:
        members = [j for j, (d, l) in enumerate(flat) if d == dim and l in {x.id for x in g.labels}]
        cols.append(y[:, members].max(axis=1) if members else np.zeros(len(y)))
    return np.stack(cols, axis=1), [g.id for g in groups]


def evaluate(book: Codebook, flat: list[tuple[str, str]], y: np.ndarray, pred: np.ndarray, model: str = "") -> dict:
    """{"n_paragraphs", "model", "dimensions": {dim, dim_group…}, "kappa_mean"}."""
    y, pred = (y > 0).astype(int), (pred > 0).astype(int)
    dims: dict[str, dict] = {}
    for dim in book.dimensions:
        cols = [j for j, (d, _) in enumerate(flat) if d == dim.id]
        dims[dim.id] = _block(y[:, cols], pred[:, cols], [flat[j][1] for j in cols])
        if dim.groups:
            gy, names = group_matrix(book, dim.id, flat, y)
            gp, _ = group_matrix(book, dim.id, flat, pred)
            dims[f"{dim.id}_group"] = _block(gy, gp, names)
    return {"n_paragraphs": int(len(y)), "model": model, "dimensions": dims, "kappa_mean": kappa_mean(y, pred)}


def kappa_mean(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean Cohen's kappa between prediction and reference over labels with support, the
    statistic annotator agreement is reported in (6D paper: 0.746 between two coders)."""
    from sklearn.metrics import cohen_kappa_score

    kappas = []
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            continue
        k = cohen_kappa_score(y[:, j], pred[:, j]) if len(set(y[:, j]) | set(pred[:, j])) > 1 else 1.0
        kappas.append(0.0 if np.isnan(k) else float(k))
    return float(np.mean(kappas)) if kappas else 0.0
