"""The annotation round trip against a real Label Studio server started here.

Label Studio lives in its own virtualenv (it pins Django and its SDK); the tests find it
through LABEL_STUDIO_BIN or PATH and are skipped, loudly, only when it is absent."""
import json
import shutil
import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from typer.testing import CliRunner

from policytag.labels.agreement import krippendorff_alpha, masi_distance
from policytag.labels.export import parse_export
from policytag.labels.schema import load_codebook
from policytag.labels.studio import (StudioError, connect, create_personal_access_token, explain, labeling_config,
                                     prediction_result, to_task)
from policytag.cli import app

from conftest import ADMIN, EXAMPLES, free_port, serving, shared_path

runner = CliRunner()
BOOK = load_codebook()
CODER = ("coder2@policytag.test", "coder-pass-9377")
CODER3 = ("coder3@policytag.test", "coder-pass-4410")


def join_by_invite(url, admin, email, password):
    """What a new annotator does: open the organisation's invite link and sign up."""
    invite = admin.organizations.invites.get_invite_link().invite_url
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as http:
        http.get(invite)
        r = http.post(invite, data={"email": email, "password": password, "csrfmiddlewaretoken": http.cookies.get("csrftoken")},
                      headers={"Referer": url + invite})
        assert r.status_code == 200


def sign_up(url, invite, email, password):
    """Open an invite link (as `policytag studio invite` prints it) and sign up."""
    with httpx.Client(follow_redirects=True, timeout=30) as http:
        http.get(invite)
        r = http.post(invite, data={"email": email, "password": password, "csrfmiddlewaretoken": http.cookies.get("csrftoken")},
                      headers={"Referer": invite})
        assert r.status_code == 200


def api(client, method, path, **kwargs):
    """A raw API call with an SDK client's credentials (what the labelling page does)."""
    r = client._client_wrapper.httpx_client.request(path, method=method, **kwargs)
    assert r.status_code < 400, (path, r.status_code, r.text[:300])
    return r.json()


def log_mark(studio):
    return studio["log"].stat().st_size


def log_since(studio, mark):
    with open(studio["log"], encoding="utf-8", errors="replace") as fh:
        fh.seek(mark)
        return fh.read()


def cli(studio, *args):
    env = {"LABEL_STUDIO_URL": studio["url"], "LABEL_STUDIO_API_KEY": studio["token"]}
    return runner.invoke(app, ["studio", *map(str, args)], env=env)


# --- no server needed ----------------------------------------------------------------
def test_config_is_valid_xml_with_aliases_and_hints():
    root = ET.fromstring(labeling_config(BOOK))
    taxonomy = root.find("Taxonomy")
    assert taxonomy.get("name") == "tool" and taxonomy.get("leafsOnly") == "true"
    leaves = [c for g in taxonomy.findall("Choice") for c in g.findall("Choice")]
    assert [c.get("alias") for c in leaves] == BOOK.dimension("tool").label_ids
    assert all(c.get("hint") for c in leaves)
    stake = [c for c in root.findall("Choices") if c.get("name") == "stakeholder"][0]
    assert stake.get("choice") == "multiple" and [c.get("alias") for c in stake] == BOOK.dimension("stakeholder").label_ids
    assert {"$title", "$issuer", "$date", "$text"} <= {e.get("value") for e in root.iter() if e.get("value", "").startswith("$")}
    assert runner.invoke(app, ["studio", "config"]).output.strip().startswith("<View>")


def test_predictions_are_validated_against_the_codebook():
    result = prediction_result(BOOK, {"tool": ["talent_construction"], "stakeholder": ["resident"], "orientation": []})
    assert result[0]["value"] == {"taxonomy": [["supply", "talent_construction"]]}
    with pytest.raises(StudioError, match="not in dimension"):
        prediction_result(BOOK, {"stakeholder": ["martians"]})


