"""Label Studio JSON exports -> clean training examples.

One function, `parse_export`, is used by training, evaluation and agreement. It accepts
label values as codebook ids, Chinese or English names (older projects) and taxonomy paths
of any depth, resolves several annotators into one label set, and counts everything it
drops and why. Every task is checked against the shape of a Label Studio task first
(`task_problem`): a malformed one (annotations that are not a list of objects, a result that
is not a list of regions, data that is not an object…) is skipped and counted, never a crash.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from policytag.nlp.segment import normalize_text

from .schema import Codebook

POLICIES = ("majority", "latest", "first")
MODEL_TEXT = "model_text"  # hidden task field: the normalised text the model reads (labels/studio.py)
USED_NOTE = "tasks with several annotators"  # notes about kept tasks, not about ignored things


@dataclass
class Example:
    text: str
    labels: dict[str, list[str]]  # dimension -> label ids (leaves, codebook order)
    meta: dict  # the task's data fields other than the text
    annotator: list  # who produced the annotations that were merged
    task_id: int | None = None


@dataclass
class ParseReport:
    tasks: int = 0
    examples: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> tasks dropped
    notes: Counter = field(default_factory=Counter)  # reason -> things ignored inside kept tasks
    unknown_labels: Counter = field(default_factory=Counter)  # "dim:value" -> count

    def lines(self) -> list[str]:
        out = [f"{self.tasks} tasks -> {self.examples} examples"]
        out += [f"dropped {n} task(s): {why}" for why, n in sorted(self.dropped.items())]
        out += [f"{n} {why}" if why.startswith(USED_NOTE) else f"ignored {n}: {why}" for why, n in sorted(self.notes.items())]
        out += [f"unknown label {k!r} x{n}" for k, n in self.unknown_labels.most_common()]
        return out


def load_export(path: str | Path) -> list[dict]:
    """Read a Label Studio JSON export (a list of tasks); also accepts JSON Lines of tasks."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError(f"{path}: empty export")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a Label Studio JSON export ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        data = [data]
    # Malformed tasks among good ones are skipped and counted by parse_export; a file with no
    # task-like object at all is not an export.
    if data == []:  # a project with no task yet: nothing to learn from, but a valid export
        return []
    if not isinstance(data, list) or not any(isinstance(t, dict) and "data" in t for t in data):
        raise ValueError(f"{path}: not a Label Studio JSON export (expected a list of tasks with 'data')")
    return data


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _region_problem(region) -> str | None:
    if not isinstance(region, dict):
        return f"a result region is {_kind(region)}, not an object"
    value = region.get("value")
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"a result value is {_kind(value)}, not an object"
    for key in ("taxonomy", "choices", "labels"):
        items = value.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            return f"value.{key} is {_kind(items)}, not a list"
        for item in items:
            if key == "taxonomy" and isinstance(item, list):
                if not all(isinstance(x, (str, int, float)) for x in item):
                    return "a taxonomy path holds something other than names"
            elif not isinstance(item, (str, int, float)) or isinstance(item, bool):
                return f"value.{key} holds {_kind(item)}, not a name"
    return None


def annotation_problem(annotation) -> str | None:
    """Why one annotation is not a Label Studio annotation, or None."""
    if not isinstance(annotation, dict):
        return f"an annotation is {_kind(annotation)}, not an object"
    result = annotation.get("result")
    if result is None:
        return None
    if not isinstance(result, list):
        return f"annotation result is {_kind(result)}, not a list"
    for region in result:
        problem = _region_problem(region)
        if problem:
            return problem
    return None


def task_problem(task) -> str | None:
    """Why `task` does not have the shape of a Label Studio task, or None when it does."""
    if not isinstance(task, dict):
        return f"the task is {_kind(task)}, not an object"
    if not isinstance(task.get("data"), dict):
        return f"data is {_kind(task.get('data'))}, not an object"
    for key in ("annotations", "drafts"):
        items = task.get(key)
        if items is not None and not isinstance(items, list):
            return f"{key} is {_kind(items)}, not a list"
    for annotation in task.get("annotations") or []:
        problem = annotation_problem(annotation)
        if problem:
            return problem
    return None


def _dimension_of(book: Codebook, from_name: str) -> str | None:
    if from_name in book.dimension_ids:
        return from_name
    for dim in book.dimensions:  # older projects named controls by their display name
        if from_name in (dim.zh, dim.en, dim.en.lower()):
            return dim.id
    return None


