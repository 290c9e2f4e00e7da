"""Files and folders in, one record per paragraph out, every file accounted for."""
from __future__ import annotations

import csv
import errno
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .metadata import FIELDS, is_sidecar, load_sidecar, merge_metadata, parse_metadata
from .readers import SUFFIXES, Document, UnreadableFile, read_document
from .segment import normalize_text, segment, split_sentences

RECORD_FIELDS = ("doc_id", "paragraph_index", "text", "original", "char_start", "char_end", "is_heading",
                 *FIELDS, "source_path")


@dataclass
class FileResult:
    """What became of one input file."""

    path: str
    records: list[dict] = field(default_factory=list)
    error: str | None = None  # the file could not be read at all
    problems: list[str] = field(default_factory=list)  # parts skipped (bad rows…)
    encoding: str | None = None


class MetadataError(ValueError):
    """The --metadata file cannot be used; str() is a one-line message naming it."""


def load_metadata_option(metadata: str | Path) -> dict[str, dict]:
    """Read the --metadata sidecar, or raise MetadataError with a one-line reason."""
    path = Path(metadata)
    if not path.exists():
        raise MetadataError(f"{path}: metadata file not found")
    if path.is_dir():
        raise MetadataError(f"{path}: is a folder; --metadata needs a CSV or JSON file")
    try:
        return load_sidecar(path)
    except UnicodeDecodeError:
        raise MetadataError(f"{path}: not UTF-8 text; save the metadata as UTF-8 (Excel: 'CSV UTF-8')") from None
    except (ValueError, csv.Error, AttributeError, TypeError) as exc:
        raise MetadataError(f"{path}: not a metadata CSV (column 'file') or JSON: {exc}".splitlines()[0]) from None
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _list_files(root: Path, failed: list[FileResult]) -> list[Path]:
    """Every regular file under `root` (hidden parts skipped). Symbolic links that loop or
    point nowhere, and links to folders (not followed), are listed in `failed`, never dropped
    silently."""
    files = []
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_symlink():
            try:
                p.stat()
            except OSError as exc:
                why = "symbolic link loop" if exc.errno == errno.ELOOP else "broken symbolic link (target missing)"
                failed.append(FileResult(str(p), error=why))
                continue
            if p.is_dir():
                failed.append(FileResult(str(p), error="symbolic link to a folder: not followed (pass that folder itself)"))
                continue
        if p.is_file():
            files.append(p)
    return files


@dataclass
class Source:
    path: Path
    doc_id: str
    sidecar: dict


def collect(paths: Iterable[str | Path], metadata: str | Path | None = None) -> tuple[list[Source], list[FileResult]]:
    """Expand files/folders (recursively) into the documents to read. Missing paths and
    unsupported files come back as failed FileResults so they are reported, never lost."""
    overrides = load_metadata_option(metadata) if metadata else {}
    sources: list[Source] = []
    failed: list[FileResult] = []
    seen_ids: set[str] = set()
    expanded: list[tuple[list[Path], Path]] = []
    sidecar_files: dict[Path, None] = {}  # ordered set
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            looping = root.is_symlink()
            failed.append(FileResult(str(root), error="broken or looping symbolic link" if looping else "no such file or folder"))
            continue
        if root.is_dir():
            files = _list_files(root, failed)
            expanded.append((files, root))
            sidecar_files.update(dict.fromkeys(f for f in files if is_sidecar(f)))
        else:
            expanded.append(([root], root.parent))
            # A document passed on its own still gets the metadata.csv / .json / <name>.meta.json
            # beside it, as it would when its folder is passed.
            beside = [root.parent / n for n in ("metadata.csv", "metadata.json", f"{root.name}.meta.json")]
            sidecar_files.update(dict.fromkeys(f for f in [root, *beside] if is_sidecar(f) and f.is_file()))
    # Sidecars apply to the documents of their folder, whichever argument brought them.
    sidecars: dict[Path, dict] = {}
    for f in sidecar_files:
        try:
            sidecars[f.parent] = {**sidecars.get(f.parent, {}), **load_sidecar(f)}
        except Exception as exc:  # a broken sidecar is reported; the documents still go in
            failed.append(FileResult(str(f), error=f"metadata sidecar unreadable: {exc}"))
    for files, base in expanded:
        for f in files:
            if is_sidecar(f):
                continue
            if f.suffix.lower() not in SUFFIXES:
                failed.append(FileResult(str(f), error=f"unsupported file type {f.suffix or '(none)'}"))
                continue
            rel = f.relative_to(base).with_suffix("")
            doc_id = rel.as_posix()
            while doc_id in seen_ids:  # the same name under two roots
                doc_id = f"{doc_id}~"
            seen_ids.add(doc_id)
            meta = {**sidecars.get(f.parent, {}).get(f.name, {}), **overrides.get(f.name, {})}
            sources.append(Source(f, doc_id, meta))
    return sources, failed


