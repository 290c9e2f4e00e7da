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
# Annotators read the document's own text (data.text: full-width punctuation as published);
# the model's normalised text travels in this field, which the labeling config never shows.
MODEL_TEXT = "model_text"
BACKEND_USER = "policytag"  # Basic-auth user Label Studio sends to `policytag serve` (any name works)
LOCAL_BACKEND_ENV = "ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false"

# Secrets in messages: what looks like a token (a JWT, a 40-hex legacy key) or follows
# "Bearer"/"Token". Short words are left alone, so "token no longer valid" reads as written.
_SECRET = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{16,}|[A-Za-z0-9_-]{24,}(?:\.[A-Za-z0-9_-]+){0,2}")
_URL = {"url": None}  # the Label Studio URL of the last connect(), named when it cannot be reached


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


TOKEN_HELP = ("use a personal access token: `policytag studio token --email YOU` prints one "
              "(or Account & Settings → Personal Access Token in Label Studio)")


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRET.sub(lambda m: f"{m.group(1)} ***" if m.group(1) else "***", text)


def _body_detail(body) -> str:
    """The readable part of a Label Studio error body ({"detail": …, "validation_errors": …})."""
    if isinstance(body, dict):
        parts = [str(body["detail"])] if body.get("detail") else []
        if body.get("validation_errors"):
            parts.append(json.dumps(body["validation_errors"], ensure_ascii=False))
        if parts:
            return "; ".join(parts)
    return str(body)


def explain(what: str, exc: BaseException, api_key: str | None = None) -> str:
    """One line saying what failed and what to do, never repeating a token."""
    import httpx

    url = _URL["url"] or "LABEL_STUDIO_URL"
    status = getattr(exc, "status_code", None)
    if isinstance(exc, httpx.TransportError):
        why = "connection refused" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
        detail = (f"cannot reach Label Studio at {url} ({why}): is it running, and is LABEL_STUDIO_URL / --url "
                  "the address it listens on?")
    elif status == 401:
        body = _body_detail(getattr(exc, "body", None))
        if "legacy" in body.lower():
            detail = ("Label Studio refused a legacy API token (legacy tokens are disabled for this organisation): "
                      + TOKEN_HELP)
        else:
            detail = f"Label Studio at {url} refused the token in LABEL_STUDIO_API_KEY ({body}): " + TOKEN_HELP
    elif status:
        detail = f"HTTP {status}: {_body_detail(getattr(exc, 'body', None))}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return _scrub(f"{what} failed: {detail}", api_key)


def connect(url: str, api_key: str):
    from label_studio_sdk import LabelStudio

    if not url or not api_key:
        raise StudioError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY, or pass --url / --api-key; "
                          "for the token, " + TOKEN_HELP)
    _URL["url"] = url.rstrip("/")
    try:  # the SDK checks a personal access token's form and expiry here
        return LabelStudio(base_url=url.rstrip("/"), api_key=api_key)
    except Exception as exc:
        raise StudioError(explain("connecting to Label Studio", exc, api_key)) from None


def _call(what: str, fn, *args, **kwargs):
    """Run an SDK call; turn HTTP/API failures into a StudioError that never repeats the token."""
    try:
        return fn(*args, **kwargs)
    except StudioError:
        raise
    except Exception as exc:
        raise StudioError(explain(what, exc)) from None


def _raw(ls, what: str, method: str, path: str, **kwargs):
    """An API call the SDK has no method for, with the SDK's own (refreshed) credentials."""
    def go():
        r = ls._client_wrapper.httpx_client.request(path, method=method, **kwargs)
        if r.status_code >= 400:
            from label_studio_sdk.core.api_error import ApiError

            try:
                body = r.json()
            except ValueError:
                body = r.text[:300]
            raise ApiError(status_code=r.status_code, body=body)
        return r
    return _call(what, go)


def _all(what: str, method, page_size: int = 500, **kwargs) -> list:
    """Every item of a paginated list, asking for no page past the last (Label Studio logs an
    "Invalid page" 404 traceback for each such request)."""
    items, page = [], 1
    while True:
        pager = _call(what, method, page=page, page_size=page_size, **kwargs)
        got = list(pager.items or [])
        items += got
        response = getattr(pager, "response", None)
        total = getattr(response, "total", None)
        if total is None:
            total = getattr(response, "count", None)
        if len(got) < page_size or (isinstance(total, int) and len(items) >= total):
            return items
        page += 1


def find_project(ls, title: str):
    for project in _all("listing projects", ls.projects.list, page_size=100, title=title):
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


