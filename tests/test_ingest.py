import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policytag.files import read_jsonl
from policytag.nlp.ingest import Source, iter_ingest, read_source
from policytag.nlp.metadata import parse_date, parse_metadata
from policytag.nlp.readers import decode
from policytag.nlp.segment import is_heading, normalize_text, segment
from policytag.cli import app

from conftest import EXAMPLES, shared_path

runner = CliRunner()
TRADITIONAL = "關於加強基層醫療衛生服務的通知\n（示衛發〔2024〕5號）\n一、總體要求\n加強基層醫療衛生機構能力建設，提升服務水平。\n示範市衛生健康委員會\n2024年5月6日\n"
TEXT = "关于加强基层医疗卫生服务的通知\n（示卫发〔2024〕5号）\n一、总体要求\n加强基层医疗卫生机构能力建设，提升服务水平。\n示范市卫生健康委员会\n2024年5月6日\n"


def ingest_one(path: Path) -> list[dict]:
    results = list(iter_ingest([path]))
    assert len(results) == 1 and results[0].error is None, results[0].error
    return results[0].records


def assert_accounts_for_every_line(text: str, records: list[dict]) -> None:
    """Every non-blank input line lies inside exactly one paragraph, and offsets are exact."""
    for r in records:
        assert text[r["char_start"]:r["char_end"]] == r["original"]
    covered = [(r["char_start"], r["char_end"]) for r in records]
    pos = 0
    for line in text.splitlines(keepends=True):
        if line.strip():
            start = pos + line.index(line.strip()[0])
            assert sum(s <= start < e for s, e in covered) == 1, f"line not in exactly one paragraph: {line!r}"
        pos += len(line)


# --- file types ------------------------------------------------------------
def test_txt_utf8_with_metadata(tmp_path):
    path = tmp_path / "notice.txt"
    path.write_text(TEXT, encoding="utf-8")
    records = ingest_one(path)
    assert [r["text"] for r in records][2:4] == ["一、总体要求", "加强基层医疗卫生机构能力建设,提升服务水平。"]
    first = records[0]
    assert first["title"] == "关于加强基层医疗卫生服务的通知"
    assert first["doc_number"] == "示卫发〔2024〕5号"
    assert first["issuer"] == "示范市卫生健康委员会"
    assert first["date"] == "2024-05-06" and first["year"] == 2024
    assert first["level"] == "municipal" and first["nature"] == "detailed_regulation"
    assert [r["paragraph_index"] for r in records] == list(range(6))
    assert_accounts_for_every_line(TEXT, records)


def test_markdown_headings(tmp_path):
    path = tmp_path / "plan.md"
    path.write_text("# 健康社区建设规划\n\n## 一、目标\n\n到2025年建成一批健康社区。\n", encoding="utf-8")
    records = ingest_one(path)
    assert [r["is_heading"] for r in records] == [True, True, False]


def test_docx_example():
    records = ingest_one(EXAMPLES / "互联网医院管理办法.docx")
    assert records[0]["title"] == "示范省互联网医院管理办法"
    headings = [r["text"] for r in records if r["is_heading"]]
    assert headings == ["第一章总则", "第二章执业规则"]
    assert any(r["text"].startswith("第三条") for r in records)


def test_pdf_wrapped_lines_are_joined():
    records = ingest_one(EXAMPLES / "按病种分值付费试点通知.pdf")
    texts = [r["text"] for r in records]
    # This paragraph spans three lines in the PDF; it must come back as one.
    joined = [t for t in texts if t.startswith("全市二级及以上定点医疗机构")]
    assert len(joined) == 1 and joined[0].endswith("核查工作。")
    assert "一、试点范围" in texts and records[texts.index("一、试点范围")]["is_heading"]
    assert records[0]["doc_number"] == "示医保发〔2025〕3号" and records[0]["date"] == "2025-05-20"


def test_html(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("<html><head><title>关于推进智慧医院建设的意见</title><script>var x=1;</script></head>"
                    "<body><h1>关于推进智慧医院建设的意见</h1><p>一、建设目标</p><p>推进电子病历互联互通。</p></body></html>",
                    encoding="utf-8")
    records = ingest_one(path)
    assert [r["text"] for r in records] == ["关于推进智慧医院建设的意见", "一、建设目标", "推进电子病历互联互通。"]
    assert records[0]["nature"] == "planning"


def test_jsonl_and_csv_with_text_column(tmp_path):
    jl = tmp_path / "paras.jsonl"
    jl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"doc_id": "d1", "index": 0, "text": "加强基层医疗卫生机构建设。", "issuer": "国务院办公厅", "date": "2020-01-02"},
        {"doc_id": "d1", "index": 2, "text": "推进家庭医生签约服务。", "issuer": "国务院办公厅", "date": "2020-01-02"},
    ]) + "\n", encoding="utf-8")
    records = ingest_one(jl)
    assert [(r["doc_id"], r["paragraph_index"]) for r in records] == [("d1", 0), ("d1", 2)]
    assert records[0]["level"] == "national" and records[0]["year"] == 2020
    csv_path = tmp_path / "paras.csv"
    csv_path.write_text("doc_id,content,level\nd2,推进医联体建设。,provincial\nd2,完善医保支付。,provincial\n", encoding="utf-8")
    records = ingest_one(csv_path)
    assert [r["text"] for r in records] == ["推进医联体建设。", "完善医保支付。"]
    assert records[1]["level"] == "provincial" and records[1]["paragraph_index"] == 1


