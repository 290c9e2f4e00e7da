"""The 6D framework's tables (Yu, Wang & You, JMIR 2024) for any tagged corpus.

Counting follows the paper: release year, level and nature count *documents* (% of
documents); tools, stakeholders and orientation count *coded paragraphs* (% of all codes in
that dimension — a paragraph with two tools counts once for each). A tool group counts the
paragraphs coded with any of its sub-tools. 2D tables count paragraphs coded in both
categories (metadata × label: paragraphs of documents in that category). Documents whose
level, nature or year is unknown are counted under "unknown", never dropped.
"""
from __future__ import annotations

import pandas as pd

from labels.schema import Codebook

UNKNOWN = "unknown"
LEVEL_ZH = {"national": "国家级", "provincial": "省级", "municipal": "市级", "shanghai": "上海市", UNKNOWN: "未知"}
NATURE_ZH = {"planning": "规划类", "detailed_regulation": "细则类", UNKNOWN: "未知"}


def _meta_value(value, known: list[str] | None = None) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return UNKNOWN
    value = str(value).split(".")[0] if isinstance(value, float) else str(value)
    return value if known is None or value in known else UNKNOWN


def documents(frame: pd.DataFrame, book: Codebook) -> pd.DataFrame:
    """One row per document: year, level, nature (the first non-empty value of its rows)."""
    meta = book.metadata or {}
    docs = frame.groupby("doc_id", sort=False).agg({c: lambda s: next((v for v in s if pd.notna(v) and v != ""), None)
                                                    for c in ("year", "level", "nature")})
    docs["year"] = docs["year"].map(_meta_value)
    docs["level"] = docs["level"].map(lambda v: _meta_value(v, meta.get("level")))
    docs["nature"] = docs["nature"].map(lambda v: _meta_value(v, meta.get("nature")))
    return docs


def _count_table(counts: pd.Series, total: int, index_name: str) -> pd.DataFrame:
    table = pd.DataFrame({"count": counts.astype(int)})
    table["percent"] = (100 * table["count"] / total).round(1) if total else 0.0
    table.index.name = index_name
    return table


def _meta_table(docs: pd.DataFrame, column: str, order: list[str], names: dict | None, title: str) -> pd.DataFrame:
    counts = docs[column].value_counts()
    index = [k for k in order if k in counts.index] + sorted(k for k in counts.index if k not in order)
    series = counts.reindex(index).fillna(0)
    if names:
        series.index = [names.get(k, k) for k in series.index]
    return _count_table(series, len(docs), title)


def tool_rows(book: Codebook, dim: str = "tool") -> list[tuple[str, str, list[str]]]:
    """(row label, kind, member label ids): each group followed by its sub-tools."""
    rows = []
    for group in book.dimension(dim).groups:
        rows.append((f"{group.zh}", "group", [l.id for l in group.labels]))
        rows += [(f"  {l.zh}", "label", [l.id]) for l in group.labels]
    return rows


def _has_any(frame: pd.DataFrame, dim: str, ids: list[str]) -> pd.Series:
    wanted = set(ids)
    return frame[dim].map(lambda labels: bool(wanted & set(labels or [])))


def label_table(frame: pd.DataFrame, book: Codebook, dim: str) -> pd.DataFrame:
    d = book.dimension(dim)
    if d.groups:
        rows = tool_rows(book, dim)
        counts = pd.Series({name: int(_has_any(frame, dim, ids).sum()) for name, _, ids in rows})
        label_total = int(sum(len(v or []) for v in frame[dim]))
        group_total = int(sum(counts[name] for name, kind, _ in rows if kind == "group"))
        table = pd.DataFrame({"count": counts})
        table["percent"] = [round(100 * counts[name] / (group_total if kind == "group" else label_total), 1)
                            if (group_total if kind == "group" else label_total) else 0.0 for name, kind, _ in rows]
        table.index.name = d.zh
        return table
    counts = pd.Series({l.zh: int(_has_any(frame, dim, [l.id]).sum()) for l in d.labels})
    return _count_table(counts, int(counts.sum()), d.zh)


def _row_sets(frame: pd.DataFrame, book: Codebook, dim: str) -> list[tuple[str, pd.Series]]:
    d = book.dimension(dim)
    if d.groups:
        return [(name, _has_any(frame, dim, ids)) for name, _, ids in tool_rows(book, dim)]
    return [(l.zh, _has_any(frame, dim, [l.id])) for l in d.labels]


def cross_table(frame: pd.DataFrame, book: Codebook, rows_dim: str, cols: str, docs: pd.DataFrame | None = None,
                col_names: dict | None = None, col_order: list[str] | None = None) -> pd.DataFrame:
    """Paragraphs coded with a row label and a column category (label or document metadata)."""
    rows = _row_sets(frame, book, rows_dim)
    if cols in book.dimension_ids:
        columns = _row_sets(frame, book, cols)
        columns = [(name.strip(), mask) for name, mask in columns]
    else:
        values = frame["doc_id"].map(docs[cols])
        order = col_order or []
        keys = [k for k in order if (values == k).any()] + sorted(k for k in values.unique() if k not in order)
        columns = [((col_names or {}).get(k, k), values == k) for k in keys]
    table = pd.DataFrame({cname: [int((rmask & cmask).sum()) for _, rmask in rows] for cname, cmask in columns},
                         index=[name for name, _ in rows])
    table["total"] = table.sum(axis=1)
    table.index.name = book.dimension(rows_dim).zh
    return table


def build_tables(frame: pd.DataFrame, book: Codebook) -> dict[str, pd.DataFrame]:
    """All 1D and 2D tables, keyed 'T1 发布年份' … in the paper's order."""
    docs = documents(frame, book)
    years = sorted(k for k in docs["year"].unique() if k != UNKNOWN)
    levels = list((book.metadata or {}).get("level") or [])
    natures = list((book.metadata or {}).get("nature") or [])
    tables = {
        "T1 Release year 发布年份": _meta_table(docs, "year", years + [UNKNOWN], None, "年份"),
        "T2 Policy level 政策层级": _meta_table(docs, "level", levels + [UNKNOWN], LEVEL_ZH, "层级"),
        "T3 Policy nature 政策性质": _meta_table(docs, "nature", natures + [UNKNOWN], NATURE_ZH, "性质"),
    }
    label_dims = [d.id for d in book.dimensions]
    for i, dim in enumerate(label_dims):
        d = book.dimension(dim)
        tables[f"T{4 + i} {d.en} {d.zh}"] = label_table(frame, book, dim)
    n = 4 + len(label_dims)
    tool, others = label_dims[0], label_dims[1:]
    orientation = label_dims[-1]
    pairs = [(tool, dim, None) for dim in others[:-1]]  # tools × stakeholders
    pairs += [(tool, "level", LEVEL_ZH), (orientation, "level", LEVEL_ZH), (tool, "nature", NATURE_ZH),
              (orientation, "nature", NATURE_ZH), (tool, "year", None), (orientation, "year", None)]
    orders = {"level": levels + [UNKNOWN], "nature": natures + [UNKNOWN], "year": years + [UNKNOWN]}
    for rows_dim, cols, names in pairs:
        col_title = book.dimension(cols).zh if cols in label_dims else {"level": "政策层级", "nature": "政策性质", "year": "发布年份"}[cols]
        key = f"T{n} {book.dimension(rows_dim).zh}×{col_title}"
        tables[key] = cross_table(frame, book, rows_dim, cols, docs, names, orders.get(cols))
        n += 1
    return tables