def set_overlap(ls, pid: int, annotators: int, share: float) -> dict:
    """How many annotators label each task, and on what share of tasks, in Label Studio's own
    settings (`maximum_annotations`, `overlap_cohort_percentage`; Community has no screen for
    them). Overlapping tasks are served first, so agreement can be measured early. Label Studio
    picks the overlapping tasks itself and keeps the share as tasks are imported."""
    if annotators < 1:
        raise StudioError("--overlap must be at least 1 (1 = one annotator per task, no agreement)")
    if not 0 < share <= 1:
        raise StudioError("--overlap-share must be in (0, 1], e.g. 0.2 for one task in five")
    want = {"maximum_annotations": annotators,
            "overlap_cohort_percentage": 100 if annotators == 1 else max(1, min(100, round(share * 100))),
            "show_overlap_first": annotators > 1}
    project = _call("reading the project", ls.projects.get, id=pid)
    changes = {k: v for k, v in want.items() if getattr(project, k, None) != v}
    if changes:
        _call("setting overlap", ls.projects.update, id=pid, **changes)
    return {**want, "changed": sorted(changes)}


def project_id(ls, title: str) -> int:
    project = find_project(ls, title)
    if project is None:
        raise StudioError(f"no Label Studio project titled {title!r}: run `policytag studio setup --title {title!r}` first")
    return project.id


def existing_keys(ls, pid: int) -> set[tuple[str, int]]:
    """(doc_id, paragraph_index) of every task already in the project."""
    keys = set()
    for task in _all("listing tasks", ls.tasks.list, project=pid):
        data = task.data or {}
        if data.get("doc_id") is not None:
            keys.add((str(data["doc_id"]), int(data.get("paragraph_index") or 0)))
    return keys


def to_task(record: dict) -> dict:
    """A paragraph from `policytag ingest` as a Label Studio task (every config variable present).
    Annotators see the paragraph as the document has it (`original`); the model's normalised
    text goes in the hidden `model_text`, which training and the ML backend read."""
    data = {k: ("" if record.get(k) is None else str(record.get(k))) for k in TEXT_FIELDS}
    original = record.get("original")
    if isinstance(original, str) and original.strip():
        data["text"] = original.strip()
    data[MODEL_TEXT] = str(record["text"])
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
    # Annotators come with their email (completed_by as an object), for agreement by person.
    snapshot = _call("creating an export", ls.projects.exports.create, id=pid, title=f"policytag {time.strftime('%Y%m%d-%H%M%S')}",
                     serialization_options={"predictions": {"only_id": False},
                                            "annotations__completed_by": {"only_id": False}})
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


def model_text(data: dict) -> str:
    """The text a model reads for a task: the hidden normalised text, else data.text (older tasks)."""
    text = (data or {}).get(MODEL_TEXT)
    if not isinstance(text, str) or not text.strip():
        text = (data or {}).get("text", "")
    return text if isinstance(text, str) else str(text)


def unlabeled_tasks(ls, pid: int) -> list:
    """Tasks nobody has touched: neither annotated nor skipped (a skip is a decision too)."""
    def touched(t) -> bool:
        return bool(t.annotations) or bool(getattr(t, "total_annotations", 0)) or bool(getattr(t, "cancelled_annotations", 0))
    return [t for t in _all("listing tasks", ls.tasks.list, project=pid, fields="all") if not touched(t)]


# ---- the ML backend --------------------------------------------------------------------------
def _is_local(url: str) -> bool:
    import ipaddress
    import socket
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    if host in ("localhost", "") or host.endswith(".local"):
        return True
    try:
        addrs = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            addrs = {ipaddress.ip_address(a[4][0]) for a in socket.getaddrinfo(host, None)}
        except OSError:
            return False
    return any(a.is_private or a.is_loopback or a.is_link_local for a in addrs)


def local_backend_hint(url: str) -> str:
    return (f"Label Studio refuses ML backends on local or private addresses such as {url} unless it is started "
            f"with both settings: `{LOCAL_BACKEND_ENV} label-studio start …` (with only ML_BLOCK_LOCAL_IP=false it "
            "lists the backend as connected, yet refuses its webhook)")


def check_backend(url: str, token: str | None, timeout: float = 10) -> str:
    """From this machine: is `policytag serve` at `url` up, and does it accept the token the way
    Label Studio will send it (HTTP Basic, token as password)? Returns its model version."""
    import httpx

    auth = httpx.BasicAuth(BACKEND_USER, token) if token else None
    try:
        health = httpx.get(f"{url}/health", timeout=timeout)
        r = httpx.post(f"{url}/setup", json={}, auth=auth, timeout=timeout)
    except httpx.TransportError as exc:
        raise StudioError(f"cannot reach the ML backend at {url} ({type(exc).__name__}): is `policytag serve` "
                          "running there?") from None
    if health.status_code != 200 or "model_version" not in (health.json() if "json" in health.headers.get(
            "content-type", "") else {}):
        raise StudioError(f"{url} does not answer like `policytag serve` (GET /health: HTTP {health.status_code})")
    if r.status_code == 401:
        raise StudioError(f"the ML backend at {url} refused the token: pass the same value as the server's "
                          "POLICYTAG_API_TOKEN (env POLICYTAG_API_TOKEN or --token)")
    if r.status_code != 200:
        raise StudioError(f"the ML backend at {url} answered POST /setup with HTTP {r.status_code}")
    return r.json().get("model_version", "")


