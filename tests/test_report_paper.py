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
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pandas as pd
import pytest
from typer.testing import CliRunner

from policytag.labels.schema import load_codebook
from policytag.cli import app
from policytag.report.sixd import YearBins
from policytag.report.tables import build_tables

from conftest import shared_path

BOOK = load_codebook()
MEDSEC = load_codebook(BOOK.path.with_name("medsec.yaml"))
# A codebook of one's own without stakeholder or orientation (medsec's dimensions, another name): it gets
# the 6D layout; the medsec codebook itself gets its study's tables (tests/test_medsec.py).
OWN = replace(MEDSEC, name="own")
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


def test_reference_copy_in_the_package_matches_the_shared_file():
    """report/paper.py carries the published tables for --compare paper; it must be the same text."""
    from policytag.report.paper import PUBLISHED

    text = shared_path("reference", "paper-6d-tables.md").read_text(encoding="utf-8")
    shared = {int(n): body for n, body in re.findall(r"## Table (\d+)\..*?\n```\n(.*?)```", text, re.S)}
    assert {n: body for n, (_, body) in PUBLISHED.items()} == shared


# -- a small hand-computed corpus -----------------------------------------------------------------
def small_tags() -> pd.DataFrame:
    rows = [
        # doc A: national 2020 planning; doc B: provincial 2021 regulation; doc C: unknown everything
        ("A", 0, 2020, "national", "planning", ["talent_construction"], ["government"], ["graded_diagnosis"]),
        ("A", 1, 2020, "national", "planning", ["talent_construction", "medical_insurance_payment"], ["government", "resident"], []),
        ("B", 0, 2021, "provincial", "detailed_regulation", ["institutional_building"], ["physician"], ["smart_health"]),
        ("B", 1, 2021, "provincial", "detailed_regulation", [], [], []),  # a title: no label, not a 'policy text'
        ("C", 0, None, None, None, ["financial_guarantee"], ["government"], ["graded_diagnosis"]),
    ]
    return pd.DataFrame(rows, columns=["doc_id", "paragraph_index", "year", "level", "nature", "tool", "stakeholder", "orientation"])


