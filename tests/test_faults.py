"""Reliability: what a careless or hostile user can do to the CLI and the service (issue 11).

Each case of the issue has tests here: nothing of the user's is lost, one bad request never
fails another, every bad input ends in a one-line message with the right exit code or status.
Models are the suite's TF-IDF baseline and a tiny random BERT wrapped as a policytag model
directory (no training)."""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import EXAMPLES, serving, shared_path
from policytag.cli import app

runner = CliRunner()
TOKEN = "fault-token-8812"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXE = shutil.which("policytag") or str(Path(sys.executable).with_name("policytag"))


def cli(*args, env=None):
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}\n{result.output}")
    return result


def said(output: str, phrase: str) -> bool:
    """`phrase` is in the output, however a console wrapped it."""
    return "".join(phrase.split()) in "".join(output.split())


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transformer_model(tiny_model, tfidf_model, tmp_path_factory):
    """A policytag model directory around the tiny random BERT (built, not trained): the real
    tokenizer and torch path, so a lone surrogate really breaks the tokenizer."""
    import torch
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("tiny-transformer") / "model"
    shutil.copytree(tiny_model, d / "encoder")
    config = json.loads((tfidf_model / "policytag.json").read_text(encoding="utf-8"))
    config.update(kind="transformer", max_length=64, model_version="tiny-transformer")
    (d / "policytag.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    for name in ("codebook.yaml", "thresholds.json"):
        shutil.copy(tfidf_model / name, d / name)
    torch.manual_seed(0)
    head = torch.nn.Linear(64, len(config["labels"]))
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(d / "head.safetensors"))
    return d


def write_paragraphs(path: Path, docs: int, per_doc: int) -> int:
    phrases = ["推进家庭医生签约服务。", "完善医保支付方式改革。", "加强基层医疗卫生机构能力建设。", "建设互联网医院，发展远程医疗。"]
    with open(path, "w", encoding="utf-8") as fh:
        for d in range(docs):
            for i in range(per_doc):
                fh.write(json.dumps({"doc_id": f"doc{d:03d}", "paragraph_index": i,
                                     "text": f"第{i + 1}条 {phrases[(d + i) % len(phrases)]}"}, ensure_ascii=False) + "\n")
    return docs * per_doc


@pytest.fixture(scope="module")
def paragraphs(tmp_path_factory):
    """1,200 paragraphs in 30 documents: more than two 512-paragraph chunks."""
    path = tmp_path_factory.mktemp("paras") / "p.jsonl"
    return path, write_paragraphs(path, 30, 40)


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """The first 400 tasks of the shared annotations (quick to evaluate)."""
    tasks = json.loads(shared_path("data", "annotations", "ihms-train.json").read_text(encoding="utf-8"))[:400]
    path = tmp_path_factory.mktemp("export") / "small.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


MALFORMED = [
    {"id": 90001, "data": {"text": "推进分级诊疗制度建设。"}, "annotations": "x"},
    {"id": 90002, "data": {"text": "完善医保支付。"}, "annotations": [None]},
    {"id": 90003, "data": {"text": "加强人才培养。"}, "annotations": [{"completed_by": 1, "result": {}}]},
    {"id": 90004, "data": "x", "annotations": []},
]


@pytest.fixture(scope="module")
def poisoned_export(small_export, tmp_path_factory):
    tasks = json.loads(small_export.read_text(encoding="utf-8"))
    for i, bad in enumerate(MALFORMED):
        tasks.insert(50 * (i + 1), bad)
    path = tmp_path_factory.mktemp("export") / "poisoned.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict]:
    from policytag.nlp.tagsfile import read_tags

    return read_tags(path).to_dict("records")