def connect_backend(ls, pid: int, url: str, token: str | None, title: str = "policytag",
                    interactive: bool = True) -> dict:
    """Register `policytag serve` as the project's ML backend, with HTTP Basic auth carrying the
    service token (Label Studio stores it and sends it on every call), for interactive
    pre-annotation and predictions on tasks without one. Its webhook (retraining) gets the
    same token as a header. Checked end to end: Label Studio asks the backend for a prediction."""
    url = url.rstrip("/")
    version = check_backend(url, token)
    auth = (dict(auth_method="BASIC_AUTH", basic_auth_user=BACKEND_USER, basic_auth_pass=token) if token
            else dict(auth_method="NONE"))
    fields = dict(url=url, title=title, is_interactive=interactive, **auth)
    existing = [m for m in _call("listing ML backends", ls.ml.list, project=pid) if (m.url or "").rstrip("/") == url]
    hint = local_backend_hint(url) if _is_local(url) else ""
    try:
        if existing:
            backend = _call("updating the ML backend", ls.ml.update, id=existing[0].id, project=pid, **fields)
        else:
            backend = _call("registering the ML backend", ls.ml.create, project=pid, **fields)
    except StudioError as exc:
        raise StudioError(f"{exc}" + (f". {hint}" if hint else "")) from None
    _call("turning on predictions from the backend", ls.projects.update, id=pid, show_collab_predictions=True,
          evaluate_predictions_automatically=True, model_version=title)
    warnings = []
    hook_url = f"{url}/webhook"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    hooks = [w for w in _call("listing webhooks", ls.webhooks.list, project=str(pid)) if (w.url or "").rstrip("/") == hook_url]
    try:
        if hooks:
            _call("giving the backend's webhook its token", ls.webhooks.update, id=hooks[0].id, headers=headers)
        else:
            _call("creating the backend's webhook", ls.webhooks.create, url=hook_url, project=pid, send_payload=True,
                  send_for_all_actions=True, headers=headers)
    except StudioError as exc:
        warnings.append(f"no webhook: annotations will not reach the backend for retraining ({exc})"
                        + (f". {hint}" if hint else ""))
    backend = _call("reading the ML backend", ls.ml.get, id=backend.id)
    state = str(backend.state or "")
    if state not in ("CO", "CONNECTED"):
        raise StudioError(f"Label Studio lists the backend as {backend.readable_state or state}: "
                          f"{backend.error_message or 'no reason given'}" + (f". {hint}" if hint else ""))
    tested = False
    if _raw(ls, "counting tasks", "GET", "api/tasks/", params={"project": pid, "page_size": 1}).json().get("total"):
        try:
            _raw(ls, "asking the backend for a test prediction", "POST", f"api/ml/{backend.id}/predict/test",
                 params={"random": "true"})
            tested = True
        except StudioError as exc:
            raise StudioError(f"{exc}" + (f". {hint}" if hint else "")) from None
    return {"id": backend.id, "created": not existing, "model_version": version, "auth": auth["auth_method"],
            "interactive": interactive, "tested": tested, "warnings": warnings}


def invite_url(ls) -> str:
    """The organisation's sign-up link for new annotators."""
    link = _call("getting the invite link", ls.organizations.invites.get_invite_link).invite_url
    return link if link.startswith("http") else f"{_URL['url'] or ''}{link}"


def create_personal_access_token(url: str, email: str, password: str) -> str:
    """Log in with a browser-style session and create a personal access token (what a user
    does under Account & Settings). Used by tests and first-time set-up scripts."""
    import httpx

    try:
        return _create_pat(url, email, password)
    except httpx.TransportError as exc:
        raise StudioError(f"cannot reach Label Studio at {url} ({type(exc).__name__}): is it running, and is "
                          "LABEL_STUDIO_URL / --url the address it listens on?") from None


def _create_pat(url: str, email: str, password: str) -> str:
    import httpx

    with httpx.Client(base_url=url.rstrip("/"), follow_redirects=True, timeout=30) as http:
        http.get("/user/login/")
        csrf = http.cookies.get("csrftoken")
        r = http.post("/user/login/", data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
                      headers={"Referer": f"{url.rstrip('/')}/user/login/"})
        if r.status_code >= 400 or "sessionid" not in http.cookies:
            raise StudioError(f"login to {url} as {email} failed (HTTP {r.status_code}): wrong email or password?")
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
    from policytag.files import read_jsonl

    rows = read_jsonl(path)
    bad = [i for i, r in enumerate(rows, 1) if not {"doc_id", "paragraph_index", "text"} <= set(r)]
    if bad:
        raise StudioError(f"{path}: line(s) {bad[:5]} lack doc_id/paragraph_index/text — is it output of `policytag ingest`?")
    return rows

