"""The second codebook end to end: medical-security policy (labels/medsec.yaml, the Shanghai
multi-level medical-security study) — codebook, the study's tables and published figures, and the
whole chain config → real Label Studio → export → train (tiny encoder) → predict → serve → report.

Real policy text is read from ../shared (never copied here); the Label Studio part needs the
server that tests/test_studio.py starts and is skipped, loudly, where Label Studio is absent."""
from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from policytag.labels.export import parse_export
from policytag.labels.schema import load_codebook
from policytag.cli import app
from policytag.report import medsec
from policytag.report.tables import compare_with_paper
from policytag.report.sixd import YearBins
from policytag.report.tables import build_tables

from conftest import ROOT, shared_path
from test_studio import cli, connect, create_personal_access_token, join_by_invite  # noqa: F401

runner = CliRunner()
MEDSEC_PATH = ROOT / "labels" / "medsec.yaml"
BOOK = load_codebook(MEDSEC_PATH)
EXPORT = ("data", "annotations", "medsec-train.json")
# Medical-insurance documents of the shared corpus, tagged in the chain (read from ../shared, copied to tmp only).
DOCS = ("26_上海市医疗保障条例_2024.txt", "58_医疗保障基金使用监督管理条例_2021.txt")


# -- the codebook -----------------------------------------------------------------------------------
def test_shipped_codebook_is_the_canonical_one():
    canonical = shared_path("codebook", "medsec.yaml")
    assert MEDSEC_PATH.read_bytes() == canonical.read_bytes()
    assert BOOK.dimension_ids == ["tool", "objective"]
    assert [g.id for g in BOOK.dimension("tool").groups] == ["supply", "environment", "demand"]
    assert len(BOOK.dimension("tool").labels) == 10
    assert BOOK.dimension("objective").label_ids == ["coordinated_development", "service_connection",
                                                      "long_term_planning", "governance_modernization",
                                                      "sustainable_development"]


def test_published_figures_are_the_codebook_header():
    """report/medsec.py's machine-readable copy equals the header comments of the canonical codebook,
    and the study's tables rebuilt from it print every published share."""
    header = " ".join(l.lstrip("# ").strip() for l in shared_path("codebook", "medsec.yaml").read_text(
        encoding="utf-8").splitlines() if l.startswith("#"))
    assert f"n = {medsec.PUBLISHED_TOOL_N})" in header and f"base of {medsec.PUBLISHED_OBJECTIVE_BASE}" in header
    groups = re.findall(r"(supply|environment|demand) (\d+) \(([\d.]+) %\) — ([^;]+?)(?:;|\. Objective)", header)
    assert [g for g, *_ in groups] == list(medsec.PUBLISHED_TOOLS)
    for group, n, share, subs in groups:
        counts = [int(x) for x in re.findall(r"\b(\d+)\b", subs)]
        assert counts == list(medsec.PUBLISHED_TOOLS[group].values()) and sum(counts) == int(n)
        assert share == medsec.PUBLISHED_GROUP_SHARES[group]
        assert list(medsec.PUBLISHED_TOOLS[group]) == [l.id for l in BOOK.group(group).labels]
    objectives = re.findall(r"(\d+) \(([\d.]+) %\)", header.split("Objective code points as printed:")[1])
    assert [(int(n), p) for n, p in objectives] == [medsec.PUBLISHED_OBJECTIVES[l] for l in BOOK.dimension("objective").label_ids]

    reference, why = medsec.study_reference(BOOK)
    assert not why
    t1, t2 = reference["Table 1"], reference["Table 2"]
    assert t1.title == "Distribution of policy tools (n=297) 政策工具分布"
    for group in BOOK.dimension("tool").groups:  # printed group shares, at the study's two decimals
        n, p = t1.lookup(f"{group.zh} {group.en}")
        assert f"{p:.2f}" == medsec.PUBLISHED_GROUP_SHARES[group.id]
    assert t2.col_n == [medsec.PUBLISHED_OBJECTIVE_BASE]
    for label in BOOK.dimension("objective").labels:
        n, p = t2.lookup(f"{label.zh} {label.en}")
        assert (n, f"{p:.2f}") == medsec.PUBLISHED_OBJECTIVES[label.id]