# ==== 1. data loss: --out on a folder that is not a model, or on a file ==========================
def test_check_model_out_dir(tmp_path):
    from policytag.files import OutputPathError, check_model_out_dir

    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes", encoding="utf-8")
    with pytest.raises(OutputPathError, match="not a policytag model folder.*notes.txt.*--force"):
        check_model_out_dir(mine)
    assert check_model_out_dir(mine, force=True) == mine  # explicitly told to
    export = tmp_path / "export.json"
    export.write_text("[]", encoding="utf-8")
    for force in (False, True):  # a file is never replaced by a model folder
        with pytest.raises(OutputPathError, match="is a file"):
            check_model_out_dir(export, force=force)
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_model_out_dir(export / "model")
    model = tmp_path / "model"
    model.mkdir()
    (model / "policytag.json").write_text("{}", encoding="utf-8")
    (model / "weights.bin").write_text("x", encoding="utf-8")
    assert check_model_out_dir(model) == model  # a model directory may be replaced by a model directory
    (tmp_path / "empty").mkdir()
    check_model_out_dir(tmp_path / "empty")
    check_model_out_dir(tmp_path / "new" / "deeper")
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "my notes" and (mine / "sub").is_dir()
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_train_out_on_a_folder_that_is_not_a_model_keeps_its_files(tmp_path, small_export):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes", encoding="utf-8")
    (mine / "sub" / "data.csv").write_text("a,b\n", encoding="utf-8")
    before = tree(mine)
    result = cli("train", "--baseline", "tfidf", "--data", small_export, "--out", mine)
    assert tree(mine) == before
    assert result.exit_code == 2 and said(result.output, "not a policytag model folder"), result.output


def test_train_out_on_the_export_itself_keeps_the_export(tmp_path, small_export):
    export = tmp_path / "export.json"
    shutil.copy(small_export, export)
    before = export.read_bytes()
    result = cli("train", "--baseline", "tfidf", "--data", export, "--out", export)
    assert export.is_file() and export.read_bytes() == before
    assert not (tmp_path / ".export.json.old").exists()
    assert result.exit_code == 2 and said(result.output, "is a file"), result.output


# ==== 2. one poisoned request fails everyone batched with it =====================================
class _PickyTagger:
    def predict_proba(self, texts, titles=None):
        if any("POISON" in t for t in texts):
            raise ValueError("cannot tokenize")
        return np.array([[len(t)] for t in texts], dtype=np.float32)


def test_micro_batcher_fails_only_the_request_that_fails():
    from policytag.serve.app import MicroBatcher

    async def run():
        tagger = _PickyTagger()
        batcher = MicroBatcher(lambda: tagger, wait_ms=200, max_batch=10_000)
        batcher.start()
        texts = [[f"段落{i}"] * (1 + i % 3) for i in range(40)]
        texts[7] = ["好的", "POISON"]
        texts[23] = ["POISON"]
        results = await asyncio.gather(*(batcher.probabilities(t) for t in texts), return_exceptions=True)
        await batcher.stop()
        return texts, results

    texts, results = asyncio.run(run())
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == [7, 23]
    for i, r in enumerate(results):
        if i not in failed:
            probs, _ = r
            assert probs[:, 0].tolist() == [len(t) for t in texts[i]]  # each caller gets its own rows


@pytest.fixture(scope="module")
def server(transformer_model):
    """A real uvicorn process serving the tiny transformer, with a token and the Label Studio
    routes open (POLICYTAG_ML_BACKEND_OPEN=1): the set-up in which /predict is unauthenticated."""
    with serving(transformer_model, {"POLICYTAG_API_TOKEN": TOKEN, "POLICYTAG_ML_BACKEND_OPEN": "1"}) as url:
        yield url


POISON = b'{"paragraphs": ["\\u63a8\\u8fdb\\ud800\\u533b\\u8054\\u4f53"]}'  # a lone surrogate inside Chinese text