def test_masi_and_alpha():
    assert masi_distance(frozenset(), frozenset()) == 0.0
    assert masi_distance(frozenset("a"), frozenset("a")) == 0.0
    assert masi_distance(frozenset("ab"), frozenset("a")) == pytest.approx(1 - 0.5 * 0.67)
    assert masi_distance(frozenset("a"), frozenset("b")) == 1.0
    assert krippendorff_alpha({1: {"x": frozenset("a"), "y": frozenset("a")}, 2: {"x": frozenset("b"), "y": frozenset("b")}}) == 1.0


def test_push_shows_original_text_and_hides_the_models():
    record = {"doc_id": "d", "paragraph_index": 3, "text": "一、目标:到2025年(底)", "original": "一、目标：到2025年（底）",
              "title": "关于推进分级诊疗的通知", "issuer": None, "date": "2024-01-02"}
    data = to_task(record)["data"]
    assert data["text"] == "一、目标：到2025年（底）" and data["model_text"] == "一、目标:到2025年(底)"
    assert data["issuer"] == "" and data["date"] == "2024-01-02" and data["paragraph_index"] == 3
    # the config never shows model_text; export parsing trains on it, older exports on data.text
    assert "model_text" not in labeling_config(BOOK)
    ann = [{"result": [stake("resident")]}]
    new, _ = parse_export([{"id": 1, "data": {**data}, "annotations": ann}], BOOK)
    old, _ = parse_export([{"id": 2, "data": {"text": "推进家庭医生签约服务。"}, "annotations": ann}], BOOK)
    assert new[0].text == "一、目标:到2025年(底)" and "model_text" not in new[0].meta
    assert old[0].text == "推进家庭医生签约服务。"


def test_error_messages_read_cleanly_and_name_the_url():
    from label_studio_sdk.core.api_error import ApiError

    legacy = ApiError(status_code=401, body={"detail": "Authentication token no longer valid: legacy token authentication "
                                                       "has been disabled for this organization"})
    msg = explain("listing projects", legacy, "47090711105d9329472ad0d616fb44969dc2425b")
    assert "***" not in msg and "legacy API token" in msg and "policytag studio token" in msg
    leak = ApiError(status_code=400, body={"detail": "bad header Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"})
    assert "eyJ" not in explain("x", leak) and "Bearer ***" in explain("x", leak)
    from policytag.labels.studio import _is_local, local_backend_hint

    assert _is_local("http://127.0.0.1:9090") and _is_local("http://10.1.2.3:9090") and not _is_local("http://8.8.8.8")
    assert "ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false label-studio start" in local_backend_hint("http://127.0.0.1:9090")
    url = f"http://127.0.0.1:{free_port()}"
    r = runner.invoke(app, ["studio", "setup"], env={"LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": "x" * 40})
    assert r.exit_code == 2 and f"cannot reach Label Studio at {url}" in r.output and "Errno" not in r.output, r.output


def test_metadata_csv_beside_files_passed_one_by_one(tmp_path):
    (tmp_path / "a.txt").write_text("关于推进分级诊疗的通知\n\n推进家庭医生签约服务。\n", encoding="utf-8")
    (tmp_path / "metadata.csv").write_text("file,issuer\na.txt,示例市卫生健康委员会\n", encoding="utf-8")
    out = tmp_path / "p.jsonl"
    for args in ([tmp_path / "a.txt"], [tmp_path / "a.txt", tmp_path / "metadata.csv"], [tmp_path]):
        assert runner.invoke(app, ["ingest", *map(str, args), "--out", str(out)]).exit_code == 0
        rows = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
        assert rows and {r["issuer"] for r in rows} == {"示例市卫生健康委员会"}, args