# -- the study's tables, hand-computed --------------------------------------------------------------
def corpus_frame() -> pd.DataFrame:
    """Two documents, six paragraphs (one uncoded), no nature metadata."""
    return pd.DataFrame({
        "doc_id": ["a", "a", "a", "b", "b", "b"],
        "paragraph_index": [0, 1, 2, 0, 1, 2],
        "level": ["national"] * 3 + ["shanghai"] * 3,
        "year": [2019] * 3 + [2021] * 3,
        "tool": [["talent_manpower", "institutional_system"], ["basic_security_facilities"], [],
                 ["supervision_assessment", "institutional_system", "joint_procurement"], ["supervision_assessment"], []],
        "objective": [["governance_modernization"], ["governance_modernization", "sustainable_development"], [],
                      ["coordinated_development"], [], ["service_connection"]],
    })


def test_table_1_has_the_study_layout_with_hand_computed_counts():
    t = build_tables(corpus_frame(), BOOK)["Table 1"]
    # 7 tool codes: supply 2, environment 4, demand 1; every % over the 7
    assert t.title == "Distribution of policy tools (n=7) 政策工具分布"
    shown = t.display()
    assert list(shown.columns) == ["政策工具 Policy tools (n=7), n (%)"]
    assert list(zip(shown.index, shown.iloc[:, 0])) == [
        ("供给型 Supply-based (n=2)", "2 (28.57)"),
        ("  人才与人力保障 Talent and manpower security", "1 (14.29)"),
        ("  基本医疗保障与设施 Basic medical security and facilities", "1 (14.29)"),
        ("  物资与资金投入 Materials and capital investment", "N/A"),
        ("  技术与信息化支持 Technology and IT support", "N/A"),
        ("环境型 Environment-based (n=4)", "4 (57.14)"),
        ("  制度体系建设 Institutional system construction", "2 (28.57)"),
        ("  政策宣传与引导 Policy publicity and guidance", "N/A"),
        ("  监督与考核控制 Supervision and assessment control", "2 (28.57)"),
        ("需求型 Demand-based (n=1)", "1 (14.29)"),
        ("  试点示范 Pilot demonstration", "N/A"),
        ("  联合采购 Joint procurement", "1 (14.29)"),
        ("  社会参与 Social participation", "N/A"),
    ]


def test_objectives_and_the_level_and_year_tables_that_apply():
    tables = build_tables(corpus_frame(), BOOK)
    numbered = [k for k, t in tables.items() if t.number]
    # no nature metadata: Tables 4, 7, 8 do not apply
    assert numbered == ["Table 1", "Table 2", "Table 3", "Table 5", "Table 6", "Table 9", "Table 10"]
    t2 = tables["Table 2"]  # 4 paragraphs with an objective, one with two
    assert t2.col_n == [4] and [t2.cell_text(i, 0) for i in range(5)] == ["1 (25)", "1 (25)", "N/A", "2 (50)", "1 (25)"]
    assert any("more than 100 %" in n for n in t2.notes)
    t3 = tables["Table 3"]  # 5 coded paragraphs: national 2, shanghai 3
    assert [(r, t3.cell_text(i, 0)) for i, r in enumerate(t3.rows)] == [
        ("上海市 Shanghai", "3 (60)"), ("国家级 National level", "2 (40)"),
        ("省级 Provincial level", "N/A"), ("市级 Municipal level", "N/A")]
    t5 = tables["Table 5"]  # tool codes × level, row % per sub-tool
    assert t5.lookup("环境型 Environment-based · 合计 Total", "国家级 National level")[0] == 1
    assert t5.cell_text(t5.rows.index("环境型 Environment-based · 合计 Total"), t5.columns.index("上海市 Shanghai")) == "3 (75)"
    assert t5.row_n[-1] == 7 and t5.cell_text(len(t5.rows) - 1, 0) == "3 (42.86)"
    t10 = tables["Table 10"]  # objectives × release year, column % with a Total column
    assert t10.columns == ["2019", "2021", "合计 Total"] and t10.col_n == [2, 2, 4] and t10.timeline
    gov = t10.rows.index("医疗保障治理能力现代化 Modernising medical-security governance")
    assert [t10.cell_text(gov, j) for j in range(3)] == ["2 (100)", "N/A", "2 (50)"]
    assert not any(k.startswith("Extra") and "objective" in t.title.lower() for k, t in tables.items())
    from policytag.report.sixd import corpus
    assert medsec.omitted(corpus(corpus_frame(), BOOK)) == [
        "Not produced (no coded paragraph has a known nature): Table 4, Table 7, Table 8."]


