"""The tagging service: in-process and as a real uvicorn process, plus a bounded API fuzz."""
import base64
import concurrent.futures
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from policytag.serve.app import Settings, create_app

from conftest import EXAMPLES, serving

TOKEN = "test-token-5521"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def model_dir(tfidf_model):
    return tfidf_model


@pytest.fixture(scope="module")
def client(model_dir):
    settings = Settings(model_dir=model_dir, api_token=TOKEN, max_paragraphs=5, max_chars=200, max_body_bytes=20_000)
    with TestClient(create_app(settings)) as c:
        yield c


def test_health_checks_are_open(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/health").json()["status"] == "UP"


def test_auth(client):
    body = {"paragraphs": ["推进家庭医生签约服务。"]}
    assert client.post("/v1/tag", json=body).status_code == 401
    assert client.post("/v1/tag", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/schema").status_code == 401
    assert client.post("/v1/tag", json=body, headers=AUTH).status_code == 200
    basic = base64.b64encode(f"label-studio:{TOKEN}".encode()).decode()
    assert client.post("/v1/tag", json=body, headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_tag_paragraphs_and_document(client):
    r = client.post("/v1/tag", json={"paragraphs": ["加强全科医生培养和规范化培训。", {"text": "完善医保支付方式改革。"}]}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["schema_name"] == "ihms" and body["model_version"].startswith("tfidf-")
    assert [p["index"] for p in body["paragraphs"]] == [0, 1]
    for p in body["paragraphs"]:
        assert set(p["labels"]) == {"tool", "stakeholder", "orientation"} and len(p["probabilities"]) == 28
        assert set(p["groups"]) == {"tool"}
    doc = "关于推进医联体建设的意见\n（示卫发〔2024〕1号）\n一、总体要求\n推进医联体建设。\n"
    r = client.post("/v1/tag", json={"text": doc, "metadata": {"level": "municipal"}}, headers=AUTH)
    body = r.json()
    assert [p["text"] for p in body["paragraphs"]][2] == "一、总体要求" and body["paragraphs"][2]["is_heading"]
    assert body["metadata"]["doc_number"] == "示卫发〔2024〕1号" and body["metadata"]["level"] == "municipal"


def test_schema(client):
    body = client.get("/v1/schema", headers=AUTH).json()
    assert body["schema"] == "ihms" and [d["id"] for d in body["dimensions"]] == ["tool", "stakeholder", "orientation"]
    assert body["dimensions"][0]["labels"][0]["definition"]


@pytest.mark.parametrize("payload,status,message", [
    ({"paragraphs": ["段落。"] * 6}, 413, "limit of 5"),
    ({"paragraphs": ["长" * 201]}, 422, "over the limit of 200"),
    ({"paragraphs": ["   "]}, 422, "empty"),
    ({"paragraphs": []}, 422, "no paragraphs"),
    ({"text": "  "}, 422, "invalid request body"),
    ({"text": "段落。", "paragraphs": ["段落。"]}, 422, "exactly one"),
    ({}, 422, "exactly one"),
    ({"paragraphs": "not a list"}, 422, "invalid request body"),
    ({"paragraphs": [1, 2]}, 422, "invalid request body"),
    ({"unknown": 1}, 422, "invalid request body"),
])
def test_limits_and_malformed_bodies(client, payload, status, message):
    r = client.post("/v1/tag", json=payload, headers=AUTH)
    assert r.status_code == status, r.text
    assert message in json.dumps(r.json(), ensure_ascii=False)


def test_body_size_and_bad_json(client):
    r = client.post("/v1/tag", content=b'{"paragraphs": ["' + "x".encode() * 30_000 + b'"]}', headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and "20000 bytes" in r.json()["detail"]
    r = client.post("/v1/tag", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/predict", content=b"[", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/predict", json={"tasks": [{"data": {}}]}, headers=AUTH)
    assert r.status_code == 422 and "data.text" in r.json()["detail"]


def test_label_studio_protocol_in_process(client):
    assert "model_version" in client.post("/setup", json={"project": "1.0"}, headers=AUTH).json()
    r = client.post("/predict", json={"tasks": [{"id": 7, "data": {"text": "推进互联网医院建设和远程医疗服务。"}}]}, headers=AUTH).json()
    (result,) = r["results"]
    assert 0 <= result["score"] <= 1 and result["model_version"] == r["model_version"]
    assert all(region["to_name"] == "text" for region in result["result"])
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}, headers=AUTH).json()["status"] == "ignored"
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}, headers=AUTH).json()
    assert r["status"] == "ok" and r["retrain_started"] is False  # retraining is off unless configured


def test_concurrent_requests_are_batched_and_correct(client):
    texts = [f"第{i}条 加强基层医疗卫生机构能力建设，推进家庭医生签约服务。" for i in range(40)]
    single = {t: client.post("/v1/tag", json={"paragraphs": [t]}, headers=AUTH).json()["paragraphs"][0]["probabilities"] for t in texts[:5]}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda t: client.post("/v1/tag", json={"paragraphs": [t]}, headers=AUTH).json(), texts))
    for t, r in zip(texts, results):
        assert r["paragraphs"][0]["text"] == t
        if t in single:
            assert r["paragraphs"][0]["probabilities"] == single[t]