def test_poisoned_requests_fail_alone_under_concurrency(server):
    valid = [{"paragraphs": [f"第{i}条 加强基层医疗卫生机构能力建设，推进家庭医生签约服务。"]} for i in range(140)]

    def send(item):
        kind, body = item
        with httpx.Client(timeout=120) as c:
            if kind == "valid":
                return kind, c.post(f"{server}/v1/tag", json=body, headers=AUTH)
            return kind, c.post(f"{server}/v1/tag", content=body, headers={**AUTH, "content-type": "application/json"})

    work = [("valid", b) for b in valid]
    for i in range(10):
        work.insert(i * 14 + 3, ("poison", POISON))
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(send, work))
    statuses = {"valid": [], "poison": []}
    for kind, r in results:
        statuses[kind].append(r.status_code)
    assert statuses["valid"] == [200] * 140, statuses["valid"]
    assert statuses["poison"] == [422] * 10
    poisoned = next(r for kind, r in results if kind == "poison")
    assert "lone surrogate" in poisoned.text and "paragraphs[0]" in poisoned.text


def test_poisoned_label_studio_predict_without_credentials(server):
    body = b'{"tasks": [{"id": 1, "data": {"text": "\\ud83d"}}]}'
    r = httpx.post(f"{server}/predict", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 422 and "lone surrogate" in r.text
    r = httpx.post(f"{server}/predict", json={"tasks": [{"id": 1, "data": {"text": "推进医联体建设。"}}]}, timeout=60)
    assert r.status_code == 200 and len(r.json()["results"]) == 1


@pytest.mark.parametrize("body", [
    b'{"text": "\\udc00\\u901a\\u77e5"}',
    b'{"paragraphs": [{"text": "\\ud800"}]}',
    b'{"paragraphs": ["\\u597d"], "metadata": {"\\ud800": 1}}',
    b'{"paragraphs": ["\\u597d"], "\\ud800": 1}',
])
def test_lone_surrogates_anywhere_are_422(server, body):
    r = httpx.post(f"{server}/v1/tag", content=body, headers={**AUTH, "content-type": "application/json"}, timeout=60)
    assert r.status_code == 422, r.text
    r.json()  # always valid JSON back
    body = b'{"action": "\\ud800"}'
    r = httpx.post(f"{server}/webhook", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 422, r.text


# ==== 3. concurrent runs on one output ===========================================================
def test_predict_refuses_an_output_that_another_run_is_writing(tmp_path, tfidf_model, paragraphs):
    from policytag.files import OutputBusy, exclusive_lock

    source, _ = paragraphs
    out = tmp_path / "o.csv"
    out.write_text("keep me\n", encoding="utf-8")
    with exclusive_lock(out):
        result = cli("predict", source, "--model", tfidf_model, "--out", out)
        with pytest.raises(OutputBusy):  # the lock is exclusive within one process too
            with exclusive_lock(out):
                pass
    assert result.exit_code == 2 and "being written by another policytag process" in result.output, result.output
    assert out.read_text(encoding="utf-8") == "keep me\n"
    assert not (tmp_path / "o.csv.journal.jsonl").exists()
    assert not (tmp_path / ".o.csv.lock").exists()  # released and removed


def test_two_predict_processes_at_once_leave_a_correct_output(tmp_path, tfidf_model):
    source = tmp_path / "big.jsonl"
    n = write_paragraphs(source, 150, 40)  # 6,000 paragraphs
    out = tmp_path / "o.csv"
    procs = [subprocess.Popen([EXE, "predict", str(source), "--model", str(tfidf_model), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) in ([0, 0], [0, 2]), (codes, outputs)
    for code, output in zip(codes, outputs):
        if code == 2:
            assert "being written by another policytag process" in output and "Traceback" not in output
    rows = read_rows(out)
    assert len(rows) == n and len({(r["doc_id"], r["paragraph_index"]) for r in rows}) == n
    assert not list(tmp_path.glob("o.csv.*")) and not (tmp_path / ".o.csv.lock").exists()


def test_row_count_is_checked_before_the_output_is_replaced(tmp_path, tfidf_model, paragraphs, monkeypatch):
    import policytag.models.batch as batch

    source, n = paragraphs
    out = tmp_path / "o.csv"
    assert cli("predict", source, "--model", tfidf_model, "--out", out).exit_code == 0
    good = out.read_bytes()
    real = batch.tag_rows
    monkeypatch.setattr(batch, "tag_rows", lambda *a, **k: (rows := real(*a, **k)) + rows[:1])  # a duplicate row
    result = cli("predict", source, "--model", tfidf_model, "--out", out)
    assert result.exit_code == 1 and "row count mismatch" in result.output and "was not written" in result.output
    assert out.read_bytes() == good


# ==== 4. one malformed task among many ===========================================================
def test_parse_export_counts_and_skips_malformed_tasks(poisoned_export, small_export):
    from policytag.labels.export import parse_export
    from policytag.labels.schema import load_codebook

    book = load_codebook()
    clean, _ = parse_export(small_export, book)
    examples, report = parse_export(poisoned_export, book)
    assert len(examples) == len(clean)
    malformed = {why: n for why, n in report.dropped.items() if why.startswith("malformed task")}
    assert sum(malformed.values()) == 4, report.dropped
    assert any("annotations is a string" in why for why in malformed)
    assert any("result is an object" in why for why in malformed)
    assert any("data is a string" in why for why in malformed)
    assert any("an annotation is null" in why for why in malformed)
    weird = [{"data": {"text": "推进医联体。", "doc_id": ["a"]}, "annotations": [{"completed_by": {"id": 3}, "result": [
        {"from_name": "tool", "value": {"choices": "x"}}]}]}, 7, None, "task"]
    examples, report = parse_export(weird, book)
    assert examples == [] and sum(report.dropped.values()) == 4


def test_malformed_tasks_do_not_abort_evaluate_or_agreement(poisoned_export, tfidf_model):
    result = cli("evaluate", "--model", tfidf_model, "--data", poisoned_export)
    assert result.exit_code == 0, result.output
    assert "malformed task" in result.output
    result = cli("studio", "agreement", poisoned_export)
    assert result.exit_code == 0, result.output
    assert "skipped 4 malformed task(s)" in result.output


def test_malformed_tasks_do_not_abort_train(poisoned_export, tmp_path):
    result = cli("train", "--baseline", "tfidf", "--data", poisoned_export, "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert "malformed task" in result.output and (tmp_path / "m" / "policytag.json").exists()


# ==== 5. non-ASCII Authorization header ===========================================================
def test_authorised_compares_bytes():
    from policytag.serve.app import _authorised

    assert _authorised(f"Bearer {TOKEN}", TOKEN)
    for header in ["Bearer é", "Bearer Ã©", "Bearer \udce9", "Bearer", "", "Basic ###", "Basic " + base64.b64encode(
            "u:é".encode()).decode(), "Bearer " + TOKEN + "é", "Digest x"]:
        assert not _authorised(header, TOKEN)
    assert _authorised("Bearer é".encode().decode("latin-1"), "é")  # a non-ASCII token works as bytes
    assert _authorised("Basic " + base64.b64encode(f"ls:{TOKEN}".encode()).decode(), TOKEN)


def test_non_ascii_authorization_is_401_and_the_connection_lives_on(server):
    body = {"paragraphs": ["推进医联体建设。"]}
    with httpx.Client(timeout=60) as c:
        for header in ["Bearer é".encode(), b"Bearer \xff\xfe", "Basic ".encode() + base64.b64encode("u:é".encode())]:
            r = c.post(f"{server}/v1/tag", json=body, headers={"Authorization": header})
            assert r.status_code == 401, r.text
            r = c.post(f"{server}/v1/tag", json=body, headers=AUTH)  # the next request on the same connection
            assert r.status_code == 200, r.text


# ==== 6. one-line messages instead of tracebacks =================================================
def _bad_outputs(tmp_path: Path, name: str):
    folder = tmp_path / "a-folder"
    folder.mkdir(exist_ok=True)
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    return [(folder, "is a folder"), (a_file / name, "is a file, not a folder")]


@pytest.mark.parametrize("which", [0, 1])
def test_ingest_bad_out(tmp_path, which):
    out, message = _bad_outputs(tmp_path, "p.jsonl")[which]
    result = cli("ingest", EXAMPLES, "--out", out)
    assert result.exit_code == 2 and message in result.output
    assert len(error_lines(result.output)) == 1


@pytest.mark.parametrize("which", [0, 1])
def test_predict_bad_out_fails_before_tagging_and_leaves_nothing(tmp_path, tfidf_model, paragraphs, which):
    source, _ = paragraphs
    out, message = _bad_outputs(tmp_path, "o.csv")[which]
    if which == 0:
        out = out.with_suffix(".csv")
        out.mkdir()
    result = cli("predict", source, "--model", tfidf_model, "--out", out)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "tagging paragraphs" not in result.output  # refused before the model ran
    assert not list(tmp_path.rglob("*.journal.jsonl")) and not list(tmp_path.rglob("*.done"))


@pytest.mark.parametrize("which", [0, 1])
def test_evaluate_bad_output(tmp_path, tfidf_model, small_export, which):
    out, message = _bad_outputs(tmp_path, "m.json")[which]
    result = cli("evaluate", "--model", tfidf_model, "--data", small_export, "--output", out)
    assert result.exit_code == 2 and said(result.output, message), result.output
    assert not out.is_file() or out.read_text(encoding="utf-8") == "x"


def test_read_only_out_folder(tmp_path, tfidf_model, paragraphs):
    """As a user without write permission (root ignores modes, so the test drops to nobody)."""
    source, _ = paragraphs
    base = Path(tempfile.mkdtemp(prefix="policytag-ro-"))
    try:
        os.chmod(base, 0o755)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        os.chmod(ro, 0o555)
        shutil.copy(source, base / "p.jsonl")
        shutil.copytree(tfidf_model, base / "model")
        for p in [base / "model", *(base / "model").rglob("*"), base / "p.jsonl"]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)  # readable by the unprivileged user
        prefix = []
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv: cannot test a read-only folder")
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        env = {**os.environ, "HOME": str(base), "MPLCONFIGDIR": str(base)}
        for args in (["ingest", str(EXAMPLES), "--out", str(ro / "p.jsonl")],
                     ["predict", str(base / "p.jsonl"), "--model", str(base / "model"), "--out", str(ro / "o.csv")]):
            proc = subprocess.run(prefix + [EXE, *args], capture_output=True, text=True, env=env, timeout=300)
            output = proc.stdout + proc.stderr
            assert proc.returncode == 2, output
            assert "Traceback" not in output and "permission denied" in output and str(ro) in output, output
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_check_writable_file(tmp_path):
    from policytag.files import OutputPathError, check_writable_file

    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x", encoding="utf-8")
    with pytest.raises(OutputPathError, match="is a folder"):
        check_writable_file(tmp_path / "d")
    with pytest.raises(OutputPathError, match="f is a file, not a folder"):
        check_writable_file(tmp_path / "f" / "deeper" / "o.csv")
    assert check_writable_file(tmp_path / "new" / "o.csv") == tmp_path / "new" / "o.csv"
    assert not (tmp_path / "new").exists()
    assert isinstance(OutputPathError("x"), OSError)  # every `except OSError` already handles it


def test_metadata_missing_or_not_utf8(tmp_path):
    result = cli("ingest", EXAMPLES, "--out", tmp_path / "p.jsonl", "--metadata", tmp_path / "nope.csv")
    assert result.exit_code == 2 and "metadata file not found" in result.output
    gbk = tmp_path / "metadata.csv"
    gbk.write_bytes("file,issuer\n医联体实施意见_utf8.txt,示例市卫生健康委员会\n".encode("gbk"))
    result = cli("ingest", EXAMPLES, "--out", tmp_path / "p.jsonl", "--metadata", gbk)
    assert result.exit_code == 2 and "not UTF-8" in result.output and str(gbk) in result.output
    assert len(error_lines(result.output)) == 1 and not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("victim", ["head.safetensors", "encoder/model.safetensors"])
def test_truncated_weights_file(tmp_path, transformer_model, paragraphs, victim, monkeypatch):
    source, _ = paragraphs
    model = tmp_path / "model"
    shutil.copytree(transformer_model, model)
    data = (model / victim).read_bytes()
    (model / victim).write_bytes(data[: len(data) // 2])
    result = cli("predict", source, "--model", model, "--out", tmp_path / "o.csv")
    assert result.exit_code == 2 and "cannot load model" in result.output, result.output
    assert len(error_lines(result.output)) == 1
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served a damaged model"))
    result = cli("serve", "--model", model, env={"POLICYTAG_API_TOKEN": TOKEN})
    assert result.exit_code == 2 and "cannot load model" in result.output, result.output


# ==== 6/7. Ctrl-C, a torn journal line, and resuming ===============================================
def test_ctrl_c_then_torn_journal_then_resume(tmp_path, tfidf_model, paragraphs, monkeypatch):
    import policytag.models.batch as batch

    source, n = paragraphs
    out = tmp_path / "o.jsonl"
    real, calls = batch.tag_rows, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(batch, "tag_rows", interrupted)
    result = cli("predict", source, "--model", tfidf_model, "--out", out)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "--resume" in result.output and "saved in" in result.output
    journal = tmp_path / "o.jsonl.journal.jsonl"
    assert journal.exists() and not out.exists()
    with open(journal, "a", encoding="utf-8") as fh:  # kill -9 in the middle of writing a row
        fh.write('{"doc_id": "doc029", "paragraph_index": 3, "text": "第4条 推进')
    monkeypatch.setattr(batch, "tag_rows", real)
    result = cli("predict", source, "--model", tfidf_model, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "torn last line" in result.output
    rows = read_rows(out)
    assert len(rows) == n and len({(r["doc_id"], r["paragraph_index"]) for r in rows}) == n
    assert not journal.exists()


def test_read_jsonl_tolerant(tmp_path):
    from policytag.files import read_jsonl_tolerant

    p = tmp_path / "j.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": ', encoding="utf-8")
    assert read_jsonl_tolerant(p) == ([{"a": 1}, {"a": 2}], 1)
    p.write_text('{"a": 1}\n{"a"\n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":2: invalid JSON in the middle"):
        read_jsonl_tolerant(p)


# ==== 7. silent or inconsistent ==================================================================
def test_symlink_loops_and_broken_links_are_listed(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(EXAMPLES / "医联体实施意见_utf8.txt", docs / "a.txt")
    (docs / "loop").symlink_to(docs / "loop")
    (docs / "ping").symlink_to(docs / "pong")
    (docs / "pong").symlink_to(docs / "ping")
    (docs / "gone.txt").symlink_to(tmp_path / "missing.txt")
    other = tmp_path / "other"
    other.mkdir()
    (docs / "elsewhere").symlink_to(other, target_is_directory=True)
    result = cli("ingest", docs, "--out", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("symbolic link loop") >= 3  # loop, ping, pong
    assert "broken symbolic link" in text and "not followed" in text


@pytest.fixture(scope="module")
def open_client(tfidf_model):
    from policytag.serve.app import Settings, create_app

    with TestClient(create_app(Settings(model_dir=tfidf_model))) as c:
        yield c


@pytest.mark.parametrize("text", ["\x00", "\x00\x00\x00", "\u200b", "\u200b\u200c\u200d\ufeff\u2060", " \t\u3000\x00 "])
def test_invisible_only_paragraphs_are_422_like_whitespace(open_client, text):
    r = open_client.post("/v1/tag", json={"paragraphs": ["推进医联体建设。", text]})
    assert r.status_code == 422 and "[1] are empty" in r.json()["detail"], r.text
    r = open_client.post("/v1/tag", json={"text": text + "\n" + text})
    assert r.status_code == 422, r.text


def test_docs_page_works_offline(open_client):
    r = open_client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "/v1/tag" in page and "TagRequest" in page
    assert "<script" not in page and "<link" not in page and "cdn" not in page.lower() and "https://" not in page
    assert open_client.get("/redoc").status_code == 404


def test_report_refuses_a_truncated_csv(tmp_path, tfidf_model, paragraphs):
    source, n = paragraphs
    tags = tmp_path / "tags.csv"
    assert cli("predict", source, "--model", tfidf_model, "--out", tags).exit_code == 0
    data = tags.read_bytes()
    tags.write_bytes(data[: len(data) - 200])  # cut in the middle of the last row
    result = cli("report", tags, "--out", tmp_path / "report", "--no-charts")
    assert result.exit_code == 2 and "looks truncated" in result.output, result.output
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_honour_the_umask(tmp_path, tfidf_model, paragraphs, umask):
    from policytag.files import apply_umask

    source, _ = paragraphs
    old = os.umask(umask)
    try:
        assert cli("ingest", EXAMPLES, "--out", tmp_path / "p.jsonl").exit_code == 0
        assert cli("predict", source, "--model", tfidf_model, "--out", tmp_path / "o.csv").exit_code == 0
        d = tmp_path / "made"
        d.mkdir(mode=0o700)
        (d / "f").write_text("x", encoding="utf-8")
        os.chmod(d / "f", 0o600)
        apply_umask(d)  # what the training owner calls on a model folder before renaming it into place
    finally:
        os.umask(old)
    for name in ("p.jsonl", "o.csv", "made/f"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert d.stat().st_mode & 0o777 == 0o777 & ~umask


def test_model_folder_honours_the_umask(tmp_path, small_export):
    old = os.umask(0o022)
    try:
        result = cli("train", "--baseline", "tfidf", "--data", small_export, "--out", tmp_path / "m")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "m" / "policytag.json").stat().st_mode & 0o777 == 0o644


# ==== 8. open by default =========================================================================
@pytest.fixture
def no_uvicorn(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.delenv("POLICYTAG_API_TOKEN", raising=False)
    monkeypatch.delenv("POLICYTAG_ALLOW_OPEN", raising=False)
    return calls


def test_serve_without_token_on_the_network_refuses(tfidf_model, no_uvicorn):
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        result = cli("serve", "--model", tfidf_model, "--host", host)
        assert result.exit_code == 2 and "refusing to serve" in result.output and "--allow-open" in result.output
    assert no_uvicorn == []


def test_serve_open_on_purpose_says_so(tfidf_model, no_uvicorn):
    result = cli("serve", "--model", tfidf_model, "--host", "0.0.0.0", "--allow-open")
    assert result.exit_code == 0 and "serving OPEN on 0.0.0.0" in result.output, result.output
    assert [c["host"] for c in no_uvicorn] == ["0.0.0.0"]


def test_serve_on_loopback_without_token_warns_once(tfidf_model, no_uvicorn):
    result = cli("serve", "--model", tfidf_model, "--host", "127.0.0.1")
    assert result.exit_code == 0 and result.output.count("POLICYTAG_API_TOKEN is not set") == 1, result.output
    result = cli("serve", "--model", tfidf_model, "--host", "0.0.0.0", env={"POLICYTAG_API_TOKEN": TOKEN})
    assert result.exit_code == 0 and "warning" not in result.output.lower(), result.output
    assert len(no_uvicorn) == 2
