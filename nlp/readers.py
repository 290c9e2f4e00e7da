"""Reading documents of every supported type into text.

Each reader returns `Document`s; anything unreadable raises `UnreadableFile` with a reason
a person can act on, so ingestion can report the file and carry on.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer

TEXT_SUFFIXES = {".txt", ".md"}
SUFFIXES = TEXT_SUFFIXES | {".docx", ".pdf", ".html", ".htm", ".jsonl", ".csv"}
# Column names that carry the paragraph/document text in .jsonl/.csv inputs.
TEXT_COLUMNS = ("text", "paragraph", "content", "正文", "内容")
# Encodings Chinese government files come in, for the detector to choose among.
_CANDIDATES = ["utf_8", "gb18030", "big5", "utf_16", "utf_16_le", "utf_16_be"]


class UnreadableFile(Exception):
    """A file that cannot be read; str() is the reason."""


@dataclass
class Document:
    """The text of one document (or one record of a table) and what is known about it."""

    doc_id: str
    text: str
    source_path: str
    layout: str = "auto"  # how nlp.segment should cut it: auto / lines / wrapped
    meta: dict = field(default_factory=dict)  # metadata given by the source itself
    encoding: str | None = None
    paragraph_index: int | None = None  # the index a table row brought with it
    from_table: bool = False  # a row of a .jsonl/.csv table (metadata comes from its columns)


def decode(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown encoding; returns (text, encoding name)."""
    if not data.strip():
        raise UnreadableFile("empty file")
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(enc), enc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(data, cp_isolation=_CANDIDATES).best()
    if best is None:
        if b"\x00" in data:
            raise UnreadableFile("binary file (not text in any supported encoding)")
        raise UnreadableFile("undecodable: not UTF-8, GB18030/GBK, Big5 or UTF-16")
    text = str(best)
    enc = best.encoding
    if enc in ("gbk", "gb2312"):  # GB18030 is their superset: decode with it so no byte is lost
        text, enc = data.decode("gb18030"), "gb18030"
    if "\x00" in text or _control_ratio(text) > 0.05:
        raise UnreadableFile("binary file (control characters after decoding)")
    return text, enc


def _control_ratio(text: str) -> float:
    bad = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f")
    return bad / max(1, len(text))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot open: {exc.strerror or exc}") from None


def read_text_file(path: Path, doc_id: str) -> list[Document]:
    text, enc = decode(_read_bytes(path))
    if not text.strip():
        raise UnreadableFile("no text (only whitespace)")
    return [Document(doc_id, text, str(path), "auto", encoding=enc)]


def read_docx(path: Path, doc_id: str) -> list[Document]:
    import docx  # python-docx
    from docx.opc.exceptions import PackageNotFoundError

    data = _read_bytes(path)
    if not data:
        raise UnreadableFile("empty file")
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        # An OLE container: a password-protected .docx or an old binary .doc renamed.
        raise UnreadableFile("password-protected or legacy .doc file (OLE container), not a .docx")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise UnreadableFile("not a .docx (no ZIP container: truncated or another format)")
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableFile(f"corrupt .docx: {exc}") from None
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:  # table cells are text too: nothing may be lost
        for row in table.rows:
            lines.append(" ".join(cell.text.strip() for cell in row.cells if cell.text.strip()))
    text = "\n".join(lines)
    if not text.strip():
        raise UnreadableFile("no text in the .docx")
    return [Document(doc_id, text, str(path), "lines")]


def read_pdf(path: Path, doc_id: str) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    data = _read_bytes(path)
    if not data:
        raise UnreadableFile("empty file")
    if not data.lstrip().startswith(b"%PDF"):
        raise UnreadableFile("not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("password-protected PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableFile:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        kind = "truncated or damaged PDF" if isinstance(exc, (PdfReadError, EOFError, ValueError)) else "unreadable PDF"
        raise UnreadableFile(f"{kind}: {exc}") from None
    text = "\n".join(pages)
    if not text.strip():
        raise UnreadableFile("PDF has no extractable text (scanned image? needs OCR)")
    return [Document(doc_id, text, str(path), "wrapped")]


def read_html(path: Path, doc_id: str) -> list[Document]:
    from bs4 import BeautifulSoup

    raw, enc = decode(_read_bytes(path))
    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "noscript", "head"]):
        tag.decompose()
    meta = {}
    title_tag = BeautifulSoup(raw, "html.parser").title
    if title_tag and title_tag.get_text(strip=True):
        meta["html_title"] = title_tag.get_text(strip=True)
    text = soup.get_text("\n")
    if not text.strip():
        raise UnreadableFile("HTML page has no visible text")
    return [Document(doc_id, text, str(path), "lines", meta=meta, encoding=enc)]


def _text_column(columns) -> str:
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    raise UnreadableFile(f"no text column (looked for: {', '.join(TEXT_COLUMNS)}; found: {', '.join(map(str, columns)) or 'none'})")


def _records_to_documents(records: list[tuple[int, dict]], path: Path, doc_id: str, problems: list[str]) -> list[Document]:
    """Table rows -> Documents. A row names its document by `doc_id` (else each row is its own
    document) and keeps the row's metadata columns."""
    if not records:
        raise UnreadableFile("no rows")
    column = _text_column(records[0][1].keys())
    docs = []
    for row_no, row in records:
        text = row.get(column)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"row {row_no}: empty or non-text '{column}'; row skipped")
            continue
        meta = {k: v for k, v in row.items() if k != column and v not in (None, "")}
        index = meta.pop("paragraph_index", meta.pop("index", None))
        try:
            index = int(index) if index is not None else None
        except (TypeError, ValueError):
            index = None
        row_doc = str(meta.pop("doc_id", f"{doc_id}:{row_no}"))
        docs.append(Document(row_doc, text, str(path), "lines", meta=meta, paragraph_index=index, from_table=True))
    return docs


def read_jsonl(path: Path, doc_id: str, problems: list[str]) -> list[Document]:
    text, _ = decode(_read_bytes(path))
    records = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {line_no}: invalid JSON ({exc.msg}); line skipped")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {line_no}: not a JSON object; line skipped")
            continue
        records.append((line_no, row))
    if not records:
        raise UnreadableFile("no valid JSON object lines")
    return _records_to_documents(records, path, doc_id, problems)


def read_csv(path: Path, doc_id: str, problems: list[str]) -> list[Document]:
    text, _ = decode(_read_bytes(path))
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:
        raise UnreadableFile(f"malformed CSV: {exc}") from None
    return _records_to_documents([(i + 2, r) for i, r in enumerate(rows)], path, doc_id, problems)


def read_document(path: Path, doc_id: str, problems: list[str]) -> list[Document]:
    """Read one file by its suffix. Row-level problems are appended to `problems`."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return read_text_file(path, doc_id)
    if suffix == ".docx":
        return read_docx(path, doc_id)
    if suffix == ".pdf":
        return read_pdf(path, doc_id)
    if suffix in (".html", ".htm"):
        return read_html(path, doc_id)
    if suffix == ".jsonl":
        return read_jsonl(path, doc_id, problems)
    if suffix == ".csv":
        return read_csv(path, doc_id, problems)
    raise UnreadableFile(f"unsupported file type {suffix or '(none)'} (supported: {', '.join(sorted(SUFFIXES))})")