# --- a real uvicorn process -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(model_dir):
    with serving(model_dir, {"POLICYTAG_API_TOKEN": TOKEN}) as url:
        yield url


def test_real_uvicorn_process(server):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.post(f"{server}/v1/tag", json={"paragraphs": ["推进医联体建设。"]}).status_code == 401
    r = httpx.post(f"{server}/v1/tag", json={"text": (EXAMPLES / "医联体实施意见_utf8.txt").read_text(encoding="utf-8")}, headers=AUTH)
    assert r.status_code == 200 and len(r.json()["paragraphs"]) == 15
    assert httpx.get(f"{server}/docs", headers=AUTH).status_code == 200
    assert httpx.post(f"{server}/v1/tag", content=b"{", headers={**AUTH, "content-type": "application/json"}).status_code == 422


def _with_lone_surrogates(value, n=[0]):
    """The same JSON value with a lone surrogate put into every string and key (what a JSON
    body may legally spell as "\\ud800", and no tokenizer accepts)."""
    if isinstance(value, str):
        n[0] += 1
        cut = n[0] % (len(value) + 1)
        return value[:cut] + ("\ud800", "\udfff", "\udc80")[n[0] % 3] + value[cut:]
    if isinstance(value, list):
        return [_with_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_with_lone_surrogates(k): _with_lone_surrogates(v) for k, v in value.items()}
    return value


NON_ASCII_AUTH = ["Bearer é".encode(), "Bearer 令牌".encode(), b"Bearer \xff\xfe\x80", b"Basic \xc3\xa9",
                  b"Basic " + base64.b64encode("user:密码".encode()), f"Bearer {TOKEN}é".encode(), b"\xe9"]


def test_api_fuzz_finds_no_server_errors(server):
    """Property-based fuzz of our own OpenAPI on loopback, bounded in examples. Each generated
    request is also sent with lone surrogates in every string of its body and with a non-ASCII
    Authorization header; neither may ever give a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json", headers=AUTH)
    failures, calls, poisoned = [], [], []
    client = httpx.Client(base_url=server, timeout=30)
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers=AUTH, timeout=30)
            calls.append(case.path)
            if response.status_code >= 500:
                failures.append((case.method, case.path, response.status_code, response.text[:200]))
            path = case.formatted_path
            plain = case.body if isinstance(case.body, (dict, list, str, int, float, bool)) else None  # not NOT_SET
            if case.method.upper() == "POST" and plain is not None:
                body = json.dumps(_with_lone_surrogates(plain)).encode()  # ASCII JSON with \\udXXX escapes
                r = client.post(path, content=body, headers={**AUTH, "content-type": "application/json"})
                poisoned.append(case.path)
                if r.status_code >= 500:
                    failures.append(("surrogates", case.method, case.path, r.status_code, r.text[:200]))
            header = NON_ASCII_AUTH[len(calls) % len(NON_ASCII_AUTH)]
            r = client.request(case.method.upper(), path, headers={"Authorization": header},
                               content=json.dumps(plain).encode() if plain is not None else None)
            if r.status_code >= 500 or (path not in ("/healthz", "/readyz", "/health") and r.status_code != 401):
                failures.append(("auth", header, case.method, case.path, r.status_code, r.text[:200]))

        check()
    r = client.get("/v1/schema", headers=AUTH)  # the connection is still good after all that
    client.close()
    assert r.status_code == 200
    assert not failures, failures
    assert calls.count("/v1/tag") >= 10 and calls.count("/predict") >= 5, calls
    assert poisoned.count("/v1/tag") >= 10 and poisoned.count("/predict") >= 5, poisoned


def test_api_and_ingest_merge_metadata_the_same_way(client, tmp_path):
    """Stated metadata overrides the parsed header, and level/nature/year follow the stated
    fields on both paths (they once drifted: the API kept the level parsed from the text)."""
    from policytag.nlp.ingest import iter_ingest

    text = "关于推进分级诊疗制度建设的指导意见\n某市卫生健康委员会\n一、推进家庭医生签约服务，引导居民基层首诊。\n"
    given = {"issuer": "国务院办公厅", "title": "关于推进分级诊疗制度建设的指导意见"}
    r = client.post("/v1/tag", json={"text": text, "metadata": given}, headers=AUTH)
    assert r.status_code == 200, r.text
    api = r.json()["metadata"]
    doc = tmp_path / "doc.txt"
    doc.write_text(text, encoding="utf-8")
    (tmp_path / "metadata.csv").write_text("file,issuer,title\ndoc.txt,国务院办公厅,关于推进分级诊疗制度建设的指导意见\n",
                                           encoding="utf-8")
    records = [r for res in iter_ingest([tmp_path]) for r in (res.records or [])]
    assert records, "ingest read nothing"
    for key in ("issuer", "title", "level", "nature", "year"):
        assert api.get(key) == records[0][key], key
    assert api["level"] == "national"