def test_compare_paper_is_the_study_and_the_cli_writes_it(tmp_path):
    ours = build_tables(corpus_frame(), BOOK)
    comparisons, notes = compare_with_paper(ours, BOOK, YearBins(), "ours")
    assert sorted(comparisons) == ["Table 1", "Table 2"]
    t1 = comparisons["Table 1"].frame.set_index("row")
    assert t1.loc["供给型 Supply-based", "paper n"] == 161 and t1.loc["供给型 Supply-based", "Δ pp"] == -25.64
    t2 = comparisons["Table 2"].frame.set_index("row")
    assert t2.loc["医疗保障治理能力现代化 Modernising medical-security governance", "Δ pp"] == 2.81  # 50 − 47.19
    assert any("178" in n for n in comparisons["Table 2"].notes)
    assert notes == ["Not compared with the study (it publishes no such table): Table 3, Table 5, Table 6, Table 9, "
                     "Table 10."]

    tags = tmp_path / "tags.jsonl"
    tags.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in corpus_frame().to_dict("records")), encoding="utf-8")
    out = tmp_path / "report"
    r = runner.invoke(app, ["report", str(tags), "--out", str(out), "--schema", str(MEDSEC_PATH), "--compare", "paper",
                            "--no-charts"])
    assert r.exit_code == 0, r.output
    assert "Shanghai multi-level medical-security study" in r.output and "Table 4, Table 7, Table 8" in r.output
    table1 = pd.read_csv(out / "table_01.csv", encoding="utf-8-sig")
    assert table1.iloc[0].tolist() == ["供给型 Supply-based (n=2)", "2 (28.57)"]
    assert (out / "table_01_vs_paper.csv").exists() and (out / "table_02_vs_paper.csv").exists()
    assert not (out / "table_03_vs_paper.csv").exists()
    page = (out / "6d_report.html").read_text(encoding="utf-8")
    assert "医疗保障政策文本分析" in page and "Extra views, not in the study" in page


def test_evaluate_cross_validates_the_medsec_codebook(tmp_path):
    out = tmp_path / "cv.json"
    r = runner.invoke(app, ["evaluate", "--cv", "2", "--baseline", "tfidf", "--schema", str(MEDSEC_PATH),
                            "--data", str(shared_path(*EXPORT)), "--output", str(out)])
    assert r.exit_code == 0, r.output
    models = json.loads(out.read_text())["models"]
    assert set(next(iter(models.values()))["cv"]["mean"]["dimensions"]) == {"tool", "tool_group", "objective"}


# -- the whole chain through a real Label Studio ----------------------------------------------------
def as_dict(item) -> dict:
    """SDK objects or plain dicts, whichever the SDK returns."""
    return item if isinstance(item, dict) else item.dict()


def labels_by_paragraph(examples) -> dict:
    return {(e.meta["doc_id"], int(e.meta["paragraph_index"])): e.labels for e in examples}