def test_tables_match_a_hand_computed_example():
    t = build_tables(small_tags(), BOOK)
    assert [k for k in t if k.startswith("Table")] == [f"Table {n}" for n in range(1, 13)]
    assert list(t)[12:] == ["Extra A", "Extra B", "Extra C", "Extra D"]  # the extras come after Table 12
    # Table 1 counts the 4 coded paragraphs, not documents
    assert t["Table 1"].lookup("国家级 National level") == (2, 50.0)
    assert t["Table 1"].lookup("未知 Unknown") == (1, 25.0) and t["Table 1"].rows[-1] == "未知 Unknown"
    assert t["Table 1"].lookup("上海市 Shanghai")[0] == 0
    # Table 3: 5 tool codes; supply = talent 2 + financial 1 = 3 codes of 5; groups sum their sub-tools
    t3 = t["Table 3"]
    assert t3.lookup("供给型 Supply-based") == (3, 60.0) and t3.lookup("人才建设 Talent construction") == (2, 40.0)
    assert t3.lookup("需求型 Demand-based") == (1, 20.0) and t3.lookup("环境型 Environment-based") == (1, 20.0)
    assert t3.display().loc["供给型 Supply-based (n=3)"].iloc[0] == "3 (60)"
    assert t["Table 4"].lookup("政府 Governments") == (3, 60.0)
    # Table 5 over the 3 paragraphs with an orientation
    assert t["Table 5"].lookup("分级诊疗 Graded diagnosis and treatment")[0] == 2
    assert round(t["Table 5"].lookup("分级诊疗 Graded diagnosis and treatment")[1], 2) == 66.67
    # Table 6: co-occurrences; A1 alone gives talent×gov, talent×resident, insurance×gov, insurance×resident
    t6 = t["Table 6"]
    assert t6.lookup("人才建设 Talent construction", "政府 Governments")[0] == 2
    assert t6.row_n[t6.rows.index("人才建设 Talent construction")] == 3
    assert t6.lookup("供给型 Supply-based · 合计 Total", "政府 Governments") == (3, 75.0)
    assert t6.row_n[-1] == 7 and t6.rows[-1] == "总计 Grand total"
    shown = t6.display()
    assert shown.loc["  人才建设 Talent construction (n=3)", "居民 Residents, n (%)"] == "1 (33.33)"
    assert shown.loc["  人才建设 Talent construction (n=3)", "医务人员 Physicians, n (%)"] == "N/A"
    # Table 7: provincial and municipal merged; unknown level in its own column
    t7 = t["Table 7"]
    assert t7.columns == ["国家级 National level", "省市级 Provincial and municipal level", "上海市 Shanghai", "未知 Unknown"]
    assert t7.lookup("制度建设 Institutional building", "省市级 Provincial and municipal level") == (1, 100.0)
    assert t7.lookup("供给型 Supply-based · 合计 Total", "国家级 National level")[0] == 2
    # Table 8: column % over paragraphs with an orientation in that column; empty column -> N/A
    t8 = t["Table 8"]
    assert t8.col_n == [1, 1, 0, 1]
    assert t8.lookup("分级诊疗 Graded diagnosis and treatment", "国家级 National level") == (1, 100.0)
    assert t8.cell_text(0, 2) == "N/A"
    # Table 12: one column per year, a Total column
    t12 = t["Table 12"]
    assert t12.columns == ["2020", "2021", "未知 Unknown", "合计 Total"] and t12.col_n == [1, 1, 1, 3]
    # Extras: documents, not paragraphs
    assert t["Extra A"].lookup("国家级 National level") == (1, 100 / 3)
    assert t["Extra C"].title.endswith("(the paper's Figure 3)")


def test_multi_label_orientation_is_footnoted_and_can_exceed_100():
    frame = small_tags()
    frame.at[0, "orientation"] = ["graded_diagnosis", "medical_association"]
    t5 = build_tables(frame, BOOK)["Table 5"]
    assert sum(t5.percent(i, 0) for i in range(len(t5.rows))) > 100
    assert any("multi-label" in n and "more than 100" in n for n in t5.notes)


def test_year_bins():
    frame = small_tags()
    frame["year"] = [2014, 2014, 2016, 2016, 2019]
    paper = build_tables(frame, BOOK)
    assert paper["Table 11"].columns == ["2015 and before", "2016", "2019"]
    assert paper["Table 12"].columns == ["2014", "2016", "2019", "合计 Total"]
    edges = build_tables(frame, BOOK, YearBins.parse("2015,2018"))
    assert edges["Table 11"].columns == ["2015 and before", "2016–2018", "2019 and after"]
    assert YearBins.parse("years").bin(2014, 11) == (2014, "2014")
    with pytest.raises(ValueError):
        YearBins.parse("2018,2015")


def test_codebook_without_stakeholder_or_orientation_omits_those_tables():
    tool = OWN.dimension("tool").label_ids
    objective = OWN.dimension("objective").label_ids
    frame = pd.DataFrame({"doc_id": ["a", "a", "b"], "level": ["national", "national", "shanghai"],
                          "nature": ["planning"] * 3, "year": [2019, 2019, 2021],
                          "tool": [[tool[0]], [tool[1], tool[2]], []], "objective": [[objective[0]], [], [objective[1]]]})
    t = build_tables(frame, OWN)
    assert [k for k in t if k.startswith("Table")] == ["Table 1", "Table 2", "Table 3", "Table 7", "Table 9", "Table 11"]
    assert any(k.startswith("Extra") and "objective" in v.title.lower() for k, v in t.items())
    assert t["Table 3"].row_n[0] is not None  # the tool groups come from the codebook


