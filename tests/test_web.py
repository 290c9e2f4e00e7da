"""The analysts' web page (serve/web.py, serve/web/): its JSON routes in process, and the page itself driven in
Debian's Chromium through Playwright against a real `policytag serve` (no browser download at run time)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from policytag.serve.app import Settings, create_app

from conftest import EXAMPLES, serving

TOKEN = "web-token-8817"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CORRUPT = b"PK\x03\x04 this is not a real Word file"


def expected_paragraphs() -> list[dict]:
    """What `policytag ingest` makes of the example documents, in order."""
    from policytag.nlp.ingest import iter_ingest

    records = []
    for result in iter_ingest(sorted(EXAMPLES.iterdir())):
        assert result.error is None, result
        records += result.records
    return records


@pytest.fixture(scope="module")
def model_dir(tfidf_model):
    return tfidf_model


def wait_done(client, job_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/web/api/jobs/{job_id}", headers=AUTH).json()
        if state["status"] not in ("queued", "running"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {state}")


# ---- the page's routes, in process ------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(model_dir, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("POLICYTAG_WEB_DIR", str(tmp_path_factory.mktemp("web-jobs")))
    settings = Settings(model_dir=model_dir, api_token=TOKEN, max_body_bytes=50_000, max_paragraphs=16, max_chars=2_000)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_page_and_assets_open_api_needs_token(client):
    page = client.get("/")
    assert page.status_code == 200 and "政策文本标注" in page.text and "Upload" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset in ("app.js", "app.css"):
        r = client.get(f"/web/static/{asset}")
        assert r.status_code == 200 and "https://" not in r.text
    assert client.get("/web/static/app.py").status_code == 401  # only the listed assets are open
    assert client.get("/web/static/app.py", headers=AUTH).status_code == 404
    assert client.get("/web/static/%2e%2e%2fapp.py", headers=AUTH).status_code == 404
    assert client.get("/web/api/config").status_code == 401
    assert client.post("/web/api/jobs", json={}).status_code == 401
    config = client.get("/web/api/config", headers=AUTH).json()
    assert config["limits"] == {"max_body_bytes": 50_000, "max_paragraphs": 16, "max_chars": 2_000}
    assert [d["id"] for d in config["schema"]["dimensions"]] == ["tool", "stakeholder", "orientation"]
    assert "/web/api/jobs" not in str(client.get("/openapi.json", headers=AUTH).json()["paths"])  # the page's own routes


def test_limits_bad_files_and_metadata(client):
    job = client.post("/web/api/jobs", json={"metadata": {"issuer": "示范市卫生健康委员会", "title": "测试文件"}},
                      headers=AUTH).json()
    jid = job["id"]
    url = f"/web/api/jobs/{jid}/files"
    big = client.post(url, params={"name": "big.txt"}, content="段".encode() * 20_000, headers=AUTH)
    assert big.status_code == 413 and "POLICYTAG_MAX_BODY_BYTES" in big.json()["detail"]
    odd = client.post(url, params={"name": "x.exe"}, content=b"MZ", headers=AUTH)
    assert odd.status_code == 415 and "unsupported file type .exe" in odd.json()["detail"]
    assert client.post(url, params={"name": "../../etc/坏.docx"}, content=CORRUPT, headers=AUTH).json()["name"] == "坏.docx"
    long_doc = "\n".join(f"第{i}条 推进医联体建设，落实分级诊疗制度。" for i in range(20))
    assert client.post(url, params={"name": "长.txt"}, content=long_doc.encode("gbk"), headers=AUTH).status_code == 200
    text = (EXAMPLES / "医联体实施意见_utf8.txt").read_bytes()
    assert client.post(url, params={"name": "医联体.txt"}, content=text, headers=AUTH).status_code == 200
    assert client.post(f"/web/api/jobs/{jid}/rows", headers=AUTH).status_code == 405
    assert client.get(f"/web/api/jobs/{jid}/rows", headers=AUTH).status_code == 409  # not done yet
    assert client.post(f"/web/api/jobs/{jid}/start", headers=AUTH).status_code == 200
    state = wait_done(client, jid)
    assert state["status"] == "done", state
    files = {f["name"]: f for f in state["files"]}
    assert files["坏.docx"]["status"] == "failed" and "docx" in files["坏.docx"]["error"]
    assert files["长.txt"]["status"] == "failed" and "POLICYTAG_MAX_PARAGRAPHS" in files["长.txt"]["error"]
    assert files["医联体.txt"]["status"] == "tagged" and files["医联体.txt"]["paragraphs"] == 15
    rows = client.get(f"/web/api/jobs/{jid}/rows", headers=AUTH).json()["rows"]
    assert len(rows) == 15 and {r["title"] for r in rows} == {"测试文件"}  # stated metadata overrides the parsed header
    from policytag.nlp.metadata import merge_metadata, parse_metadata

    merged = merge_metadata(parse_metadata(text.decode("utf-8").splitlines()), {"issuer": "示范市卫生健康委员会", "title": "测试文件"})
    xlsx = client.get(f"/web/api/jobs/{jid}/download/tags.xlsx", headers=AUTH)
    assert xlsx.status_code == 200
    from policytag.nlp.tagsfile import read_tags

    path = Path(client.app.state.web_jobs.root) / jid / "tags.xlsx"
    frame = read_tags(path)
    assert set(frame["level"]) == {merged["level"]} == {"municipal"}
    assert client.post(f"/web/api/jobs/{jid}/start", headers=AUTH).status_code == 409
    assert client.get("/web/api/jobs/0123456789abcdef", headers=AUTH).status_code == 404
    assert client.get("/web/api/jobs/..%2F..", headers=AUTH).status_code == 404
    assert client.get(f"/web/api/jobs/{jid}/download/state.json", headers=AUTH).status_code == 404
    r = client.post(f"/web/api/jobs/{jid}/studio", json={"rows": [0], "title": "IHMS policies"}, headers=AUTH)
    assert r.status_code == 400 and "LABEL_STUDIO_URL" in r.json()["detail"]


def test_studio_push_sends_chosen_paragraphs_with_suggestions(client, monkeypatch):
    import policytag.labels.studio as studio

    job = client.post("/web/api/jobs", json={"text": (EXAMPLES / "医联体实施意见_utf8.txt").read_text(encoding="utf-8")},
                      headers=AUTH).json()
    client.post(f"/web/api/jobs/{job['id']}/start", headers=AUTH)
    assert wait_done(client, job["id"])["status"] == "done"
    calls = {}
    monkeypatch.setattr(studio, "connect", lambda url, key: ("ls", url, key))
    monkeypatch.setattr(studio, "project_id", lambda ls, title: 7)

    def push_tasks(ls, pid, records, book, tagger):
        calls.update(pid=pid, records=records, tagger=tagger)
        return {"imported": len(records), "already_there": 0, "with_predictions": True}

    monkeypatch.setattr(studio, "push_tasks", push_tasks)
    settings = client.app.state.settings
    monkeypatch.setattr(settings, "label_studio_url", "http://127.0.0.1:9")
    monkeypatch.setattr(settings, "label_studio_api_key", "k")
    r = client.post(f"/web/api/jobs/{job['id']}/studio", json={"rows": [3, 5], "title": "IHMS policies"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["imported"] == 2
    assert [c["paragraph_index"] for c in calls["records"]] == [3, 5] and calls["tagger"] is not None
    assert all(c["text"] and c["doc_id"] == "粘贴文本" for c in calls["records"])


# ---- the page in a real browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    env = {"POLICYTAG_API_TOKEN": TOKEN, "POLICYTAG_WEB_DIR": str(tmp_path_factory.mktemp("web-serve")),
           "POLICYTAG_MAX_BODY_BYTES": "100000"}
    with serving(model_dir, env) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: tests/run.sh installs Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_page_in_chromium(server, browser, tmp_path):
    from playwright.sync_api import expect

    from policytag.nlp.tagsfile import read_tags

    expected = expected_paragraphs()
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside = []
    page.on("request", lambda req: None if req.url.startswith((server, "data:", "blob:")) else outside.append(req.url))
    page.goto(server + "/")

    # the token, entered once, kept for the browser session
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", "wrong")
    page.click("#token-save")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    expect(page.locator("#token-dialog")).to_be_hidden()
    expect(page.locator("#model")).to_contain_text("tfidf-")

    # upload the examples, a corrupt file and one over the size limit
    corrupt, big = tmp_path / "损坏.docx", tmp_path / "过大.txt"
    corrupt.write_bytes(CORRUPT)
    big.write_text("推进分级诊疗。" * 10_000, encoding="utf-8")
    page.set_input_files("#files", [*sorted(EXAMPLES.iterdir()), corrupt, big])
    page.select_option("#m-level", "municipal")
    page.click("#submit")
    expect(page.locator("#progress")).to_have_attribute("data-status", "done", timeout=120_000)
    job_id = page.locator("#job-id").inner_text()
    assert f"job={job_id}" in page.url
    expect(page.locator("tr[data-file='损坏.docx'] .file-status")).to_contain_text("failed")
    expect(page.locator("tr[data-file='损坏.docx'] .file-error")).to_contain_text("docx")
    expect(page.locator("tr[data-file='过大.txt'] .file-error")).to_contain_text("POLICYTAG_MAX_BODY_BYTES")
    for doc in EXAMPLES.iterdir():
        expect(page.locator(f"tr[data-file='{doc.name}'] .file-status")).to_contain_text("tagged")
    expect(page.locator("#job-summary")).to_contain_text(f"{len(expected)} paragraphs")

    # read: every paragraph, in document order, tagged
    page.click("button[data-tab=read]")
    paras = page.locator("#rows .para")
    expect(paras).to_have_count(len(expected))
    texts = page.locator("#rows .para .text").all_inner_texts()
    assert texts == [r["text"] for r in expected]
    docs = page.locator("#rows .para").evaluate_all("ns => ns.map(n => n.dataset.doc)")
    assert docs == [r["doc_id"] for r in expected]
    n_labelled = page.locator("#rows .para:has(.chip[data-label])").count()
    n_marked = page.locator("#rows .para.heading, #rows .para.framing").count()
    assert n_labelled > len(expected) // 2 and page.locator("#rows .para.heading").count() > 0
    assert page.locator("#rows .para:not(.heading):not(.framing):not(:has(.chip[data-label]))").count() == 0
    assert n_labelled + page.locator("#rows .para.framing").count() + page.locator(
        "#rows .para.heading:not(:has(.chip[data-label]))").count() == len(expected) and n_marked > 0
    chip_text = page.locator("#rows .para .chip[data-label]").first.inner_text()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in chip_text) and "0." in chip_text  # Chinese name + probability

    # evidence for one label: its words highlighted in the paragraph
    target = page.locator("#rows .para:has(.chip[data-label='smart_health'])").first
    row = target.get_attribute("data-row")
    target.locator(".evidence-btn").click()
    para = page.locator(f"#rows .para[data-row='{row}']")
    expect(para.locator(".evidence")).not_to_contain_text("computing", timeout=60_000)
    para.locator(".chip[data-label='smart_health']").click()
    marks = para.locator("mark.ev[data-label='smart_health']")
    expect(marks.first).to_be_visible()
    assert all(m in para.locator(".text").inner_text() for m in marks.all_inner_texts())
    expect(para.locator(".evidence")).to_contain_text("智慧医疗")

    # filters: a label, then a document
    page.select_option("#f-label", "smart_health")
    shown = page.locator("#rows .para")
    assert shown.count() > 0
    assert shown.count() == page.locator("#rows .para:has(.chip[data-label='smart_health'])").count()
    page.select_option("#f-label", "")
    page.select_option("#f-doc", "健康社区工作方案_gbk")
    expect(shown).to_have_count(sum(r["doc_id"] == "健康社区工作方案_gbk" for r in expected))
    page.check("#f-hide-framing")
    assert page.locator("#rows .para.heading, #rows .para.framing").count() == 0
    page.uncheck("#f-hide-framing")
    page.select_option("#f-doc", "")
    expect(shown).to_have_count(len(expected))

    # analyse: the report's tables, and the downloads
    page.click("button[data-tab=analyse]")
    expect(page.locator(".rtable[data-key='Table 3']")).to_be_visible()
    with page.expect_download() as info:
        page.click("button.download[data-name='tags.xlsx']")
    xlsx = tmp_path / "tags.xlsx"
    info.value.save_as(xlsx)
    frame = read_tags(xlsx)
    assert len(frame) == len(expected)
    assert list(frame["text"]) == [r["text"] for r in expected]
    assert list(zip(frame["doc_id"], frame["paragraph_index"])) == [(r["doc_id"], r["paragraph_index"]) for r in expected]
    assert set(frame["level"]) == {"municipal"}
    with page.expect_download() as info:
        page.click("button.download[data-name='6d_report.html']")
    assert info.value.suggested_filename.endswith("6d_report.html")

    # the same numbers as `policytag report` on the downloaded tags
    from typer.testing import CliRunner

    from policytag.cli import app

    result = CliRunner().invoke(app, ["report", str(xlsx), "--out", str(tmp_path / "report"), "--no-charts"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table3 = pd.read_csv(tmp_path / "report" / "table_03.csv", encoding="utf-8-sig", keep_default_na=False)
    shown3 = page.locator(".rtable[data-key='Table 3'] tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.cells).slice(0, 2).map(c => c.textContent))")
    assert [[str(a), str(b)] for a, b in table3.iloc[:, :2].values.tolist()] == shown3
    # a row of a table leads to its paragraphs
    page.locator(".rtable[data-key='Table 5'] td.rowname.clickable").first.click()
    expect(page.locator("#tab-read")).to_be_visible()
    assert page.locator("#f-label").input_value() != ""

    # the job survives a reload (job id in the URL, token in the session)
    page.reload()
    expect(page.locator("#progress")).to_have_attribute("data-status", "done")
    page.click("button[data-tab=read]")
    expect(page.locator("#rows .para")).to_have_count(len(expected))
    assert outside == [], f"the page fetched from outside the server: {outside}"
    context.close()


def test_page_assets_are_package_data():
    """Every file the page needs is declared in pyproject's package-data, so an installed wheel serves it too."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from conftest import ROOT
    from policytag.serve import web

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["policytag.serve"]
    shipped = {p for pattern in declared for p in (ROOT / "serve").glob(pattern)}
    needed = {web.STATIC / "index.html", *(web.STATIC / name for name in web.ASSETS)}
    assert needed <= shipped and set((ROOT / "serve" / "web").iterdir()) <= shipped