@pytest.mark.studio
def test_chain_config_studio_export_train_predict_serve_report(studio, tiny_model, tmp_path):  # noqa: F811
    medsec_opt = ["--schema", str(MEDSEC_PATH)]
    # 1. the labeling config comes from the medsec codebook: a taxonomy of tools, objective choices
    r = runner.invoke(app, ["studio", "config", *medsec_opt])
    assert r.exit_code == 0, r.output
    root = ET.fromstring(r.output)
    taxonomy = root.find("Taxonomy")
    assert taxonomy.get("name") == "tool"
    assert [c.get("alias") for g in taxonomy.findall("Choice") for c in g.findall("Choice")] == BOOK.dimension("tool").label_ids
    (objective,) = [c for c in root.findall("Choices")]
    assert objective.get("name") == "objective" and [c.get("alias") for c in objective] == BOOK.dimension("objective").label_ids

    # 2. a real Label Studio project from it (idempotent), filled with the annotated medsec export
    for _ in range(2):
        r = cli(studio, "setup", "--title", "medsec chain", *medsec_opt)
        assert r.exit_code == 0, r.output
    ls = studio["client"]
    (project,) = [p for p in ls.projects.list() if p.title == "medsec chain"]
    shared_export = json.loads(shared_path(*EXPORT).read_text(encoding="utf-8"))
    ls.projects.import_tasks(id=project.id, commit_to_project=True, request=[
        {"data": {k: "" if v is None else v for k, v in t["data"].items()},
         "annotations": [{"result": a["result"]} for a in t["annotations"]]} for t in shared_export])
    # a second annotator codes three tasks, two as the first did and one differently
    coder_login = ("coder-medsec@policytag.test", "medsec-pass-6120")
    join_by_invite(studio["url"], ls, *coder_login)
    coder = connect(studio["url"], create_personal_access_token(studio["url"], *coder_login))
    tasks = sorted(ls.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
    assert len(tasks) == len(shared_export)
    annotated = [t for t in tasks if any(as_dict(a)["result"] for a in t.annotations)][:3]
    for t, same in zip(annotated, (True, True, False)):
        first = as_dict(t.annotations[0])["result"]
        result = first if same else [{"from_name": "objective", "to_name": "text", "type": "choices",
                                      "value": {"choices": ["long_term_planning"]}}]
        coder.annotations.create(id=t.id, result=result)

    # 3. export back and parse: the same labels as the shared export, nothing unknown
    export = tmp_path / "export.json"
    r = cli(studio, "pull", "--title", "medsec chain", "--out", export, *medsec_opt)
    assert r.exit_code == 0, r.output
    pulled, report = parse_export(export, BOOK)
    assert not report.unknown_labels and len(pulled) == len(shared_export)
    expected = labels_by_paragraph(parse_export(shared_path(*EXPORT), BOOK)[0])
    got = labels_by_paragraph(pulled)
    disputed = (str(annotated[2].data["doc_id"]), int(annotated[2].data["paragraph_index"]))
    assert {k: v for k, v in got.items() if k != disputed} == {k: v for k, v in expected.items() if k != disputed}
    assert set(got[disputed]) == {"tool", "objective"}

    r = cli(studio, "agreement", export, "--json", *medsec_opt)
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert stats["tasks_with_two_or_more"] == 3 and set(stats["alpha_masi"]) == {"tool", "objective"}
    assert set(stats["per_label_kappa"]) <= set(BOOK.dimension("tool").label_ids + BOOK.dimension("objective").label_ids)

    # 4. train the default ensemble on the export (a tiny random encoder: the chain, not the quality)
    model = tmp_path / "model"
    r = runner.invoke(app, ["train", "--data", str(export), "--base-model", str(tiny_model), "--out", str(model),
                            "--cv", "2", "--epochs", "1", "--max-length", "64", *medsec_opt])
    assert r.exit_code == 0, r.output
    metrics = json.loads((model / "metrics.json").read_text())
    assert set(metrics["dimensions"]) == {"tool", "tool_group", "objective"}
    r = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(export)])
    assert r.exit_code == 0 and "objective" in r.output, r.output

    # 5. tag real medical-insurance documents (copied from ../shared into tmp) and push them as suggestions
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = [l for l in shared_path("data", "docs", "metadata.csv").read_text(encoding="utf-8").splitlines()]
    (docs / "metadata.csv").write_text("\n".join([rows[0], *[l for l in rows if l.split(",")[0] in DOCS]]) + "\n", encoding="utf-8")
    for name in DOCS:
        shutil.copy(shared_path("data", "docs", name), docs / name)
    paragraphs = tmp_path / "p.jsonl"
    assert runner.invoke(app, ["ingest", str(docs), "--out", str(paragraphs)]).exit_code == 0
    r = cli(studio, "setup", "--title", "medsec new", *medsec_opt)
    assert r.exit_code == 0, r.output
    r = cli(studio, "push", paragraphs, "--title", "medsec new", "--predictions", model, *medsec_opt)
    assert r.exit_code == 0 and "with pre-annotations" in r.output, r.output
    (new,) = [p for p in ls.projects.list() if p.title == "medsec new"]
    for t in ls.tasks.list(project=new.id, fields="all"):
        for pred in t.predictions:
            for region in as_dict(pred)["result"]:
                values = [p[-1] for p in region["value"].get("taxonomy", [])] + region["value"].get("choices", [])
                assert region["from_name"] in ("tool", "objective")
                assert all(BOOK.resolve(region["from_name"], v) == v for v in values)
    r = cli(studio, "suggest", "--title", "medsec new", "--model", model, "--n", 5)
    assert r.exit_code == 0 and "least certain" in r.output, r.output

    tags = tmp_path / "tags.xlsx"
    r = runner.invoke(app, ["predict", str(docs), "--model", str(model), "--out", str(tags)])
    assert r.exit_code == 0, r.output
    from policytag.nlp.tagsfile import read_tags

    frame = read_tags(tags)
    assert {"tool", "tool_group", "objective", "objective_zh", "p_governance_modernization"} <= set(frame.columns)
    assert "stakeholder" not in frame.columns

    # 6. the service describes the medsec codebook
    from policytag.serve.app import Settings, create_app

    with TestClient(create_app(Settings(model_dir=model, api_token="t"))) as client:
        schema = client.get("/v1/schema", headers={"Authorization": "Bearer t"}).json()
        assert schema["schema"] == "medsec" and [d["id"] for d in schema["dimensions"]] == ["tool", "objective"]
        tagged = client.post("/v1/tag", json={"paragraphs": ["加强医保基金监管。"]}, headers={"Authorization": "Bearer t"}).json()
        assert set(tagged["paragraphs"][0]["labels"]) == {"tool", "objective"}

    # 7. the report: the study's Table 1 counted from the tags file, beside the study
    out = tmp_path / "report"
    r = runner.invoke(app, ["report", str(tags), "--out", str(out), "--compare", "paper", "--no-charts", *medsec_opt])
    assert r.exit_code == 0, r.output
    coded = frame[(frame["tool"].map(len) + frame["objective"].map(len)) > 0]
    codes = pd.Series([l for ls in coded["tool"] for l in ls]).value_counts()
    table1 = pd.read_csv(out / "table_01.csv", encoding="utf-8-sig").set_index(BOOK.dimension("tool").zh + " " + BOOK.dimension("tool").en)
    n_codes = int(codes.sum())
    for group in BOOK.dimension("tool").groups:
        n = int(sum(codes.get(l.id, 0) for l in group.labels))
        cell = table1.loc[f"{group.zh} {group.en} (n={n})"].iloc[0]
        assert cell.startswith(f"{n} (")
    assert table1.columns[0] == f"政策工具 Policy tools (n={n_codes}), n (%)"
    vs = pd.read_csv(out / "table_01_vs_paper.csv", encoding="utf-8-sig")
    assert int(vs["paper n"].sum()) == 2 * medsec.PUBLISHED_TOOL_N  # groups and sub-tools, each summing to 297