def test_report_cli_with_a_codebook_of_ones_own_and_compare_paper(tmp_path):
    tool, objective = OWN.dimension("tool").label_ids, OWN.dimension("objective").label_ids
    schema = tmp_path / "own.yaml"
    schema.write_text(MEDSEC.path.read_text(encoding="utf-8").replace("schema: medsec", "schema: own"), encoding="utf-8")
    rows = [{"doc_id": "a", "level": "national", "nature": "planning", "year": 2019, "tool": [tool[0]], "objective": [objective[0]]},
            {"doc_id": "b", "level": "shanghai", "nature": "planning", "year": 2021, "tool": [tool[1]], "objective": []}]
    tags = tmp_path / "med.jsonl"
    tags.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(tags), "--out", str(out), "--schema", str(schema),
                                 "--compare", "paper", "--no-charts"])
    assert result.exit_code == 0, result.output
    assert "Not produced for codebook own" in result.output and "Table 4" in result.output
    assert "Not compared with the paper (codebook own lacks the paper's labels): Table 3" in " ".join(result.output.split())
    assert (out / "table_01_vs_paper.csv").exists() and not (out / "table_03_vs_paper.csv").exists()


# -- comparisons ----------------------------------------------------------------------------------
def test_compare_paper_with_its_own_counts_differs_by_zero():
    from policytag.report.tables import compare_with_paper
    from policytag.report.paper import paper_corpus

    ours = build_tables(paper_corpus(3, BOOK), BOOK)
    comparisons, _ = compare_with_paper(ours, BOOK, YearBins(), "paper-like")
    frame = comparisons["Table 3"].frame
    assert len(frame) == 21 and (frame["Δ pp"] == 0).all()
    assert frame.loc[frame["row"] == "环境型 Environment-based", "paper n"].item() == 1089


def test_compare_two_corpora_in_percentage_points():
    from policytag.report.compare import compare_all

    a = build_tables(small_tags(), BOOK)
    other = small_tags()
    other["level"] = ["provincial"] * 5
    b = build_tables(other, BOOK)
    frame = compare_all(a, b, "a", "b")["Table 1"].frame.set_index("row")
    assert frame.loc["国家级 National level", "Δ pp"] == 50.0  # 2/4 coded paragraphs vs 0/4
    assert frame.loc["省级 Provincial level", "Δ pp"] == -75.0  # 1/4 vs 4/4
    t7 = compare_all(a, b, "a", "b")["Table 7"].frame
    assert set(t7["row"]) == {"供给型 Supply-based · 合计 Total", "需求型 Demand-based · 合计 Total",
                              "环境型 Environment-based · 合计 Total", "总计 Grand total"}


# -- the command line and the files --------------------------------------------------------------
def write_xlsx(frame: pd.DataFrame, path):
    """A tags file as predict writes .xlsx: label lists joined with ';'."""
    out = frame.copy()
    for dim in BOOK.dimension_ids:
        out[dim] = out[dim].map(";".join)
    out.to_excel(path, index=False)


def test_report_cli_writes_workbook_csv_charts_and_html(tmp_path):
    tags = tmp_path / "tags.jsonl"
    tags.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in small_tags().to_dict("records")), encoding="utf-8")
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(tags), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for n in range(1, 13):
        assert f"Table {n}. " in result.output
    assert result.output.index("Table 1. ") < result.output.index("Table 12. ")
    sheets = pd.read_excel(out / "6d_report.xlsx", sheet_name=None, header=None)
    assert list(sheets)[:13] == [f"Table {n}" for n in range(1, 13)] + ["Extra A"] and "cells" in sheets
    assert sheets["Table 6"].iloc[0, 0].startswith("Table 6. 2D distribution of policy tools and stakeholders")
    assert (out / "table_01.csv").exists() and (out / "extra_A.csv").exists() and (out / "6d_cells.csv").exists()
    csv6 = pd.read_csv(out / "table_06.csv", encoding="utf-8-sig", index_col=0, keep_default_na=False)
    assert csv6.loc["  人才建设 Talent construction (n=3)", "医务人员 Physicians, n (%)"] == "N/A"
    assert len(list(out.glob("*.png"))) == 16
    page = (out / "6d_report.html").read_text(encoding="utf-8")
    assert page.count("<table") == 16 and page.count("data:image/png;base64,") == 16
    assert page.index("Table 12. ") < page.index("Extra views, not in the paper")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n')
    assert runner.invoke(app, ["report", str(bad), "--out", str(out)]).exit_code == 2
    assert runner.invoke(app, ["report", str(tags), "--out", str(out), "--year-bins", "soon"]).exit_code == 2