# --- encodings ---------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "gb2312", "big5", "utf-16"])
def test_encodings(tmp_path, encoding):
    text = TEXT if encoding != "big5" else TRADITIONAL
    text = text * 3  # detectors need some text; real files are longer still
    data = text.encode(encoding)
    decoded, _ = decode(data)
    assert decoded.lstrip("\ufeff") == text
    path = tmp_path / f"doc_{encoding}.txt"
    path.write_bytes(data)
    records = ingest_one(path)
    assert records[2]["original"] == text.splitlines()[2] and records[2]["is_heading"]


def test_gbk_example_file():
    records = ingest_one(EXAMPLES / "健康社区工作方案_gbk.txt")
    assert records[0]["title"] == "示范县健康社区建设工作方案"
    # a paragraph broken after a comma inside a blank-line separated block is re-joined
    assert any(r["text"].startswith("(二)加大财政投入") and r["text"].endswith("一次性补助。") for r in records)


# --- segmentation ------------------------------------------------------------------
@pytest.mark.parametrize("line,expected", [
    ("一、总体要求", True), ("（三）完善运行机制。", True), ("第十条", True), ("第二章 总 则", True),
    ("1. 加强组织领导", True), ("## 目标", True),
    ("第十条 医疗机构应当建立健全内部管理制度，保障医疗安全。", False),
    ("（一）完善首诊负责制。接诊医师要按照临床诊疗指南、规范，为患者提供服务。", False),
    ("加强基层医疗卫生机构建设。", False), ("2024年10月28日", False),
])
def test_heading_detection(line, expected):
    assert is_heading(line) is expected


def test_normalisation_keeps_original():
    assert normalize_text("医 疗\u3000机构（试行） ABC 123 ，\n 推进") == "医疗机构(试行)ABC 123,推进"
    assert normalize_text("ＡＢＣ１２３") == "ABC123"


def test_wrapped_layout_joins_mid_sentence_breaks():
    text = "为提高医保基金使用效率，规范医疗服务行为，经研究，决\n定在全市开展试点工作。\n一、试点范围\n全市定点医疗机构纳入试点。\n"
    spans = segment(text, "wrapped")
    assert [text[s.start:s.end].replace("\n", "") for s in spans] == [
        "为提高医保基金使用效率，规范医疗服务行为，经研究，决定在全市开展试点工作。", "一、试点范围", "全市定点医疗机构纳入试点。"]


