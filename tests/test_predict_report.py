"""Batch tagging and the 6D report, with a real (baseline) model trained on the shared data."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from labels.schema import load_codebook
from models.batch import journal_paths, read_tags, run_batch
from models.tagger import load_model
from policytag import app
from report.render import find_cjk_font, font_has_glyphs
from report.sixd import build_tables

from conftest import EXAMPLES

runner = CliRunner()
BOOK = load_codebook()


@pytest.fixture(scope="module")
def model_dir(tfidf_model):
    return tfidf_model


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    shutil.copytree(EXAMPLES, d)
    return d


def paragraphs_in(path: Path) -> int:
    out = path.parent / "p.jsonl"
    assert runner.invoke(app, ["ingest", str(path), "--out", str(out)]).exit_code == 0
    return sum(1 for _ in open(out, encoding="utf-8"))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".xlsx", ".parquet"])
def test_every_format_reads_back_with_one_row_per_paragraph(model_dir, docs, tmp_path, suffix):
    out = tmp_path / f"tags{suffix}"
    result = runner.invoke(app, ["predict", str(docs), "--model", str(model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = paragraphs_in(docs)
    frame = read_tags(out)
    assert len(frame) == expected and f"check passed: {expected} rows = {expected} paragraphs" in result.output
    assert frame.groupby("doc_id")["paragraph_index"].apply(lambda s: s.is_unique).all()
    assert isinstance(frame["tool"].iloc[0], list) and isinstance(frame["tool_zh"].iloc[0], list)
    for _, row in frame.iterrows():
        assert row["tool_group"] == BOOK.groups_of("tool", row["tool"])
        assert [BOOK.name_of(l) for l in row["stakeholder"]] == row["stakeholder_zh"]
    assert {f"p_{l}" for _, l in BOOK.flat_labels} <= set(frame.columns)
    assert not any(p.name.endswith((".journal.jsonl", ".done")) for p in tmp_path.iterdir())


def test_paragraph_jsonl_input_and_skipped_headings(model_dir, docs, tmp_path):
    para = tmp_path / "p.jsonl"
    runner.invoke(app, ["ingest", str(docs), "--out", str(para)])
    out = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["predict", str(para), "--model", str(model_dir), "--out", str(out), "--skip-headings"])
    assert result.exit_code == 0, result.output
    frame = read_tags(out)
    assert len(frame) == paragraphs_in(docs)
    headings = frame[frame["is_heading"]]
    assert len(headings) > 0 and (headings["skipped"] == "heading").all() and headings["tool"].map(len).eq(0).all()


def test_failing_document_in_the_middle_is_listed_and_the_rest_go_on(model_dir, docs, tmp_path):
    (docs / "m_broken.pdf").write_bytes(b"%PDF-1.4\n%garbage")
    out = tmp_path / "tags.csv"
    result = runner.invoke(app, ["predict", str(docs), "--model", str(model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "m_broken.pdf" in result.output and "files/documents failed" in result.output
    assert len(read_tags(out)) == paragraphs_in(docs) - 0  # the broken file has no paragraphs to lose


def test_resume_continues_without_duplicates(model_dir, docs, tmp_path):
    tagger = load_model(model_dir)
    out = tmp_path / "tags.jsonl"
    files = sorted(docs.iterdir())

    class Stop(Exception):
        pass

    seen = []

    def stop_after_two(result):
        seen.append(result.path)
        if len(seen) == 3:  # two documents are done and journaled when the third arrives
            raise Stop

    with pytest.raises(Stop):
        run_batch(tagger, files, out, chunk_paragraphs=1, on_file=stop_after_two)
    journal, done = journal_paths(out)
    assert journal.exists() and len(done.read_text().splitlines()) == 2 and not out.exists()
    # a crash after rows were written but before the document was marked done
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"doc_id": "half-written", "paragraph_index": 0, "text": "x"}) + "\n")
    summary = run_batch(tagger, files, out, resume=True)
    assert summary.resumed_documents == 2 and summary.rows_out == summary.rows_kept + summary.paragraphs_in
    frame = read_tags(out)
    assert len(frame) == paragraphs_in(docs)
    assert not frame.duplicated(["doc_id", "paragraph_index"]).any() and "half-written" not in set(frame["doc_id"])


def test_explain_gives_words_for_each_predicted_label(model_dir, tmp_path):
    src = tmp_path / "one.txt"
    src.write_text("加强全科医生培养和规范化培训，扩大基层医务人员招聘规模。\n", encoding="utf-8")
    out = tmp_path / "tags.jsonl"
    assert runner.invoke(app, ["predict", str(src), "--model", str(model_dir), "--out", str(out), "--explain"]).exit_code == 0
    row = read_tags(out).iloc[0]
    predicted = row["tool"] + row["stakeholder"] + row["orientation"]
    assert predicted and set(row["evidence"]) == set(predicted)
    words = [w["word"] for ev in row["evidence"].values() for w in ev]
    assert words and all(w in row["text"] for w in words)


def _small_tags() -> pd.DataFrame:
    rows = [
        # doc A: national 2020 planning; doc B: provincial 2021 regulation; doc C: unknown everything
        ("A", 0, 2020, "national", "planning", ["talent_construction"], ["government"], ["graded_diagnosis"]),
        ("A", 1, 2020, "national", "planning", ["talent_construction", "medical_insurance_payment"], ["government", "resident"], []),
        ("B", 0, 2021, "provincial", "detailed_regulation", ["institutional_building"], ["physician"], ["smart_health"]),
        ("B", 1, 2021, "provincial", "detailed_regulation", [], [], []),
        ("C", 0, None, None, None, ["financial_guarantee"], ["government"], ["graded_diagnosis"]),
    ]
    return pd.DataFrame(rows, columns=["doc_id", "paragraph_index", "year", "level", "nature", "tool", "stakeholder", "orientation"])


def test_report_tables_match_a_hand_computed_example():
    tables = build_tables(_small_tags(), BOOK)
    t1, t2, t3 = (tables[k] for k in list(tables)[:3])
    assert t1["count"].to_dict() == {"2020": 1, "2021": 1, "unknown": 1}
    assert t2.loc["国家级", "count"] == 1 and t2.loc["省级", "count"] == 1 and t2.loc["未知", "count"] == 1
    assert t2.loc["国家级", "percent"] == 33.3
    assert t3.loc["规划类", "count"] == 1 and t3.loc["未知", "count"] == 1
    tools = tables["T4 Policy tool 政策工具"]
    # 5 sub-tool codes: talent x2, insurance, institutional, financial
    assert tools.loc["  人才建设", "count"] == 2 and tools.loc["  人才建设", "percent"] == 40.0
    # supply group: paragraphs A0, A1, C0 = 3 of 3+1+1 = 5 group codes
    assert tools.loc["供给型", "count"] == 3 and tools.loc["供给型", "percent"] == 60.0
    assert tools.loc["需求型", "count"] == 1 and tools.loc["环境型", "count"] == 1
    stake = tables["T5 Stakeholder 利益相关者"]
    assert stake.loc["政府", "count"] == 3 and stake.loc["政府", "percent"] == 60.0
    cross = tables["T7 政策工具×利益相关者"]
    assert cross.loc["供给型", "政府"] == 3 and cross.loc["  人才建设", "居民"] == 1 and cross.loc["环境型", "医务人员"] == 1
    level = tables["T8 政策工具×政策层级"]
    assert level.loc["供给型", "国家级"] == 2 and level.loc["供给型", "未知"] == 1 and level.loc["供给型", "total"] == 3
    orient_year = tables["T13 政策导向×发布年份"]
    assert orient_year.loc["分级诊疗", "2020"] == 1 and orient_year.loc["分级诊疗", "unknown"] == 1


def test_cjk_font_renders_glyphs_not_boxes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    path = find_cjk_font()
    assert font_has_glyphs(path, "政策工具利益相关者健康中国")

    def render(ch):
        fig = plt.figure(figsize=(1, 1), dpi=50)
        fig.text(0.1, 0.1, ch, fontproperties=font_manager.FontProperties(fname=path), fontsize=40)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., 0].copy()
        plt.close(fig)
        return img

    a, b = render("政"), render("策")
    # a missing glyph draws the same box for every character; real glyphs differ
    assert (a < 128).sum() > 20 and not np.array_equal(a, b)


def test_report_cli_writes_workbook_csv_charts_and_html(tmp_path):
    tags = tmp_path / "tags.jsonl"
    tags.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in _small_tags().to_dict("records")), encoding="utf-8")
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(tags), "--out", str(out)])
    assert result.exit_code == 0, result.output
    sheets = pd.read_excel(out / "6d_report.xlsx", sheet_name=None)
    assert len(sheets) == 13
    assert len(list(out.glob("*.png"))) == 13 and len(list(out.glob("*.csv"))) == 13
    page = (out / "6d_report.html").read_text(encoding="utf-8")
    assert page.count("<table") == 13 and page.count("data:image/png;base64,") == 13 and "政策工具" in page
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n')
    assert runner.invoke(app, ["report", str(bad), "--out", str(out)]).exit_code == 2
