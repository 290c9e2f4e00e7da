"""From parsed examples to arrays, and the train/dev split."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from policytag.labels.export import Example
from policytag.labels.schema import Codebook
from policytag.nlp.segment import normalize_text


class DataError(ValueError):
    """Training data that can't produce a model; the message says what to fix."""


def document_key(meta: dict, fallback: str) -> str:
    """Which document a paragraph belongs to. The title comes first: exports cut one document
    into several `doc_id`s (pages, excerpts), and paragraphs of one document must never sit on
    both sides of a split, or the estimate is not one for unseen documents."""
    title = normalize_text(str(meta.get("title") or "")).strip()
    return title or str(meta.get("doc_id") or fallback)


def to_arrays(examples: list[Example], book: Codebook) -> tuple[list[str], np.ndarray, list[str]]:
    """(normalised texts, multi-hot label matrix over book.flat_labels, document per row)."""
    flat = book.flat_labels
    y = np.zeros((len(examples), len(flat)), dtype=np.float32)
    index = {label: j for j, (_, label) in enumerate(flat)}
    for i, ex in enumerate(examples):
        for labels in ex.labels.values():
            for label in labels:
                y[i, index[label]] = 1.0
    texts = [normalize_text(ex.text) for ex in examples]
    groups = [document_key(ex.meta, f"task-{ex.task_id}-{i}") for i, ex in enumerate(examples)]
    return texts, y, groups


def check_trainable(y: np.ndarray, book: Codebook) -> list[str]:
    """Raise on data that cannot train anything; return warnings for labels that are absent."""
    if len(y) == 0:
        raise DataError("no annotated paragraphs in the data (empty export, or every task unannotated/skipped)")
    counts = y.sum(0)
    if counts.sum() == 0:
        raise DataError("every paragraph has no label at all: one class only, nothing to learn")
    missing = [label for (_, label), n in zip(book.flat_labels, counts) if n == 0]
    return [f"label {label!r} has no positive example: it will never be predicted" for label in missing]


def grouped_split(y: np.ndarray, groups: list[str], dev_size: float = 0.2, seed: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """Iterative multi-label stratification over documents: each document's label set is the
    union of its paragraphs', documents are split, and their paragraphs follow them."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    doc_ids = sorted(set(groups))
    if len(doc_ids) < 2:
        raise DataError(f"need paragraphs from at least 2 documents to split train/dev, got {len(doc_ids)}")
    pos = {d: i for i, d in enumerate(doc_ids)}
    doc_y = np.zeros((len(doc_ids), y.shape[1]), dtype=np.int64)
    row_doc = np.array([pos[g] for g in groups])
    np.add.at(doc_y, row_doc, (y > 0).astype(np.int64))
    doc_y = (doc_y > 0).astype(np.int64)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=dev_size, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_docs, dev_docs = next(splitter.split(np.zeros(len(doc_ids)), doc_y))
    if len(dev_docs) == 0 or len(train_docs) == 0:
        raise DataError("the split left train or dev empty: add documents or change --dev-size")
    dev_mask = np.isin(row_doc, dev_docs)
    return np.flatnonzero(~dev_mask), np.flatnonzero(dev_mask)


@dataclass
class Prepared:
    """Training data ready for any model: texts, each paragraph's document title, labels,
    documents (for grouped cross-validation) and warnings."""

    texts: list[str]
    titles: list[str | None]
    y: np.ndarray
    groups: list[str]
    notes: list[str]

    @property
    def summary(self) -> str:
        return f"{len(self.texts)} paragraphs from {len(set(self.groups))} documents"


def prepare(examples: list[Example], book: Codebook) -> Prepared:
    """Arrays and the trainability check in one step; raises DataError on unusable data."""
    texts, y, groups = to_arrays(examples, book)
    notes = check_trainable(y, book)
    titles = [ex.meta.get("title") if isinstance(ex.meta, dict) else None for ex in examples]
    return Prepared(texts, titles, y, groups, notes)
