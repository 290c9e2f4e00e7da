"""Talking to a real Label Studio server: labeling config, project setup, task import with
pre-annotations, export. Everything goes through the official SDK (`label-studio-sdk` 2.x),
which refreshes personal access tokens itself."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

from .schema import Codebook

TEXT_FIELDS = ("text", "title", "issuer", "date")
TASK_FIELDS = ("doc_id", "paragraph_index", "doc_number", "level", "nature", "year", "is_heading", "source_path")


_SECRET = re.compile(r"(?i)(token|bearer)\s+\S+")


class StudioError(RuntimeError):
    """A Label Studio problem explained for the user (never includes the token)."""


def _hint(text: str) -> str:
    return quoteattr(" ".join(text.split()))


def labeling_config(book: Codebook) -> str:
    """The labeling config XML generated from the codebook: text with its document header,
    a Taxonomy for hierarchical dimensions (leaves only), multi-choice for the others. Every
    choice carries alias = codebook id, so exports hold stable ids whatever the display name."""
    lines = ["<View>",
             '  <Header value="$title" size="4"/>',
             '  <View style="color:#666;font-size:90%">',
             '    <Text name="issuer" value="$issuer"/>',
             '    <Text name="date" value="$date"/>',
             "  </View>",
             '  <Text name="text" value="$text" granularity="word"/>']
    for dim in book.dimensions:
        lines.append(f"  <Header value={quoteattr(f'{dim.zh} {dim.en}')} size=\"5\"/>")
        if dim.groups:
            lines.append(f'  <Taxonomy name="{dim.id}" toName="text" leafsOnly="true" showFullPath="true" '
                         f'placeholder={quoteattr(dim.zh)}>')
            for group in dim.groups:
                lines.append(f"    <Choice value={quoteattr(f'{group.zh} {group.en}')} alias=\"{group.id}\" "
                             f"hint={_hint(group.definition)}>")
                for label in group.labels:
                    lines.append(f"      <Choice value={quoteattr(f'{label.zh} {label.en}')} alias=\"{label.id}\" "
                                 f"hint={_hint(label.definition)}/>")
                lines.append("    </Choice>")
            lines.append("  </Taxonomy>")
        else:
            kind = "multiple" if dim.multi_label else "single"
            lines.append(f'  <Choices name="{dim.id}" toName="text" choice="{kind}" showInline="true">')
            for label in dim.labels:
                lines.append(f"    <Choice value={quoteattr(f'{label.zh} {label.en}')} alias=\"{label.id}\" "
                             f"hint={_hint(label.definition)}/>")
            lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines)


def prediction_result(book: Codebook, labels: dict[str, list[str]]) -> list[dict]:
    """Label Studio result regions for a label set, validated against the codebook first:
    Label Studio itself accepts unknown labels silently."""
    result = []
    for dim_id, ids in labels.items():
        dim = book.dimension(dim_id)  # KeyError for an unknown dimension
        unknown = [l for l in ids if l not in dim.label_ids]
        if unknown:
            raise StudioError(f"prediction has labels not in dimension {dim_id!r} of codebook {book.name}: {unknown}")
        if not ids:
            continue
        if dim.groups:
            value = {"taxonomy": [[book.label(l).group, l] for l in ids]}
            result.append({"from_name": dim_id, "to_name": "text", "type": "taxonomy", "value": value})
        else:
            result.append({"from_name": dim_id, "to_name": "text", "type": "choices", "value": {"choices": list(ids)}})
    return result


def connect(url: str, api_key: str):
    from label_studio_sdk import LabelStudio

    if not url or not api_key:
        raise StudioError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a personal access token from "
                          "Account & Settings in Label Studio), or pass --url / --api-key")
    return LabelStudio(base_url=url.rstrip("/"), api_key=api_key)


def _call(what: str, fn, *args, **kwargs):
    """Run an SDK call; turn HTTP/API failures into a StudioError that never repeats the token."""
    try:
        return fn(*args, **kwargs)
    except StudioError:
        raise
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        detail = f"HTTP {status}: {body}" if status else f"{type(exc).__name__}: {exc}"
        if status == 401:
            detail += " — the token was refused: create a personal access token in Label Studio"
        detail = _SECRET.sub(r"\1 ***", detail)
        raise StudioError(f"{what} failed: {detail}") from None


def find_project(ls, title: str):
    for project in _call("listing projects", ls.projects.list, title=title):
        if project.title == title:
            return project
    return None


def setup_project(ls, title: str, book: Codebook) -> tuple[int, bool]:
    """Create the project, or update its config if it exists. Returns (id, created)."""
    config = labeling_config(book)
    project = find_project(ls, title)
    if project is None:
        project = _call("creating the project", ls.projects.create, title=title, label_config=config,
                        description=f"policytag: {book.name} codebook v{book.version}")
        return project.id, True
    if (project.label_config or "").strip() != config.strip():
        _call("updating the labeling config", ls.projects.update, id=project.id, label_config=config)
    return project.id, False


def project_id(ls, title: str) -> int:
    project = find_project(ls, title)
    if project is None:
        raise StudioError(f"no Label Studio project titled {title!r}: run `policytag studio setup --title {title!r}` first")
    return project.id


def existing_keys(ls, pid: int) -> set[tuple[str, int]]:
    """(doc_id, paragraph_index) of every task already in the project."""
    keys = set()
    for task in _call("listing tasks", ls.tasks.list, project=pid, page_size=500):
        data = task.data or {}
        if data.get("doc_id") is not None:
            keys.add((str(data["doc_id"]), int(data.get("paragraph_index") or 0)))
    return keys


def to_task(record: dict) -> dict:
    """A paragraph from `policytag ingest` as a Label Studio task (every config variable present)."""
    data = {k: ("" if record.get(k) is None else str(record.get(k))) for k in TEXT_FIELDS}
    data.update({k: record.get(k) for k in TASK_FIELDS if k in record})
    if "paragraph_index" in data:
        data["paragraph_index"] = int(data["paragraph_index"])
    return {"data": data}


def push_tasks(ls, pid: int, records: list[dict], book: Codebook, tagger=None, batch: int = 500) -> dict:
    """Import paragraphs not yet in the project, with optional model pre-annotations."""
    have = existing_keys(ls, pid)
    new, seen = [], set()
    for r in records:
        key = (str(r["doc_id"]), int(r["paragraph_index"]))
        if key in have or key in seen:
            continue
        seen.add(key)
        new.append(r)
    tasks = [to_task(r) for r in new]
    if tagger is not None and tasks:
        if tagger.book.name != book.name or [tuple(x) for x in book.flat_labels] != tagger.labels:
            raise StudioError(f"model {tagger.path} was trained on codebook {tagger.book.name}, not {book.name}")
        probs = tagger.predict_proba([r["text"] for r in new], [r.get("title") for r in new])
        for task, row in zip(tasks, probs):
            pred = tagger.decode(row)
            task["predictions"] = [{"model_version": tagger.version, "score": round(confidence(row, tagger.thresholds), 4),
                                    "result": prediction_result(book, pred.labels)}]
    for i in range(0, len(tasks), batch):
        _call("importing tasks", ls.projects.import_tasks, id=pid, request=tasks[i:i + batch], commit_to_project=True)
    return {"imported": len(tasks), "already_there": len(records) - len(tasks), "with_predictions": tagger is not None}


def confidence(probs, thresholds) -> float:
    """How sure the model is about a paragraph: 1 minus the mean closeness of each label's
    probability to its decision threshold (0 = every label on the fence)."""
    import numpy as np

    probs, thresholds = np.asarray(probs), np.asarray(thresholds)
    span = np.where(probs >= thresholds, 1 - thresholds, thresholds)
    margin = np.abs(probs - thresholds) / np.maximum(span, 1e-6)
    return float(np.clip(margin, 0, 1).mean())


def export_project(ls, pid: int, timeout: float = 300) -> list[dict]:
    """The project's tasks in Label Studio's JSON export format, through the snapshot flow
    (create → poll → download), which works for projects of any size."""
    snapshot = _call("creating an export", ls.projects.exports.create, id=pid, title=f"policytag {time.strftime('%Y%m%d-%H%M%S')}",
                     serialization_options={"predictions": {"only_id": False}})
    deadline = time.time() + timeout
    while True:
        info = _call("checking the export", ls.projects.exports.get, id=pid, export_pk=snapshot.id)
        status = str(getattr(info, "status", "") or "")
        if status == "completed":
            break
        if status == "failed" or time.time() > deadline:
            raise StudioError(f"export {snapshot.id} of project {pid} {status or 'timed out'}")
        time.sleep(0.5)
    data = b"".join(_call("downloading the export", ls.projects.exports.download, id=pid, export_pk=snapshot.id,
                          export_type="JSON"))
    tasks = json.loads(data)
    _call("removing the export snapshot", ls.projects.exports.delete, id=pid, export_pk=snapshot.id)
    return tasks


def unlabeled_tasks(ls, pid: int) -> list:
    return [t for t in _call("listing tasks", ls.tasks.list, project=pid, page_size=500, fields="all")
            if not [a for a in (t.annotations or []) if not (a.get("was_cancelled") if isinstance(a, dict) else False)]]


def create_personal_access_token(url: str, email: str, password: str) -> str:
    """Log in with a browser-style session and create a personal access token (what a user
    does under Account & Settings). Used by tests and first-time set-up scripts."""
    import httpx

    with httpx.Client(base_url=url.rstrip("/"), follow_redirects=True, timeout=30) as http:
        http.get("/user/login/")
        csrf = http.cookies.get("csrftoken")
        r = http.post("/user/login/", data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
                      headers={"Referer": f"{url.rstrip('/')}/user/login/"})
        if r.status_code >= 400 or "sessionid" not in http.cookies:
            raise StudioError(f"login to {url} as {email} failed (HTTP {r.status_code})")
        r = http.post("/api/token/", headers={"X-CSRFToken": http.cookies.get("csrftoken") or csrf,
                                              "Referer": f"{url.rstrip('/')}/"})
        if r.status_code == 409:
            raise StudioError(f"{email} already has a personal access token: use it, or revoke it under "
                              "Account & Settings before creating another")
        if r.status_code >= 400:
            raise StudioError(f"creating a personal access token failed (HTTP {r.status_code}): {r.text[:200]}")
        token = r.json().get("token") or r.json().get("refresh")
        if not token:
            raise StudioError("Label Studio answered /api/token/ without a token")
        return token


def read_paragraphs(path: Path) -> list[dict]:
    from nlp.files import read_jsonl

    rows = read_jsonl(path)
    bad = [i for i, r in enumerate(rows, 1) if not {"doc_id", "paragraph_index", "text"} <= set(r)]
    if bad:
        raise StudioError(f"{path}: line(s) {bad[:5]} lack doc_id/paragraph_index/text — is it output of `policytag ingest`?")
    return rows

