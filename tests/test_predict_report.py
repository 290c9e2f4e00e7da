"""Batch tagging with a real (baseline) model trained on the shared data. The 6D report's tests are in
test_report_paper.py."""
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policytag.labels.schema import load_codebook
from policytag.models.batch import journal_paths, run_batch
from policytag.nlp.tagsfile import read_tags
from policytag.models.tagger import load_model
from policytag.cli import app

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


def test_an_unknown_backend_is_refused_before_anything_runs(model_dir, docs, tmp_path):
    """It once ran torch silently: now every command that takes --backend refuses a wrong name."""
    out = tmp_path / "o.csv"
    r = runner.invoke(app, ["predict", str(docs), "--model", str(model_dir), "--out", str(out), "--backend", "nonsense"])
    assert r.exit_code == 2 and "nonsense" in r.output and not out.exists()
    r = runner.invoke(app, ["serve", "--model", str(model_dir), "--backend", "nonsense"])
    assert r.exit_code == 2 and "nonsense" in r.output
    with pytest.raises(ValueError, match="unknown backend"):
        load_model(model_dir, backend="nonsense")
