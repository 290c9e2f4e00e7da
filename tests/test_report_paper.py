"""Golden tests: the 6D report reproduces the paper's published Tables 1–12 cell by cell.

For each table, a synthetic coded corpus is built with exactly the published counts (one
paragraph per count); the report's numbers must equal the paper's and its percentages must round
to the paper's printed figures at the precision the paper printed (49, 88.1, 37.06). This file
parses ../shared/reference/paper-6d-tables.md and builds its corpora itself, independently of
report/paper.py. Where the paper is inconsistent, ERRATA names the cell, what it prints and the
correct value; nothing else is tolerated.
"""
from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pandas as pd
import pytest
from typer.testing import CliRunner

from labels.schema import load_codebook
from policytag import app
from report.sixd import YearBins, build_tables

from conftest import shared_path

BOOK = load_codebook()
MEDSEC = load_codebook(BOOK.path.with_name("medsec.yaml"))
runner = CliRunner()

# (table, row, column) -> (what the paper prints, the correct figure, why). A group's Total row is
# "<group> Total"; column None = a one-column table. Found by this test; each is the paper's slip.
ERRATA = {
    (6, "Technical support", "Grassroots hospitals"): ("16.77", "16.67", "5 of 30 = 16.67 %"),
    (7, "Medical insurance payment", "Provincial and municipal level"): ("84.56", "83.56", "61 of 73 = 83.56 %"),
    (11, "Environment-based Total", "2016"): ("15.15", "14.97", "environment-based 2016: 163 of 1,089 = 14.97 %"),
    (12, "Smart health care", "2016"): ("1.2", "0.9", "2 of 234 = 0.85 %, printed to one decimal 0.9"),
}

LEVELS = {"National level": ["national"], "Provincial level": ["provincial"], "Municipal level": ["municipal"],
          "Shanghai": ["shanghai"], "Provincial and municipal level": ["provincial", "municipal"]}
NATURES = {"Planning policy": "planning", "Detailed regulations": "detailed_regulation"}


def published() -> dict[int, tuple[list[str], list[tuple[str, list[str]]]]]:
    """{table: (header cells, [(first cell, other cells)])} from the shared reference file."""
    text = shared_path("reference", "paper-6d-tables.md").read_text(encoding="utf-8")
    tables = {}
    for number, body in re.findall(r"## Table (\d+)\..*?\n```\n(.*?)```", text, re.S):
        lines = [l for l in body.splitlines() if l.strip() and not l.startswith("N/A:")]
        header = lines[0].split("\t")
        tables[int(number)] = (header, [(l.split("\t")[0], [c.strip() for c in l.split("\t")[1:]]) for l in lines[1:]])
    assert sorted(tables) == list(range(1, 13))
    return tables


def split_n(text: str) -> tuple[str, int | None]:
    m = re.search(r"\s*\((?:n=)?(\d+)\)\s*$", text.replace(", n (%)", ""))
    return (text[: m.start()].strip(), int(m.group(1))) if m else (text.replace(", n (%)", "").strip(), None)


def parse_cell(cell: str) -> tuple[int, str | None]:
    if cell == "N/A":
        return 0, None
    n, p = re.fullmatch(r"(\d+) \(([\d.]+)\)", cell).groups()
    return int(n), p


def label_id(dim: str, name: str) -> str:
    lid = BOOK.resolve(dim, name)
    assert lid in BOOK.dimension(dim).label_ids, f"{name!r} is not a {dim} label"
    return lid


