"""The tags file: what `policytag predict` writes (one row per paragraph) and what the report
and the service read back. .jsonl and .parquet keep label lists; .csv and .xlsx (for Excel)
join them with ';'. Written atomically; a CSV cut short is refused on reading."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from policytag.files import atomic_path, read_jsonl, write_jsonl_atomic

from .metadata import FIELDS

FORMATS = {".csv", ".jsonl", ".xlsx", ".parquet"}
META_COLUMNS = ["doc_id", "paragraph_index", *FIELDS, "source_path", "is_heading", "text"]


def write_table(rows: list[dict], out: Path, label_columns: list[str] = ()) -> None:
    """Write rows atomically as .jsonl (lists kept), .parquet (lists kept), .csv / .xlsx
    (lists joined with ';')."""
    if out.suffix == ".jsonl":
        write_jsonl_atomic(out, rows)
        return
    columns = META_COLUMNS + list(label_columns)
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(columns + [c for r in rows[:1] for c in r])))
    if out.suffix == ".parquet":
        if "evidence" in frame:
            frame["evidence"] = frame["evidence"].map(lambda v: json.dumps(v, ensure_ascii=False))
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)
        return
    flat = frame.copy()
    for col in flat.columns:
        if flat[col].map(lambda v: isinstance(v, (list, dict))).any():
            flat[col] = flat[col].map(lambda v: ";".join(v) if isinstance(v, list) else json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v)
    with atomic_path(out) as tmp:
        if out.suffix == ".csv":
            flat.to_csv(tmp, index=False, encoding="utf-8-sig")  # BOM: Excel opens Chinese CSV correctly
        else:
            flat.to_excel(tmp, index=False, sheet_name="tags", engine="openpyxl")


def check_csv_complete(path: Path) -> None:
    """A tags CSV cut short (a copy interrupted, a full disk) ends inside its last row: refuse it
    with a clear reason instead of reading that row with its missing cells as empty."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) in (b"\n", b"\r"):
            return
    import csv

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        last = None
        for last in reader:
            pass
    if last is not None and len(last) < len(header):
        raise ValueError(f"the file looks truncated: its last row has {len(last)} of {len(header)} columns and no "
                         "line end; write it again (e.g. rerun `policytag predict`)")


def read_tags(path: str | Path) -> pd.DataFrame:
    """Read a tags file of any supported format back, with label columns as lists."""
    path = Path(path)
    if path.suffix == ".jsonl":
        frame = pd.DataFrame(read_jsonl(path))
    elif path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        for col in frame.columns:
            if frame[col].map(lambda v: hasattr(v, "tolist") and not isinstance(v, str)).any():
                frame[col] = frame[col].map(lambda v: list(v) if v is not None else [])
    elif path.suffix in (".csv", ".xlsx"):
        if path.suffix == ".csv":
            check_csv_complete(path)
        frame = pd.read_csv(path, encoding="utf-8-sig") if path.suffix == ".csv" else pd.read_excel(path, sheet_name=0)
        for col in frame.columns:
            if col not in META_COLUMNS and not col.startswith("p_") and col not in ("skipped", "evidence"):
                frame[col] = frame[col].map(lambda v: [x for x in str(v).split(";") if x] if isinstance(v, str) else [])
    else:
        raise ValueError(f"{path}: unsupported tags format (use {', '.join(sorted(FORMATS))})")
    return frame