def _records(doc: Document, unit: str, sidecar: dict) -> list[dict]:
    spans = segment(doc.text, doc.layout)
    if unit == "sentence":
        pieces = []
        for span in spans:
            if span.is_heading:
                pieces.append((span.start, span.end, True))
                continue
            for s, e in split_sentences(doc.text[span.start:span.end]):
                pieces.append((span.start + s, span.start + e, False))
    else:
        pieces = [(s.start, s.end, s.is_heading) for s in spans]
    # A table row is a piece of a document, not a whole one: its header can't be parsed.
    parsed = {} if doc.from_table else parse_metadata([doc.text[s:e] for s, e, _ in pieces])
    if not parsed.get("title") and doc.meta.get("html_title"):
        parsed = {**parsed, "title": doc.meta["html_title"]}
    given = {k: doc.meta.get(k) for k in FIELDS if doc.meta.get(k) not in (None, "")}
    meta = merge_metadata(parsed, {**given, **sidecar})
    out = []
    for i, (s, e, heading) in enumerate(pieces):
        original = doc.text[s:e]
        index = doc.paragraph_index if (doc.paragraph_index is not None and len(pieces) == 1) else i
        out.append({
            "doc_id": doc.doc_id, "paragraph_index": index, "text": normalize_text(original),
            "original": original, "char_start": s, "char_end": e, "is_heading": heading,
            **{k: meta.get(k) for k in FIELDS}, "source_path": doc.source_path,
        })
    return out


def _renumber_duplicates(records: list[dict]) -> None:
    """Rows of one document that brought clashing indices are numbered in order instead."""
    by_doc: dict[str, list[dict]] = {}
    for r in records:
        by_doc.setdefault(r["doc_id"], []).append(r)
    for rows in by_doc.values():
        if len({r["paragraph_index"] for r in rows}) != len(rows):
            for i, r in enumerate(rows):
                r["paragraph_index"] = i


def read_source(source: Source, unit: str = "paragraph") -> FileResult:
    result = FileResult(str(source.path))
    try:
        docs = read_document(source.path, source.doc_id, result.problems)
        for doc in docs:
            result.encoding = result.encoding or doc.encoding
            result.records.extend(_records(doc, unit, source.sidecar))
        _renumber_duplicates(result.records)
    except UnreadableFile as exc:
        result.error = str(exc)
    except Exception as exc:  # an unexpected failure in one file must not stop the run
        result.error = f"unexpected error: {type(exc).__name__}: {exc}"
    return result


def iter_ingest(paths: Iterable[str | Path], unit: str = "paragraph", metadata=None,
                progress=None) -> Iterator[FileResult]:
    """Yield one FileResult per input file, in a stable order. `progress` (optional) is called
    with the number of files before the first result."""
    if unit not in ("paragraph", "sentence"):
        raise ValueError(f"unit must be 'paragraph' or 'sentence', not {unit!r}")
    sources, failed = collect(paths, metadata)
    if progress:
        progress(len(sources) + len(failed))
    yield from failed
    for source in sources:
        yield read_source(source, unit)