def corpus_for(number: int) -> pd.DataFrame:
    """One paragraph per published count, carrying the row's and the column's category."""
    header, rows = published()[number]
    columns = [split_n(h)[0] for h in header[1:]]
    paragraphs = []
    row_dim = {1: "level", 2: "nature", 3: "tool", 4: "stakeholder", 5: "orientation", 6: "tool", 7: "tool",
               8: "orientation", 9: "tool", 10: "orientation", 11: "tool", 12: "orientation"}[number]
    col_dim = {6: "stakeholder", 7: "level", 8: "level", 9: "nature", 10: "nature", 11: "year", 12: "year"}.get(number)
    for first, cells in rows:
        name, _ = split_n(first)
        if not cells or name in ("Total", "Grand total"):
            continue
        for column, cell in zip(columns, cells):
            if column == "Total":
                continue
            for i in range(parse_cell(cell)[0]):
                p = {"doc_id": f"d{len(paragraphs)}", "paragraph_index": 0, "level": None, "nature": None, "year": None,
                     "tool": [], "stakeholder": [], "orientation": []}
                for dim, value in ((row_dim, name), (col_dim, column)):
                    if dim == "level":
                        p["level"] = LEVELS[value][i % len(LEVELS[value])]  # merged columns: both members
                    elif dim == "nature":
                        p["nature"] = NATURES[value]
                    elif dim == "year":
                        p["year"] = (2014 + i % 2) if value == "2015 and before" else int(value)
                    elif dim:
                        p[dim] = [label_id(dim, value)]
                if number in (1, 2):  # a paragraph counts only if coded
                    p["tool"] = ["institutional_building"]
                paragraphs.append(p)
    return pd.DataFrame(paragraphs)


def rounds_to(n: int, base: int, printed: str) -> bool:
    """n/base as a percentage, rounded half-up at the decimals the paper printed, equals `printed`."""
    places = Decimal(1).scaleb(-len(printed.split(".")[1])) if "." in printed else Decimal(1)
    exact = Fraction(100 * n, base)
    value = (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(places, rounding=ROUND_HALF_UP)
    return value == Decimal(printed)


def find(names: list[str], paper_name: str) -> int:
    hits = [i for i, name in enumerate(names) if name == paper_name or name.endswith(" " + paper_name)]
    assert len(hits) == 1, f"{paper_name!r} not found once in {names}"
    return hits[0]


@pytest.mark.parametrize("number", range(1, 13))
def test_report_reproduces_published_table(number):
    header, rows = published()[number]
    table = build_tables(corpus_for(number), BOOK)[f"Table {number}"]
    assert table.number == number
    columns = [split_n(h) for h in header[1:]]
    col_index = [0] if table.layout == "dist" else [find(table.columns, name) for name, _ in columns]
    assert len(table.columns) == len(columns), (table.columns, columns)
    for (name, n), j in zip(columns, col_index):
        if n is not None and table.layout != "dist":
            assert table.col_n[j] == n, f"Table {number} column {name}: n={table.col_n[j]}, paper n={n}"
    group, group_name = None, ""
    checked = errata_seen = 0
    wrong: list[str] = []
    for first, cells in rows:
        name, row_n = split_n(first)
        if name == "Total":
            i = table.rows.index(f"{table.rows[group]} · 合计 Total")
        elif name == "Grand total":
            i = table.rows.index("总计 Grand total")
        else:
            i = find(table.rows, name)
        if not cells:  # a group line: "Supply-based" or Table 3's "Supply-based (n=357)"
            group, group_name = i, name
            assert table.kinds[i] in ("header", "group")
            if row_n is not None:
                assert table.counts[i][0] == row_n, f"Table {number} {name}: n={table.counts[i][0]}, paper {row_n}"
            continue
        if row_n is not None:
            assert table.row_n[i] == row_n, f"Table {number} {name}: n={table.row_n[i]}, paper n={row_n}"
        for (cname, _), j, cell in zip(columns, col_index, cells):
            n, printed = parse_cell(cell)
            ours, base = table.counts[i][j], table.bases[i][j]
            where = f"Table {number} [{name} × {cname}]"
            assert ours == n, f"{where}: {ours}, paper {n}"
            if printed is None:  # the paper's N/A
                assert ours == 0 and table.cell_text(i, j) == "N/A", where
                continue
            key = (number, f"{group_name} Total" if name == "Total" else name, None if table.layout == "dist" else cname)
            if key in ERRATA:
                bad, right, why = ERRATA[key]
                assert printed == bad, f"{where}: erratum no longer in the reference file"
                assert not rounds_to(ours, base, bad) and rounds_to(ours, base, right), f"{where}: {why}"
                errata_seen += 1
            elif not rounds_to(ours, base, printed):
                wrong.append(f"{where}: {ours}/{base} = {100 * ours / base:.4f} %, paper prints {printed}")
            checked += 1
    assert not wrong, "\n".join(wrong)  # every mismatch at once, so a new erratum is seen whole
    assert checked > 0
    assert errata_seen == sum(1 for k in ERRATA if k[0] == number)