def test_training_on_a_one_document_export(tmp_path):
    """A team's first export covers one document: training still succeeds (no held-out estimate)."""
    tasks = json.loads(shared_path("data", "annotations", "ihms-train.json").read_text(encoding="utf-8"))
    title = tasks[0]["data"]["title"]
    one_doc = [t for t in tasks if t["data"].get("title") == title]
    export = tmp_path / "one_doc_export.json"
    export.write_text(json.dumps(one_doc, ensure_ascii=False), encoding="utf-8")
    r = runner.invoke(app, ["train", "--model", "tfidf", "--data", str(export), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m" / "policytag.json").exists()


def test_missing_credentials_is_a_clear_error():
    r = runner.invoke(app, ["studio", "setup"], env={"LABEL_STUDIO_URL": "", "LABEL_STUDIO_API_KEY": ""})
    assert r.exit_code == 2 and "LABEL_STUDIO_API_KEY" in r.output


# --- the real server -----------------------------------------------------------------------
def stake(*ids):
    return {"from_name": "stakeholder", "to_name": "text", "type": "choices", "value": {"choices": list(ids)}}


def tool(*paths):
    return {"from_name": "tool", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": [list(p) for p in paths]}}


def test_round_trip_setup_push_annotate_pull_agreement(studio, tfidf_model, tmp_path):
    # setup is idempotent
    for _ in range(2):
        r = cli(studio, "setup", "--title", "round trip")
        assert r.exit_code == 0, r.output
    ls = studio["client"]
    projects = [p for p in ls.projects.list() if p.title == "round trip"]
    assert len(projects) == 1
    pid = projects[0].id
    assert studio["token"] not in r.output

    # push paragraphs with pre-annotations; a second push imports nothing
    paragraphs = tmp_path / "p.jsonl"
    assert runner.invoke(app, ["ingest", str(EXAMPLES), "--out", str(paragraphs)]).exit_code == 0
    records = [json.loads(l) for l in open(paragraphs, encoding="utf-8")]
    n = len(records)
    mark = log_mark(studio)
    r = cli(studio, "push", paragraphs, "--title", "round trip", "--predictions", tfidf_model)
    assert r.exit_code == 0 and f"{n} task(s) imported with pre-annotations" in r.output, r.output
    r = cli(studio, "push", paragraphs, "--title", "round trip")
    assert "0 task(s) imported" in r.output and f"{n} already in the project" in r.output
    assert "Invalid page" not in log_since(studio, mark)  # our commands never ask for a page past the last
    tasks = sorted(ls.tasks.list(project=pid, fields="all"), key=lambda t: t.id)
    assert len(tasks) == n
    # annotators see the document's text; the model's normalised text is kept, hidden, beside it
    stored = {(t.data["doc_id"], t.data["paragraph_index"]): t.data for t in tasks}
    differs = [r for r in records if r["original"].strip() != r["text"]]
    assert differs
    for rec in records:
        data = stored[(rec["doc_id"], rec["paragraph_index"])]
        assert data["text"] == rec["original"].strip() and data["model_text"] == rec["text"]
    version = json.loads((tfidf_model / "policytag.json").read_text())["model_version"]
    for t in tasks:
        (pred,) = t.predictions
        p = pred if isinstance(pred, dict) else pred.dict()
        assert p["model_version"] == version and 0 <= p["score"] <= 1
        for region in p["result"]:
            values = [path[-1] for path in region["value"].get("taxonomy", [])] + region["value"].get("choices", [])
            assert all(BOOK.resolve(region["from_name"], v) == v for v in values)

    # two annotators, each with their own personal access token
    join_by_invite(studio["url"], ls, *CODER)
    coder = connect(studio["url"], create_personal_access_token(studio["url"], *CODER))
    t1, t2, t3, t4, t5 = (t.id for t in tasks[:5])
    admin_results = {t1: [stake("government"), tool(["supply", "talent_construction"])],
                     t2: [stake("government", "resident")], t3: [stake("resident")], t4: []}
    coder_results = {t1: [stake("government"), tool(["supply", "talent_construction"])],
                     t2: [stake("government", "resident")], t3: [stake("government")], t4: []}
    for task_id, result in admin_results.items():
        ls.annotations.create(id=task_id, result=result)
    for task_id, result in coder_results.items():
        coder.annotations.create(id=task_id, result=result)
    coder.annotations.create(id=t5, result=[], was_cancelled=True)  # a skip

    export = tmp_path / "export.json"
    mark = log_mark(studio)
    r = cli(studio, "pull", "--title", "round trip", "--out", export)
    assert r.exit_code == 0, r.output
    assert "Invalid page" not in log_since(studio, mark)
    assert "4 tasks with several annotators: labels resolved by majority" in r.output and "ignored 4" not in r.output
    pulled = json.loads(export.read_text(encoding="utf-8"))
    assert len(pulled) == n
    # round trip: every annotation comes back exactly as created
    by_id = {t["id"]: t for t in pulled}
    for results in (admin_results, coder_results):
        for task_id, result in results.items():
            assert any(a["result"] and [(x["from_name"], x["value"]) for x in a["result"]] == [(x["from_name"], x["value"]) for x in result]
                       or (not a["result"] and not result) for a in by_id[task_id]["annotations"])
    examples, report = parse_export(export, BOOK)
    assert len(examples) == 4 and report.dropped["no submitted annotation"] == n - 4
    assert report.notes["skipped/cancelled annotations"] == 1 and not report.unknown_labels
    ex = {e.task_id: e for e in examples}
    assert ex[t1].labels == {"tool": ["talent_construction"], "stakeholder": ["government"], "orientation": []}
    assert ex[t2].labels["stakeholder"] == ["government", "resident"]
    assert ex[t2].meta["doc_id"] and "paragraph_index" in ex[t2].meta

    # agreement, computed by hand:
    #   government A=[1,1,0,0] B=[1,1,1,0] -> po .75, pe .5, kappa .5
    #   resident   A=[0,1,1,0] B=[0,1,0,0] -> kappa .5 ; talent_construction identical -> 1.0
    r = cli(studio, "agreement", export, "--json")
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert stats["tasks_with_two_or_more"] == 4
    assert stats["per_label_kappa"] == pytest.approx({"government": 0.5, "resident": 0.5, "talent_construction": 1.0})
    assert stats["kappa_mean"] == pytest.approx(2 / 3)
    assert stats["exact_match"] == pytest.approx(0.75)
    assert stats["disputed"][0]["task"] == t3 and stats["paper_kappa_mean"] == 0.746
    assert stats["disputed"][0]["labels"][ADMIN[0]]["stakeholder"] == ["resident"]
    assert stats["disputed"][0]["labels"][CODER[0]]["stakeholder"] == ["government"]
    r = cli(studio, "agreement", export)
    assert "0.746" in r.output and "0.667" in r.output and ADMIN[0] in r.output and CODER[0] in r.output

    # active learning: unlabeled tasks, least certain first
    mark = log_mark(studio)
    r = cli(studio, "suggest", "--title", "round trip", "--model", tfidf_model, "--n", 3, "--out", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert "Invalid page" not in log_since(studio, mark)
    suggested = json.loads((tmp_path / "s.json").read_text())
    assert len(suggested) == 3 and not {s["task"] for s in suggested} & {t1, t2, t3, t4, t5}  # t5 was skipped
    assert [s["confidence"] for s in suggested] == sorted(s["confidence"] for s in suggested)


def test_overlap_two_annotators_get_the_same_task_in_the_next_task_flow(studio, tmp_path):
    """`setup --overlap` sets Label Studio's own overlap: two annotators asking Label Studio for
    their next task (what the Label All Tasks button does) get the same task; agreement compares them."""
    r = cli(studio, "setup", "--title", "overlap", "--overlap", 2, "--overlap-share", 0.2)
    assert r.exit_code == 0 and "2 annotators on 20% of tasks" in r.output, r.output
    ls = studio["client"]
    pid = [p for p in ls.projects.list() if p.title == "overlap"][0].id
    paragraphs = tmp_path / "p.jsonl"
    assert runner.invoke(app, ["ingest", str(EXAMPLES), "--out", str(paragraphs)]).exit_code == 0
    assert cli(studio, "push", paragraphs, "--title", "overlap").exit_code == 0
    tasks = list(ls.tasks.list(project=pid, fields="all"))
    assert sum(t.overlap == 2 for t in tasks) == int(len(tasks) * 0.2 + 0.5)
    project = ls.projects.get(id=pid)
    assert (project.maximum_annotations, project.overlap_cohort_percentage, project.show_overlap_first) == (2, 20, True)

    # a new annotator joins through the invite link and gets a token from the command line
    r = cli(studio, "invite")
    assert r.exit_code == 0 and "/user/signup/" in r.output, r.output
    sign_up(studio["url"], r.output.strip(), *CODER3)
    r = runner.invoke(app, ["studio", "token", "--email", CODER3[0], "--url", studio["url"]], env={"LABEL_STUDIO_PASSWORD": CODER3[1]})
    assert r.exit_code == 0, r.output
    coder = connect(studio["url"], r.output.strip())

    first = api(ls, "GET", f"api/projects/{pid}/next")
    assert first["overlap"] == 2  # overlapping tasks are served first
    api(ls, "POST", f"api/tasks/{first['id']}/annotations/", json={"result": [stake("government")]})
    second = api(coder, "GET", f"api/projects/{pid}/next")
    assert second["id"] == first["id"]
    api(coder, "POST", f"api/tasks/{second['id']}/annotations/", json={"result": [stake("resident")]})

    export = tmp_path / "export.json"
    assert cli(studio, "pull", "--title", "overlap", "--out", export).exit_code == 0
    r = cli(studio, "agreement", export, "--json")
    stats = json.loads(r.output)
    assert stats["tasks_with_two_or_more"] == 1 and set(stats["annotators"]) == {ADMIN[0], CODER3[0]}
    (disputed,) = stats["disputed"]
    assert disputed["task"] == first["id"] and disputed["text"] == first["data"]["text"][:80]
    assert {who: v["stakeholder"] for who, v in disputed["labels"].items()} == {ADMIN[0]: ["government"], CODER3[0]: ["resident"]}
    r = cli(studio, "agreement", export)
    assert CODER3[0] in r.output and "resident" in r.output

    r = cli(studio, "setup", "--title", "overlap", "--overlap", 1)
    assert r.exit_code == 0 and ls.projects.get(id=pid).maximum_annotations == 1


def test_legacy_token_is_explained(studio):
    with httpx.Client(base_url=studio["url"], follow_redirects=True, timeout=30) as http:
        http.get("/user/login/")
        http.post("/user/login/", data={"email": ADMIN[0], "password": ADMIN[1], "csrfmiddlewaretoken": http.cookies.get("csrftoken")},
                  headers={"Referer": studio["url"] + "/user/login/"})
        legacy = http.get("/api/current-user/token").json()["token"]
    r = runner.invoke(app, ["studio", "setup", "--title", "legacy"], env={"LABEL_STUDIO_URL": studio["url"], "LABEL_STUDIO_API_KEY": legacy})
    assert r.exit_code == 2 and "legacy API token" in r.output and "policytag studio token" in r.output, r.output
    assert legacy not in r.output and "***" not in r.output


def test_wrong_token_is_reported_without_echoing_it(studio):
    r = runner.invoke(app, ["studio", "setup"], env={"LABEL_STUDIO_URL": studio["url"], "LABEL_STUDIO_API_KEY": "not-a-real-token-xyz"})
    assert r.exit_code == 2 and "not-a-real-token-xyz" not in r.output


def test_ml_backend_connected_to_label_studio_and_webhook_retrain(studio, tfidf_model, tmp_path):
    """`studio connect-backend` registers `policytag serve` with HTTP Basic auth carrying the
    service token (no route left open); opening a new task makes Label Studio store our
    prediction; Label Studio's own webhook (with the token) counts towards a background retrain
    from the project's export, and the new model is swapped in (model_version changes)."""
    from test_serve import AUTH, TOKEN

    ls = studio["client"]
    r = cli(studio, "setup", "--title", "ml backend")
    assert r.exit_code == 0, r.output
    pid = [p for p in ls.projects.list() if p.title == "ml backend"][0].id
    # annotated tasks from the shared export, imported with their annotations
    tasks = json.loads(shared_path("data", "annotations", "ihms-train.json").read_text(encoding="utf-8"))[:150]
    ls.projects.import_tasks(id=pid, request=[{"data": {k: "" if v is None else v for k, v in t["data"].items()}, "annotations": [{"result": a["result"]} for a in t["annotations"]]}
                                              for t in tasks], commit_to_project=True)

    env = {"POLICYTAG_API_TOKEN": TOKEN, "LABEL_STUDIO_URL": studio["url"], "LABEL_STUDIO_API_KEY": studio["token"],
           "POLICYTAG_RETRAIN_AFTER": "2"}
    model_copy = tmp_path / "served"
    shutil.copytree(tfidf_model, model_copy)
    with serving(model_copy, env) as url:
        assert httpx.post(f"{url}/setup", json={}).status_code == 401  # nothing open without the token
        base = {"LABEL_STUDIO_URL": studio["url"], "LABEL_STUDIO_API_KEY": studio["token"]}
        r = runner.invoke(app, ["studio", "connect-backend", "--backend-url", url, "--title", "ml backend"],
                          env={**base, "POLICYTAG_API_TOKEN": "wrong-token"})
        assert r.exit_code == 2 and "refused the token" in r.output and "wrong-token" not in r.output, r.output
        r = runner.invoke(app, ["studio", "connect-backend", "--backend-url", url, "--title", "ml backend"],
                          env={**base, "POLICYTAG_API_TOKEN": TOKEN})
        assert r.exit_code == 0 and "auth BASIC_AUTH" in r.output and "test prediction OK" in r.output, r.output
        assert TOKEN not in r.output
        (backend,) = ls.ml.list(project=pid)
        assert backend.auth_method == "BASIC_AUTH" and backend.is_interactive and backend.state in ("CO", "CONNECTED")
        version = httpx.get(f"{url}/v1/model", headers=AUTH).json()["model_version"]

        # a task imported after the connection gets its prediction when an annotator opens it
        fresh = [{"data": {"text": "推进互联网医院建设，发展远程医疗服务。", "model_text": "推进互联网医院建设,发展远程医疗服务。",
                           "title": "", "issuer": "", "date": "", "doc_id": "new", "paragraph_index": 0}}]
        ls.projects.import_tasks(id=pid, request=fresh, commit_to_project=True)
        new_task = [t for t in ls.tasks.list(project=pid) if (t.data or {}).get("doc_id") == "new"][0]
        api(ls, "GET", f"api/tasks/{new_task.id}")  # what the labelling page does
        preds = [p if isinstance(p, dict) else p.dict() for p in ls.tasks.get(id=new_task.id).predictions]
        assert preds and preds[-1]["model_version"] == version
        assert any(r["from_name"] == "tool" for r in preds[-1]["result"])

        # Label Studio's webhook carries the token: its ANNOTATION_CREATED counts, one more starts the retrain
        ls.annotations.create(id=new_task.id, result=[stake("government")])
        r = httpx.post(f"{url}/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": pid}}, headers=AUTH)
        assert r.json()["retrain_started"] is True, r.json()
        deadline = time.time() + 300
        while time.time() < deadline:
            info = httpx.get(f"{url}/v1/model", headers=AUTH).json()
            if info["retrains"] == 1 or info["last_error"]:
                break
            time.sleep(0.5)
        assert info["retrains"] == 1 and info["last_error"] is None, info
        assert info["model_version"] != version
        r = httpx.post(f"{url}/v1/tag", json={"paragraphs": ["推进互联网医院建设。"]}, headers=AUTH).json()
        assert r["model_version"] == info["model_version"]
