"""Comparing a corpus's 6D tables with the paper's published figures or with another tagged corpus.

What is compared: every row of Tables 1–5 (for Table 3 the groups and the sub-tools), the group
Total and Grand total rows of Tables 6, 7, 9, 11 (each group's shares across stakeholders,
levels, natures, years), and every cell of Tables 8, 10, 12 (the orientation shares within each
level / nature / year). Differences are percentage points, this corpus minus the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from policytag.labels.schema import Codebook

from .paper import CITATION, paper_corpus
from .sixd import Table, YearBins, corpus, paper_tables

PAPER = "paper"


@dataclass
class Comparison:
    key: str                 # the table compared, "Table 3"
    title: str
    ours: str                # names of the two sides, e.g. "tags.xlsx" and "paper"
    other: str
    frame: pd.DataFrame      # row, column, n and % of each side, Δ pp
    notes: list[str] = field(default_factory=list)

    @property
    def sheet(self) -> str:
        return f"{self.key.replace('Table ', 'T')} vs {self.other}"[:31]

    @property
    def slug(self) -> str:
        number = int(self.key.split()[-1])
        return f"table_{number:02d}_vs_{'paper' if self.other == PAPER else 'other'}"


def _compared_rows(table: Table) -> list[int]:
    if table.layout == "row":
        return [i for i, k in enumerate(table.kinds) if k in ("total", "grand")]
    return [i for i, k in enumerate(table.kinds) if k != "header"]


def compare_table(ours: Table, other: Table, ours_name: str, other_name: str) -> Comparison:
    """Cells matched by row and column name; a category one side lacks counts 0 there."""
    rows = [ours.rows[i] for i in _compared_rows(ours)]
    rows += [r for r in (other.rows[i] for i in _compared_rows(other)) if r not in rows]
    columns = list(ours.columns) + [c for c in other.columns if c not in ours.columns]

    def side(t: Table, row: str, column: str) -> tuple[int, float | None]:
        if row in t.rows and column in t.columns:
            return t.lookup(row, column)
        return 0, None

    records = []
    for row in rows:
        for column in columns:
            (n_a, p_a), (n_b, p_b) = side(ours, row, column), side(other, row, column)
            if n_a == 0 and n_b == 0 and (p_a is None or p_b is None):
                continue  # a column neither side has for this row
            records.append({"row": row, "column": column if ours.layout != "dist" else "",
                            f"{ours_name} n": n_a, f"{ours_name} %": None if p_a is None else round(p_a, 2),
                            f"{other_name} n": n_b, f"{other_name} %": None if p_b is None else round(p_b, 2),
                            "Δ pp": None if p_a is None or p_b is None else round(p_a - p_b, 2)})
    frame = pd.DataFrame(records)
    if ours.layout == "dist":
        frame = frame.drop(columns=["column"])
    what = {"dist": "shares", "row": "group shares (Total rows, row %)", "col": "column shares"}[ours.layout]
    notes = [f"{ours.key}, {what}: {ours_name} beside {other_name}; Δ pp = {ours_name} % − {other_name} % "
             "(percentage points)."]
    return Comparison(ours.key, ours.title, ours_name, other_name, frame, notes)


def compare_all(ours: dict[str, Table], other: dict[str, Table], ours_name: str, other_name: str) -> dict[str, Comparison]:
    return {key: compare_table(t, other[key], ours_name, other_name)
            for key, t in ours.items() if t.number is not None and key in other}


def paper_reference(book: Codebook, bins: YearBins) -> tuple[dict[str, Table], dict[str, str]]:
    """The paper's Tables 1–12 as Table objects, counted by the same code from synthetic corpora
    with the published counts, and {table: why it cannot be compared}."""
    tables, why = {}, {}
    for number in range(1, 13):
        key = f"Table {number}"
        if number == 11 and bins.spec != "paper":
            why[key] = (f"the paper publishes '2015 and before' as one bin, which cannot be re-binned to "
                        f"--year-bins {bins.spec}")
            continue
        frame = paper_corpus(number, book)
        if frame.empty:
            why[key] = f"codebook {book.name} lacks the paper's labels"
            continue
        built = paper_tables(corpus(frame, book), bins)
        if key in built:
            tables[key] = built[key]
    return tables, why


def compare_with_6d_paper(ours: dict[str, Table], book: Codebook, bins: YearBins,
                          ours_name: str) -> tuple[dict[str, Comparison], list[str]]:
    """Comparisons with the 6D paper's published tables, and notes on the tables that could not be compared."""
    reference, why = paper_reference(book, bins)
    comparisons = compare_all(ours, reference, ours_name, PAPER)
    for c in comparisons.values():
        c.notes.append(f"Paper: {CITATION}; its % recomputed from its published n (which also corrects its "
                       "four printing errata, listed in tests/test_report_paper.py).")
        if c.key in ("Table 5", "Table 8", "Table 10", "Table 12"):
            c.notes.append("The paper coded one orientation per paragraph; policytag's orientation is multi-label.")
    skipped: dict[str, list[str]] = {}
    for key, reason in why.items():
        if key in ours:  # tables this codebook cannot have are reported once, elsewhere
            skipped.setdefault(reason, []).append(key)
    return comparisons, [f"Not compared with the paper ({reason}): {', '.join(keys)}." for reason, keys in skipped.items()]
