"""Inter-annotator agreement from a Label Studio export (agreement statistics are an
Enterprise feature in Label Studio, so we compute them ourselves).

On tasks with two or more submitted annotations:
- per-label Cohen's kappa, averaged over annotator pairs (the 6D paper reports the mean, 0.746);
- Krippendorff's alpha per dimension with MASI distance between label sets;
- exact-match rate of whole label sets between annotator pairs;
- the most disputed tasks (largest mean MASI distance between annotators), with what each
  annotator (by email when the export has it) chose.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
from sklearn.metrics import cohen_kappa_score

from .export import ParseReport, annotation_labels, coder_of, task_problem


def coder_name(annotation: dict) -> str:
    """Who annotated, for people: the email when the export carries it (`studio pull` asks for
    completed_by as an object), else "user <id>"."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        if who.get("email"):
            return str(who["email"])
        who = who.get("id")
    return f"user {who}"
from .schema import Codebook

PAPER_KAPPA = 0.746


def masi_distance(a: frozenset, b: frozenset) -> float:
    """MASI distance (Passonneau 2006); two empty sets agree perfectly (NLTK divides by zero)."""
    if not a and not b:
        return 0.0
    inter, union = len(a & b), len(a | b)
    jaccard = inter / union
    if a == b:
        monotonicity = 1.0
    elif a <= b or b <= a:
        monotonicity = 0.67
    elif inter:
        monotonicity = 0.33
    else:
        monotonicity = 0.0
    return 1.0 - jaccard * monotonicity


def krippendorff_alpha(units: dict[object, dict[object, frozenset]]) -> float | None:
    """Krippendorff's alpha with MASI distance: units -> {coder: label set}; units with
    fewer than two codings are not pairable and are left out."""
    units = {u: c for u, c in units.items() if len(c) >= 2}
    if not units:
        return None
    values = [v for c in units.values() for v in c.values()]
    n = len(values)
    observed = 0.0
    for codings in units.values():
        vs = list(codings.values())
        m = len(vs)
        observed += sum(masi_distance(a, b) for i, a in enumerate(vs) for j, b in enumerate(vs) if i != j) / (m - 1)
    observed /= n
    expected = sum(masi_distance(a, b) for i, a in enumerate(values) for j, b in enumerate(values) if i != j) / (n * (n - 1))
    if expected == 0:
        return 1.0
    return float(1.0 - observed / expected)


def agreement(tasks: list[dict], book: Codebook, top: int = 10) -> dict:
    report = ParseReport()
    # task id -> annotator -> {dim: set}
    coded: dict[object, dict[object, dict[str, frozenset]]] = {}
    texts = {}
    names: dict[object, str] = {}  # coder id -> email (exports from `studio pull`) or "user N"
    malformed: dict[str, int] = {}
    for n, task in enumerate(tasks):
        problem = task_problem(task)
        if problem:  # counted and skipped, like training does
            malformed[problem] = malformed.get(problem, 0) + 1
            continue
        anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        by_coder = {}
        for a in sorted(anns, key=lambda a: str(a.get("updated_at") or a.get("created_at") or "")):
            by_coder[coder_of(a)] = {d: frozenset(v) for d, v in annotation_labels(book, a, report).items()}
            names.setdefault(coder_of(a), coder_name(a))
        if len(by_coder) >= 2:
            task_id = task.get("id")
            task_id = task_id if isinstance(task_id, (int, str)) else f"#{n}"
            coded[task_id] = by_coder
            text = task["data"].get("text", "")
            texts[task_id] = text if isinstance(text, str) else str(text)
    result = {"tasks_with_two_or_more": len(coded), "paper_kappa_mean": PAPER_KAPPA, "per_label_kappa": {},
              "kappa_mean": None, "alpha_masi": {}, "exact_match": None, "disputed": [],
              "unknown_labels": dict(report.unknown_labels),
              "malformed_tasks": sum(malformed.values()), "malformed_reasons": malformed,
              "annotators": sorted({names[c] for codings in coded.values() for c in codings})}
    if not coded:
        return result
    coders = sorted({c for codings in coded.values() for c in codings}, key=str)
    pairs = list(combinations(coders, 2))
    for dim, label in book.flat_labels:
        kappas = []
        for a, b in pairs:
            shared = [t for t, c in coded.items() if a in c and b in c]
            if not shared:
                continue
            ya = [label in coded[t][a][dim] for t in shared]
            yb = [label in coded[t][b][dim] for t in shared]
            if not any(ya) and not any(yb):
                continue  # the label never occurs for this pair: no information
            k = cohen_kappa_score(ya, yb) if len(set(ya) | set(yb)) > 1 else 1.0
            kappas.append(0.0 if np.isnan(k) else float(k))
        if kappas:
            result["per_label_kappa"][label] = float(np.mean(kappas))
    if result["per_label_kappa"]:
        result["kappa_mean"] = float(np.mean(list(result["per_label_kappa"].values())))
    for dim in book.dimension_ids:
        result["alpha_masi"][dim] = krippendorff_alpha({t: {c: v[dim] for c, v in codings.items()} for t, codings in coded.items()})
    matches = total = 0
    disputes = []
    for t, codings in coded.items():
        distances = []
        for a, b in combinations(list(codings), 2):
            total += 1
            matches += all(codings[a][d] == codings[b][d] for d in book.dimension_ids)
            distances.append(np.mean([masi_distance(codings[a][d], codings[b][d]) for d in book.dimension_ids]))
        disputes.append((float(np.mean(distances)), t))
    result["exact_match"] = matches / total if total else None
    disputes.sort(key=lambda x: (-x[0], str(x[1])))
    result["disputed"] = [{"task": t, "distance": round(d, 3), "text": texts[t][:80],
                           "labels": {names[c]: {dim: sorted(v) for dim, v in codings.items()} for c, codings in coded[t].items()}}
                          for d, t in disputes[:top] if d > 0]
    return result