def test_sentence_unit(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("一、目标\n加强建设。提升能力！完善机制？\n", encoding="utf-8")
    records = [r for res in iter_ingest([path], unit="sentence") for r in res.records]
    assert [r["text"] for r in records] == ["一、目标", "加强建设。", "提升能力!", "完善机制?"]


# --- metadata on real headers ----------------------------------------------------------
def test_metadata_from_real_headers():
    docs = shared_path("data", "docs")
    r = read_source(Source(docs / "01_首诊转诊_国卫办医政发2024_21.txt", "01", {})).records[0]
    assert r["title"] == "关于加强首诊和转诊服务提升医疗服务连续性的通知"
    assert r["doc_number"] == "国卫办医政发〔2024〕21号" and r["date"] == "2024-10-28"
    assert r["issuer"] == "国家卫生健康委办公厅国家中医药局综合司国家疾控局综合司" and r["level"] == "national"
    r = read_source(Source(docs / "07_医保支付资格管理_医保发2024_23.txt", "07", {})).records[0]
    assert r["issuer"] == "国家医保局、国家卫生健康委、国家药监局" and r["nature"] == "planning"
    r = read_source(Source(docs / "28_临沂市健康乡村条例_2021.txt", "28", {})).records[0]
    # a local regulation: adopted 2021-05-08, approved by the province 2021-05-27
    assert r["issuer"] == "临沂市人民代表大会常务委员会" and r["date"] == "2021-05-27" and r["level"] == "municipal"
    r = read_source(Source(docs / "26_上海市医疗保障条例_2024.txt", "26", {})).records[0]
    assert r["level"] == "shanghai" and r["year"] == 2024
    r = read_source(Source(docs / "20_将健康融入所有政策实施方案_海南_琼健爱卫2025_7.txt", "20", {})).records[0]
    assert r["doc_number"] == "琼健爱卫〔2025〕7号" and r["year"] == 2025 and r["issuer"] is None  # not in the text: not invented


def test_metadata_never_invented():
    meta = parse_metadata(["加强基层医疗卫生机构建设。", "推进家庭医生签约服务。"])
    assert all(meta[k] is None for k in ("title", "issuer", "doc_number", "date", "year", "level", "nature"))
    assert parse_date("二〇二四年十月二十八日印发") == "2024-10-28"


def test_sidecar_overrides_parsing(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "metadata.csv").write_text("file,issuer,level\na.txt,上海市卫生健康委员会,shanghai\n", encoding="utf-8")
    records = ingest_one(tmp_path)
    assert records[0]["issuer"] == "上海市卫生健康委员会" and records[0]["level"] == "shanghai"
    assert records[0]["doc_number"] == "示卫发〔2024〕5号"  # not overridden: still parsed


def test_per_file_json_sidecar(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "a.txt.meta.json").write_text(json.dumps({"nature": "planning", "year": 2019}), encoding="utf-8")
    records = ingest_one(tmp_path)
    assert records[0]["nature"] == "planning" and records[0]["year"] == 2019 and len(records) == 6


def test_every_real_document_segments_losslessly():
    docs = shared_path("data", "docs")
    for result in iter_ingest([docs]):
        assert result.error is None, (result.path, result.error)
        text, _ = decode(Path(result.path).read_bytes())
        assert_accounts_for_every_line(text, result.records)


# --- bad input ---------------------------------------------------------------------------
def _encrypted_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(EXAMPLES / "按病种分值付费试点通知.pdf").pages:
        writer.add_page(page)
    writer.encrypt("secret")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


BAD_FILES = {
    "empty.txt": (lambda: b"", "empty file"),
    "blank.txt": (lambda: b"   \n\n  \n", "empty file"),
    "binary.txt": (lambda: bytes(range(256)) * 20, "binary"),
    "undecodable.txt": (lambda: b"\x81\x30\xff\xfe\x00\x81" * 50 + b"\xff" * 100, ""),
    "truncated.pdf": (lambda: (EXAMPLES / "按病种分值付费试点通知.pdf").read_bytes()[:900], "PDF"),
    "protected.pdf": (_encrypted_pdf, "password-protected PDF"),
    "not_a_pdf.pdf": (lambda: "这不是PDF".encode(), "not a PDF"),
    "protected.docx": (lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "password-protected"),
    "truncated.docx": (lambda: (EXAMPLES / "互联网医院管理办法.docx").read_bytes()[:3000], ".docx"),
    "notext.csv": (lambda: "a,b\n1,2\n".encode(), "no text column"),
    "badlines.jsonl": (lambda: b"{not json\n[1,2]\n", "no valid JSON"),
    "image.png": (lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "unsupported file type"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_reported_and_skipped(tmp_path, name):
    make, reason = BAD_FILES[name]
    (tmp_path / name).write_bytes(make())
    (tmp_path / "good.txt").write_text(TEXT, encoding="utf-8")
    results = {Path(r.path).name: r for r in iter_ingest([tmp_path])}
    assert results["good.txt"].error is None and len(results["good.txt"].records) == 6
    bad = results[name]
    assert bad.error and not bad.records
    assert reason.lower() in bad.error.lower(), bad.error


def test_partially_bad_jsonl_reports_each_bad_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "加强建设。"}\n{broken\n{"text": ""}\n{"text": "推进改革。"}\n', encoding="utf-8")
    result = next(iter(iter_ingest([path])))
    assert [r["text"] for r in result.records] == ["加强建设。", "推进改革。"]
    assert len(result.problems) == 2 and "line 2" in result.problems[0] and "row 3" in result.problems[1]


def test_cli_summary_and_exit_codes(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    out = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["ingest", str(tmp_path / "in"), str(tmp_path / "missing"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert re.search(r"files read\s*│\s*1", result.output) and re.search(r"files skipped\s*│\s*2", result.output)
    assert "empty file" in result.output and "no such file" in result.output
    assert len(read_jsonl(out)) == 6
    # nothing readable: exit 2, and the earlier output is left untouched
    result = runner.invoke(app, ["ingest", str(tmp_path / "in" / "empty.txt"), "--out", str(out)])
    assert result.exit_code == 2
    assert len(read_jsonl(out)) == 6