def annotation_labels(book: Codebook, annotation: dict, report: ParseReport) -> dict[str, set[str]]:
    """The leaf labels of one annotation, per dimension (every dimension present, maybe empty)."""
    labels: dict[str, set[str]] = {d: set() for d in book.dimension_ids}
    if annotation_problem(annotation):  # callers drop such tasks first; never crash here
        report.notes["malformed annotations ignored"] += 1
        return labels
    for region in annotation.get("result") or []:
        dim = _dimension_of(book, str(region.get("from_name", "")))
        if dim is None:
            report.notes[f"result from unknown control {region.get('from_name')!r}"] += 1
            continue
        value = region.get("value") or {}
        values: list[str] = []
        for path in value.get("taxonomy") or []:
            # A path [group, sub-tool] (any depth): the deepest element is the label.
            values.append(path[-1] if isinstance(path, list) and path else path)
        values += value.get("choices") or []
        values += value.get("labels") or []
        for raw in values:
            label_id = book.resolve(dim, str(raw))
            if label_id is None:
                report.unknown_labels[f"{dim}:{raw}"] += 1
            elif book.is_group(dim, label_id):
                report.notes["a tool group chosen without a sub-tool (group kept only through sub-tools)"] += 1
            else:
                labels[dim].add(label_id)
    return labels


def _hashable(value):
    """A dict key for any JSON value (ids are normally numbers or strings, but exports vary)."""
    try:
        hash(value)
        return value
    except TypeError:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def coder_of(annotation: dict):
    """Who made an annotation: `completed_by` as an id (an int, or {"id": …, "email": …} in some exports)."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id", who.get("email"))
    return _hashable(who)


def _when(annotation: dict) -> str:
    return str(annotation.get("updated_at") or annotation.get("created_at") or "")


def resolve_annotators(book: Codebook, annotations: list[dict], report: ParseReport,
                       policy: str = "majority") -> tuple[dict[str, list[str]], list]:
    """Several annotations of one task -> one label set.

    A ground-truth annotation wins. Otherwise, per label: `majority` keeps a label chosen by
    more than half of the annotators; a tie follows the latest annotation. `latest` / `first`
    take one annotation whole."""
    ordered = sorted(annotations, key=_when)
    truth = [a for a in ordered if a.get("ground_truth")]
    if truth:
        chosen = [truth[-1]]
    elif policy == "latest":
        chosen = [ordered[-1]]
    elif policy == "first":
        chosen = [ordered[0]]
    else:
        chosen = ordered
    sets = [annotation_labels(book, a, report) for a in chosen]
    result: dict[str, list[str]] = {}
    for dim in book.dimension_ids:
        counts = Counter(label for s in sets for label in s[dim])
        latest = sets[-1][dim]
        keep = {l for l, n in counts.items() if 2 * n > len(sets) or (2 * n == len(sets) and l in latest)}
        result[dim] = [l for l in book.dimension(dim).label_ids if l in keep]
    return result, [a.get("completed_by") for a in chosen]


def parse_export(tasks: Iterable[dict] | str | Path, book: Codebook, policy: str = "majority",
                 text_field: str = "text") -> tuple[list[Example], ParseReport]:
    """Turn an export into examples. Skipped/cancelled annotations and drafts are ignored;
    tasks left without an annotation, without text, or duplicated are dropped and counted."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
    if isinstance(tasks, (str, Path)):
        tasks = load_export(tasks)
    report = ParseReport()
    examples: list[Example] = []
    seen: set = set()
    for task in tasks:
        report.tasks += 1
        problem = task_problem(task)
        if problem:
            report.dropped[f"malformed task ({problem})"] += 1
            continue
        data = task.get("data") or {}
        text = data.get(text_field)
        hidden = data.get(MODEL_TEXT) if text_field == "text" else None
        if isinstance(hidden, str) and normalize_text(hidden):
            text = hidden  # annotators saw the document's text; train on what the model reads
        if not isinstance(text, str) or not normalize_text(text):
            report.dropped["no text"] += 1
            continue
        if task.get("drafts"):
            report.notes["drafts (not submitted)"] += len(task["drafts"])
        annotations = []
        for a in task.get("annotations") or []:
            if a.get("was_cancelled"):
                report.notes["skipped/cancelled annotations"] += 1
            else:
                annotations.append(a)
        if not annotations:
            report.dropped["no submitted annotation"] += 1
            continue
        key = (_hashable(data.get("doc_id")), _hashable(data.get("paragraph_index"))) \
            if data.get("doc_id") is not None else normalize_text(text)
        if key in seen:
            report.dropped["duplicate task (same document paragraph)"] += 1
            continue
        seen.add(key)
        labels, annotators = resolve_annotators(book, annotations, report, policy)
        if len(annotations) > 1:
            report.notes[f"{USED_NOTE}: labels resolved by {policy}"] += 1
        meta = {k: v for k, v in data.items() if k not in (text_field, MODEL_TEXT)}
        examples.append(Example(text=text, labels=labels, meta=meta, annotator=annotators, task_id=task.get("id")))
    report.examples = len(examples)
    return examples, report
