"""Batch tagging: documents or paragraph JSONL in, one row per paragraph out.

Rows are first appended to a journal (`<out>.journal.jsonl`) and each finished document is
recorded in a done-list (`<out>.done`); an interrupted run continues with `resume=True`
without duplicates (a torn last journal line, from a kill mid-write, is dropped). When every
input is through, rows out = paragraphs in is checked and only then is the journal written
out in the requested format atomically and removed. One run at a time per output: the output
path, its journal and done-list are held under an exclusive lock for the whole run.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from policytag.files import check_writable_file, exclusive_lock, read_jsonl, read_jsonl_tolerant, write_jsonl_atomic
from policytag.nlp.ingest import FileResult, iter_ingest
from policytag.nlp.tagsfile import FORMATS, META_COLUMNS, write_table

from .tagger import Tagger



@dataclass
class BatchSummary:
    paragraphs_in: int = 0
    rows_out: int = 0  # rows in the final output file
    rows_kept: int = 0  # rows of documents done by an earlier, interrupted run
    documents: int = 0
    resumed_documents: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    notes: list[str] = field(default_factory=list)  # things the user should know (a torn journal line dropped…)


class RowCountMismatch(RuntimeError):
    """The journal does not hold one row per paragraph: the output is left as it was."""


class BatchInterrupted(Exception):
    """Ctrl-C during a run; str() says what is kept and how to continue."""


def label_columns(tagger: Tagger) -> list[str]:
    cols = []
    for dim in tagger.book.dimensions:
        cols += [dim.id, f"{dim.id}_zh"]
        if dim.groups:
            cols += [f"{dim.id}_group", f"{dim.id}_group_zh"]
    return cols + [f"p_{label}" for label in tagger.label_ids] + ["skipped"]


def tag_rows(tagger: Tagger, records: list[dict], skip_headings: bool = False, explain: bool = False,
             progress: Callable[[int], None] | None = None) -> list[dict]:
    """One output row per input record, in order. Headings may be skipped (still listed)."""
    todo = [i for i, r in enumerate(records) if not (skip_headings and r.get("is_heading"))]
    titles = [records[i].get("title") for i in todo]
    probs = tagger.predict_proba([records[i]["text"] for i in todo], titles, progress=progress)
    by_index = dict(zip(todo, probs))
    explanations = {}
    if explain and todo:
        from .explain import explain_occlusion

        explanations = dict(zip(todo, explain_occlusion(tagger, [records[i]["text"] for i in todo], probs, titles)))
    rows = []
    for i, rec in enumerate(records):
        row = {c: rec.get(c) for c in META_COLUMNS}
        if i in by_index:
            pred = tagger.decode(by_index[i])
            for dim in tagger.book.dimensions:
                row[dim.id] = pred.labels[dim.id]
                row[f"{dim.id}_zh"] = [tagger.book.name_of(l) for l in pred.labels[dim.id]]
                if dim.groups:
                    row[f"{dim.id}_group"] = pred.groups[dim.id]
                    row[f"{dim.id}_group_zh"] = [tagger.book.name_of(g) for g in pred.groups[dim.id]]
            row.update({f"p_{l}": round(p, 5) for l, p in pred.probs.items()})
            row["skipped"] = None
            if explain:
                row["evidence"] = explanations.get(i, {})
        else:
            for col in label_columns(tagger):
                row[col] = [] if not col.startswith("p_") and col != "skipped" else None
            row["skipped"] = "heading"
        rows.append(row)
    return rows


def read_paragraph_inputs(inputs: list[Path], progress=None) -> Iterator[FileResult]:
    """Paragraph JSONL files from `policytag ingest` are taken as they are; anything else goes
    through ingestion. Either way, one FileResult per source file."""
    docs = []
    for path in inputs:
        if path.suffix == ".jsonl" and path.is_file() and _is_paragraph_jsonl(path):
            try:
                records = read_jsonl(path)
                yield FileResult(str(path), records=records)
            except ValueError as exc:
                yield FileResult(str(path), error=str(exc))
        else:
            docs.append(path)
    if docs:
        yield from iter_ingest(docs, progress=progress)


def _is_paragraph_jsonl(path: Path) -> bool:
    with open(path, encoding="utf-8-sig") as fh:
        first = fh.readline()
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and {"doc_id", "paragraph_index", "text"} <= set(row)


def _group_by_doc(records: list[dict]) -> dict[str, list[dict]]:
    docs: dict[str, list[dict]] = {}
    for r in records:
        docs.setdefault(str(r["doc_id"]), []).append(r)
    return docs


def journal_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".journal.jsonl"), out.with_name(out.name + ".done")


def _load_journal(out: Path, notes: list[str] | None = None) -> tuple[set[str], int]:
    """Documents already done, after dropping journal rows of documents not marked done
    (a crash between writing rows and marking the document) and a torn last line (a kill
    in the middle of writing it: its document was never marked done)."""
    journal, done_path = journal_paths(out)
    if not journal.exists() or not done_path.exists():
        return set(), 0
    done = set(done_path.read_text(encoding="utf-8", errors="replace").splitlines())
    rows, torn = read_jsonl_tolerant(journal)
    if torn and notes is not None:
        notes.append(f"{journal}: dropped a torn last line (an interrupted write); its document is tagged again")
    rows = [r for r in rows if isinstance(r, dict) and str(r.get("doc_id")) in done]
    write_jsonl_atomic(journal, rows)
    return done, len(rows)


def run_batch(tagger: Tagger, inputs: list[Path], out: Path, resume: bool = False, skip_headings: bool = False,
              explain: bool = False, chunk_paragraphs: int = 512, progress=None, on_file=None) -> BatchSummary:
    """Tag every paragraph of `inputs` into `out` (format from its suffix)."""
    if out.suffix not in FORMATS:
        raise ValueError(f"--out must end in one of {', '.join(sorted(FORMATS))}")
    journal, done_path = journal_paths(out)
    for path, what in ((out, "--out"), (journal, "the journal"), (done_path, "the done-list")):
        check_writable_file(path, what)  # before any tagging: a bad --out fails at once
    with exclusive_lock(out):
        try:
            return _run_locked(tagger, inputs, out, resume, skip_headings, explain, chunk_paragraphs, progress, on_file)
        except KeyboardInterrupt:
            done = done_path.read_text(encoding="utf-8", errors="replace").splitlines() if done_path.exists() else []
            raise BatchInterrupted(f"{len(done)} document(s) are saved in {journal}; run the same command with "
                                   "--resume to continue without tagging them again") from None


def _run_locked(tagger: Tagger, inputs: list[Path], out: Path, resume: bool, skip_headings: bool, explain: bool,
                chunk_paragraphs: int, progress, on_file) -> BatchSummary:
    journal, done_path = journal_paths(out)
    summary = BatchSummary()
    done: set[str] = set()
    if resume:
        done, kept = _load_journal(out, summary.notes)
        summary.resumed_documents, summary.rows_kept = len(done), kept
    else:
        journal.unlink(missing_ok=True)
        done_path.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[str, list[dict]]] = []

    def flush() -> None:
        records = [r for _, rs in pending for r in rs]
        if not records:
            return
        try:
            rows = tag_rows(tagger, records, skip_headings, explain, progress)
        except Exception as exc:  # the model failed on this chunk: retry document by document
            if len(pending) == 1:
                summary.failed.append((pending[0][0], f"tagging failed: {type(exc).__name__}: {exc}"))
                summary.paragraphs_in -= len(records)
                pending.clear()
                return
            chunk = pending[:]
            pending.clear()
            for item in chunk:
                pending.append(item)
                flush()
            return
        with open(journal, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with open(done_path, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{doc}\n" for doc, _ in pending))
        pending.clear()

    for result in read_paragraph_inputs(inputs):
        if on_file:
            on_file(result)
        if result.error:
            summary.failed.append((result.path, result.error))
            continue
        for doc_id, records in _group_by_doc(result.records).items():
            if doc_id in done:
                continue
            summary.documents += 1
            summary.paragraphs_in += len(records)
            pending.append((doc_id, records))
            if sum(len(r) for _, r in pending) >= chunk_paragraphs:
                flush()
    flush()
    rows = read_jsonl(journal) if journal.exists() else []
    summary.rows_out = len(rows)
    expected = summary.paragraphs_in + summary.rows_kept
    if len(rows) != expected:
        # Checked before the output is replaced: a bad run never overwrites a good file.
        raise RowCountMismatch(f"row count mismatch: {len(rows)} rows for {expected} paragraphs; {out} was not "
                               f"written (journal kept: {journal})")
    write_table(rows, out, label_columns(tagger))
    journal.unlink(missing_ok=True)
    done_path.unlink(missing_ok=True)
    return summary