def test_report_cli_compare_paper_and_other_corpus(tmp_path):
    a, b = tmp_path / "national.xlsx", tmp_path / "province.xlsx"
    write_xlsx(small_tags(), a)
    other = small_tags()
    other["level"] = "provincial"
    write_xlsx(other, b)
    for compare, suffix, sheet in (("paper", "paper", "T1 vs paper"), (str(b), "other", "T1 vs province.xlsx")):
        out = tmp_path / f"report-{suffix}"
        result = runner.invoke(app, ["report", str(a), "--out", str(out), "--compare", compare, "--no-charts"])
        assert result.exit_code == 0, result.output
        sheets = pd.read_excel(out / "6d_report.xlsx", sheet_name=None, header=None)
        assert sheet in sheets and "Δ pp" in set(sheets[sheet].iloc[2])
        cmp = pd.read_csv(out / f"table_05_vs_{suffix}.csv", encoding="utf-8-sig")
        assert list(cmp.columns)[-1] == "Δ pp"
        page = (out / "6d_report.html").read_text(encoding="utf-8")
        assert page.count(" compared: national.xlsx vs ") == 12
    cmp = pd.read_csv(tmp_path / "report-paper" / "table_01_vs_paper.csv", encoding="utf-8-sig").set_index("row")
    assert cmp.loc["国家级 National level", "paper n"] == 275 and cmp.loc["国家级 National level", "Δ pp"] == round(50 - 20.45, 2)
    assert runner.invoke(app, ["report", str(a), "--out", str(tmp_path / "x"), "--compare",
                               str(tmp_path / "missing.xlsx")]).exit_code == 2


# -- Chinese glyphs in charts, from the pip-installed font alone ----------------------------------
def test_cjk_font_comes_from_the_python_environment_and_renders_glyphs(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import font_manager

    from policytag.report import render

    # No system font at all (this machine has no CJK one anyway): the bundled font must suffice.
    monkeypatch.setattr(font_manager.fontManager, "ttflist", [])
    path = render.find_cjk_font()
    assert "mplfonts" in path and path == render.bundled_cjk_font()
    assert render.font_has_glyphs(path, "政策工具利益相关者健康中国")

    def draw(ch):
        fig = plt.figure(figsize=(1, 1), dpi=50)
        fig.text(0.1, 0.1, ch, fontproperties=font_manager.FontProperties(fname=path), fontsize=40)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., 0].copy()
        plt.close(fig)
        return img

    a, b = draw("政"), draw("策")
    # a missing glyph draws the same box for every character; real glyphs differ
    assert (a < 128).sum() > 20 and not np.array_equal(a, b)
    # and a whole report chart is drawn with it, without "missing glyph" warnings
    import warnings

    table = build_tables(small_tags(), BOOK)["Table 3"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render.use_cjk_font()
        render.png_bytes(render.chart(table))


def test_no_cjk_font_anywhere_is_a_clear_error(monkeypatch):
    from matplotlib import font_manager

    from policytag.report import render

    monkeypatch.setattr(render, "BUNDLED_FONT", ("mplfonts", "fonts/absent.otf"))
    monkeypatch.setattr(font_manager.fontManager, "ttflist", [])
    with pytest.raises(render.FontMissing, match="mplfonts"):
        render.find_cjk_font()
