"""The analysts' web page served by `policytag serve` at `/`: upload documents (or paste text), read every
paragraph with its labels and evidence, get the 6D tables and downloads, send paragraphs to Label Studio.

Plain HTML, vanilla JS and CSS shipped in `serve/web/` (package data, no CDN, no build step). The page talks
to the JSON routes below (`/web/api/...`, left out of the OpenAPI schema: they are the page's own), with the
same bearer token as the API (entered once, kept in the browser session).

A job is a folder in the server's work folder (`POLICYTAG_WEB_DIR`, else a temporary folder per server):
`uploads/` (the files as sent, plus a `metadata.csv` sidecar with the form's metadata), `state.json`,
`tags.jsonl`/`tags.xlsx`/`tags.csv` (the rows of `policytag predict`) and `report/` (what `policytag report`
writes). Jobs run in the background one at a time; the page polls `GET /web/api/jobs/{id}` and keeps the job
id in its URL, so a reload finds the job again. Uploads obey the API's limits: a file larger than
POLICYTAG_MAX_BODY_BYTES is refused with 413, a document with more paragraphs than POLICYTAG_MAX_PARAGRAPHS or
a paragraph longer than POLICYTAG_MAX_CHARS is reported as failed; the other documents are still tagged.
"""
from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from policytag.files import read_jsonl, write_text_atomic

log = logging.getLogger("policytag.web")

STATIC = Path(__file__).parent / "web"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
# Served without a token: the page must load before it can ask for one. Everything under /web/api needs it.
OPEN_PATHS = {"/", "/index.html", *(f"/web/static/{name}" for name in ASSETS)}
UPLOAD_SUFFIXES = {".docx", ".pdf", ".txt", ".md", ".html", ".htm"}
META_FIELDS = ("title", "issuer", "doc_number", "date", "level", "nature")
LEVELS = ("national", "provincial", "municipal", "shanghai")
NATURES = ("planning", "detailed_regulation")
DOWNLOADS = {"tags.xlsx": "tags.xlsx", "tags.csv": "tags.csv", "6d_report.xlsx": "report/6d_report.xlsx",
             "6d_report.html": "report/6d_report.html"}
PASTED_NAME = "粘贴文本.txt"
_JOB_ID = re.compile(r"^[0-9a-f]{16}$")

router = APIRouter(include_in_schema=False)


# ---- bodies ---------------------------------------------------------------------------------------
class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Optional[str] = Field(None, max_length=500)
    issuer: Optional[str] = Field(None, max_length=500)
    doc_number: Optional[str] = Field(None, max_length=200)
    date: Optional[str] = Field(None, max_length=40)
    level: Optional[str] = None
    nature: Optional[str] = None


class NewJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: Metadata = Metadata()
    text: Optional[str] = Field(None, description="Pasted text: tagged as one more document.")


class EvidenceRequest(BaseModel):
    row: int


class StudioRequest(BaseModel):
    rows: list[int]
    title: str = Field(..., min_length=1, max_length=200)


# ---- jobs -----------------------------------------------------------------------------------------
class Jobs:
    """The server's jobs: folders under `root`, state in each `state.json`, one tagging run at a time."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()  # state files
        self.run_lock = threading.Lock()  # one job tagging at a time; others wait "queued"
        self.evidence_lock = threading.Lock()
        self.live: set[str] = set()  # jobs started by this process

    def folder(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id or "") or not (self.root / job_id / "state.json").is_file():
            raise HTTPException(404, f"no job {job_id!r} on this server (jobs live in {self.root.name}/ until the "
                                     "server's work folder is removed); upload the documents again")
        return self.root / job_id

    def state(self, job_id: str) -> dict:
        folder = self.folder(job_id)
        with self.lock:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if state["status"] in ("queued", "running") and job_id not in self.live:
            state.update(status="failed", message="the server was restarted while this job ran; upload again")
        return state

    def update(self, job_id: str, **changes) -> dict:
        path = self.root / job_id / "state.json"
        with self.lock:
            state = json.loads(path.read_text(encoding="utf-8"))
            state.update(changes, updated=time.time())
            write_text_atomic(path, json.dumps(state, ensure_ascii=False, indent=1))
        return state

    def create(self, metadata: dict) -> str:
        job_id = secrets.token_hex(8)
        folder = self.root / job_id
        (folder / "uploads").mkdir(parents=True)
        state = {"id": job_id, "status": "created", "stage": "上传 uploading", "progress": 0.0, "created": time.time(),
                 "metadata": metadata, "files": [], "documents": 0, "paragraphs": 0, "rows": 0, "message": None,
                 "downloads": [], "report_error": None}
        write_text_atomic(folder / "state.json", json.dumps(state, ensure_ascii=False, indent=1))
        return job_id


def _jobs(request: Request) -> Jobs:
    app = request.app
    if getattr(app.state, "web_jobs", None) is None:
        root = os.environ.get("POLICYTAG_WEB_DIR")
        app.state.web_jobs = Jobs(Path(root) if root else Path(tempfile.mkdtemp(prefix="policytag-web-")))
    return app.state.web_jobs


def _tagger(request: Request):
    tagger = request.app.state.model_state.get("tagger")
    if tagger is None:
        raise HTTPException(503, "the model is still loading; try again in a moment")
    return tagger


def _safe_name(name: str) -> str:
    name = Path(name.replace("\\", "/")).name.strip()
    name = re.sub(r"[\x00-\x1f]", "", name)
    if not name or name.startswith(".") or len(name) > 200:
        raise HTTPException(422, f"file name {name!r} cannot be used: give the file a plain name")
    return name


def _limits(settings) -> dict:
    return {"max_body_bytes": settings.max_body_bytes, "max_paragraphs": settings.max_paragraphs,
            "max_chars": settings.max_chars}


# ---- page -----------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
@router.get("/index.html", response_class=HTMLResponse)
async def page():
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})


@router.get("/web/static/{name}")
async def asset(name: str):
    if name not in ASSETS:
        raise HTTPException(404, "no such file")
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


# ---- API for the page -----------------------------------------------------------------------------
@router.get("/web/api/config")
async def config(request: Request):
    settings = request.app.state.settings
    tagger = _tagger(request)
    return {"model_version": tagger.version, "schema": tagger.book.to_dict(), "limits": _limits(settings),
            "studio": bool(settings.label_studio_url and settings.label_studio_api_key),
            "upload_suffixes": sorted(UPLOAD_SUFFIXES), "levels": LEVELS, "natures": NATURES}


@router.post("/web/api/jobs")
async def create_job(body: NewJob, request: Request):
    settings = request.app.state.settings
    meta = {k: v.strip() for k, v in body.metadata.model_dump().items() if isinstance(v, str) and v.strip()}
    if meta.get("level") and meta["level"] not in LEVELS:
        raise HTTPException(422, f"level must be one of {', '.join(LEVELS)}")
    if meta.get("nature") and meta["nature"] not in NATURES:
        raise HTTPException(422, f"nature must be one of {', '.join(NATURES)}")
    jobs = _jobs(request)
    job_id = jobs.create(meta)
    if body.text is not None and body.text.strip():
        data = body.text.encode("utf-8")
        if len(data) > settings.max_body_bytes:
            raise HTTPException(413, f"the pasted text has {len(data)} bytes, over the limit of {settings.max_body_bytes} "
                                     "bytes (POLICYTAG_MAX_BODY_BYTES)")
        _store(jobs, job_id, PASTED_NAME, data)
    return jobs.state(job_id)


def _store(jobs: Jobs, job_id: str, name: str, data: bytes) -> str:
    uploads = jobs.root / job_id / "uploads"
    stem, suffix = Path(name).stem, Path(name).suffix
    final, k = name, 1
    while (uploads / final).exists() or final.lower() in ("metadata.csv", "metadata.json"):
        k += 1
        final = f"{stem} ({k}){suffix}"
    (uploads / final).write_bytes(data)
    state = jobs.state(job_id)
    jobs.update(job_id, files=state["files"] + [{"name": final, "size": len(data), "status": "uploaded", "error": None,
                                                 "paragraphs": 0}])
    return final


@router.post("/web/api/jobs/{job_id}/files")
async def upload(job_id: str, name: str, request: Request):
    """One file per request, its bytes as the body (no multipart): the body limit is the file limit."""
    settings = request.app.state.settings
    jobs = _jobs(request)
    if jobs.state(job_id)["status"] != "created":
        raise HTTPException(409, "this job has started; upload into a new job")
    name = _safe_name(name)
    if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
        raise HTTPException(415, f"{name}: unsupported file type {Path(name).suffix or '(none)'} "
                                 f"(supported: {', '.join(sorted(UPLOAD_SUFFIXES))})")
    data = await request.body()
    if len(data) > settings.max_body_bytes:
        raise HTTPException(413, f"{name}: {len(data)} bytes exceed the limit of {settings.max_body_bytes} bytes per file "
                                 "(POLICYTAG_MAX_BODY_BYTES)")
    stored = _store(jobs, job_id, name, data)
    return {"name": stored, "size": len(data)}


@router.post("/web/api/jobs/{job_id}/start")
async def start(job_id: str, request: Request):
    jobs = _jobs(request)
    state = jobs.state(job_id)
    if state["status"] != "created":
        raise HTTPException(409, f"this job is already {state['status']}")
    if not state["files"]:
        raise HTTPException(422, "nothing to tag: add a file or paste some text")
    tagger = _tagger(request)
    settings = request.app.state.settings
    jobs.live.add(job_id)
    state = jobs.update(job_id, status="queued", stage="排队 queued")
    threading.Thread(target=_run_job, args=(jobs, job_id, tagger, settings), daemon=True, name=f"web-job-{job_id}").start()
    return state


@router.get("/web/api/jobs/{job_id}")
async def job_state(job_id: str, request: Request):
    return _jobs(request).state(job_id)


def _done_folder(request: Request, job_id: str) -> Path:
    jobs = _jobs(request)
    state = jobs.state(job_id)
    if state["status"] != "done":
        raise HTTPException(409, f"the job is {state['status']}, not done")
    return jobs.folder(job_id)


@router.get("/web/api/jobs/{job_id}/rows")
async def rows(job_id: str, request: Request):
    folder = _done_folder(request, job_id)
    tagger = _tagger(request)
    out = []
    for i, r in enumerate(read_jsonl(folder / "tags.jsonl")):
        out.append({"row": i, "doc_id": r.get("doc_id"), "paragraph_index": r.get("paragraph_index"),
                    "title": r.get("title"), "is_heading": bool(r.get("is_heading")), "text": r.get("text"),
                    "skipped": r.get("skipped"),
                    "labels": {d: r.get(d) or [] for d in tagger.book.dimension_ids},
                    "groups": {d.id: r.get(f"{d.id}_group") or [] for d in tagger.book.dimensions if d.groups},
                    "probs": {k[2:]: v for k, v in r.items() if k.startswith("p_") and v is not None}})
    return {"rows": out}


@router.post("/web/api/jobs/{job_id}/evidence")
async def evidence(job_id: str, body: EvidenceRequest, request: Request):
    """The words behind each predicted label of one paragraph (what `predict --explain` writes), cached."""
    folder = _done_folder(request, job_id)
    tagger = _tagger(request)
    jobs = _jobs(request)
    cache_path = folder / "evidence.json"
    with jobs.evidence_lock:
        cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.exists() else {}
    if str(body.row) in cache:
        return {"row": body.row, "evidence": cache[str(body.row)]}
    records = read_jsonl(folder / "tags.jsonl")
    if not 0 <= body.row < len(records):
        raise HTTPException(404, f"no paragraph {body.row} in this job ({len(records)} paragraphs)")
    rec = records[body.row]

    def explain() -> dict:
        from policytag.models.explain import explain_occlusion

        probs = tagger.predict_proba([rec["text"]], [rec.get("title")])
        return explain_occlusion(tagger, [rec["text"]], probs, [rec.get("title")])[0]

    result = await asyncio.to_thread(explain)
    with jobs.evidence_lock:
        cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.exists() else {}
        cache[str(body.row)] = result
        write_text_atomic(cache_path, json.dumps(cache, ensure_ascii=False))
    return {"row": body.row, "evidence": result}


@router.get("/web/api/jobs/{job_id}/report")
async def report_tables(job_id: str, request: Request):
    folder = _done_folder(request, job_id)
    path = folder / "report" / "tables.json"
    if not path.exists():
        state = _jobs(request).state(job_id)
        raise HTTPException(409, f"no report for this job: {state.get('report_error') or 'not written'}")
    return json.loads(path.read_text(encoding="utf-8"))


@router.get("/web/api/jobs/{job_id}/download/{name}")
async def download(job_id: str, name: str, request: Request):
    folder = _done_folder(request, job_id)
    if name not in DOWNLOADS or not (folder / DOWNLOADS[name]).is_file():
        raise HTTPException(404, f"no file {name!r} for this job")
    return FileResponse(folder / DOWNLOADS[name], filename=f"{job_id}-{name}")


@router.post("/web/api/jobs/{job_id}/studio")
async def studio_push(job_id: str, body: StudioRequest, request: Request):
    """`policytag studio push` for the chosen paragraphs, with the model's suggestions as pre-annotations."""
    settings = request.app.state.settings
    if not (settings.label_studio_url and settings.label_studio_api_key):
        raise HTTPException(400, "Label Studio is not configured on this server: start it with LABEL_STUDIO_URL and "
                                 "LABEL_STUDIO_API_KEY set")
    folder = _done_folder(request, job_id)
    tagger = _tagger(request)
    records = read_jsonl(folder / "tags.jsonl")
    bad = [i for i in body.rows if not 0 <= i < len(records)]
    if bad or not body.rows:
        raise HTTPException(422, f"choose paragraphs of this job (0-{len(records) - 1}); got {bad or 'none'}")
    chosen = [{k: records[i].get(k) for k in records[i] if not k.startswith("p_")} for i in body.rows]

    def push() -> dict:
        from policytag.labels.studio import connect, project_id, push_tasks

        ls = connect(settings.label_studio_url, settings.label_studio_api_key)
        return push_tasks(ls, project_id(ls, body.title), chosen, tagger.book, tagger)

    from policytag.labels.studio import StudioError

    try:
        return await asyncio.to_thread(push)
    except StudioError as exc:
        raise HTTPException(502, f"Label Studio: {exc}")


# ---- the background run ---------------------------------------------------------------------------
def _write_sidecar(uploads: Path, files: list[dict], metadata: dict) -> None:
    """The form's metadata for every uploaded file, as the `metadata.csv` sidecar `policytag ingest` reads."""
    if not metadata:
        return
    fields = [k for k in META_FIELDS if metadata.get(k)]
    with open(uploads / "metadata.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", *fields])
        for f in files:
            writer.writerow([f["name"], *(metadata[k] for k in fields)])


def _run_job(jobs: Jobs, job_id: str, tagger, settings) -> None:
    with jobs.run_lock:
        try:
            _tag_and_report(jobs, job_id, tagger, settings)
        except Exception as exc:  # reported on the page, never a silent stop
            log.exception("web job %s failed", job_id)
            jobs.update(job_id, status="failed", stage="失败 failed", message=f"{type(exc).__name__}: {exc}")
        finally:
            jobs.live.discard(job_id)


def _tag_and_report(jobs: Jobs, job_id: str, tagger, settings) -> None:
    from policytag.models.batch import label_columns, run_batch
    from policytag.nlp.tagsfile import write_table

    folder = jobs.root / job_id
    uploads = folder / "uploads"
    state = jobs.update(job_id, status="running", stage="读取 reading", progress=0.02)
    files = state["files"]
    _write_sidecar(uploads, files, state["metadata"])
    by_path = {str(uploads / f["name"]): f for f in files}
    counters = {"files": 0, "paragraphs": 0, "tagged": 0}

    def on_file(result) -> None:
        entry = by_path.get(result.path) or {"name": Path(result.path).name}
        if not result.error:
            too_long = [r for r in result.records if len(r.get("text") or "") > settings.max_chars]
            if len(result.records) > settings.max_paragraphs:
                result.error = (f"{len(result.records)} paragraphs exceed the limit of {settings.max_paragraphs} per "
                                "document (POLICYTAG_MAX_PARAGRAPHS)")
            elif too_long:
                result.error = (f"paragraph {too_long[0].get('paragraph_index')} has {len(too_long[0]['text'])} characters, "
                                f"over the limit of {settings.max_chars} (POLICYTAG_MAX_CHARS)")
        entry.update(status="failed" if result.error else "read", error=result.error,
                     paragraphs=0 if result.error else len(result.records), encoding=result.encoding)
        counters["files"] += 1
        if not result.error:
            counters["paragraphs"] += len(result.records)
        jobs.update(job_id, files=files, stage=f"读取 reading {counters['files']}/{len(files)}",
                    progress=0.05 + 0.35 * counters["files"] / max(len(files), 1))

    def on_tagged(n: int) -> None:
        counters["tagged"] += n
        jobs.update(job_id, stage=f"标注 tagging {counters['tagged']}/{counters['paragraphs']}",
                    progress=0.4 + 0.4 * min(counters["tagged"] / max(counters["paragraphs"], 1), 1.0))

    summary = run_batch(tagger, [uploads], folder / "tags.jsonl", chunk_paragraphs=64, progress=on_tagged,
                        on_file=on_file)
    for f in files:
        if f["status"] == "read":
            f["status"] = "tagged"
    failed = {Path(p).name: why for p, why in summary.failed}
    for f in files:
        if f["name"] in failed and f["status"] != "failed":
            f.update(status="failed", error=failed[f["name"]], paragraphs=0)
    rows = read_jsonl(folder / "tags.jsonl")
    if not rows:
        jobs.update(job_id, status="failed", stage="失败 failed", files=files, progress=1.0,
                    message="no document could be read: " + "; ".join(f"{f['name']}: {f['error']}" for f in files if f["error"]))
        return
    jobs.update(job_id, stage="写表 writing tables", files=files, progress=0.82, documents=summary.documents,
                paragraphs=summary.paragraphs_in, rows=len(rows))
    write_table(rows, folder / "tags.xlsx", label_columns(tagger))
    write_table(rows, folder / "tags.csv", label_columns(tagger))
    downloads = ["tags.xlsx", "tags.csv"]
    report_error = None
    jobs.update(job_id, stage="报告 report", progress=0.86, downloads=downloads)
    try:
        write_web_report(folder / "tags.xlsx", folder / "report", tagger.book)
        downloads += ["6d_report.xlsx", "6d_report.html"]
    except Exception as exc:  # the tags are still there to read and download
        log.exception("report for web job %s failed", job_id)
        report_error = f"{type(exc).__name__}: {exc}"
    jobs.update(job_id, status="done", stage="完成 done", progress=1.0, downloads=downloads, report_error=report_error)


def write_web_report(tags: Path, out: Path, book) -> dict:
    """What `policytag report TAGS --out OUT` writes (the tags file read back exactly as the CLI reads it), plus
    `tables.json`: every table as the page shows it."""
    from policytag.nlp.tagsfile import read_tags
    from policytag.report import medsec
    from policytag.report.render import write_report
    from policytag.report.sixd import YearBins, corpus
    from policytag.report.tables import build_tables

    frame = read_tags(tags)
    tables = build_tables(frame, book, YearBins.parse("paper"))
    c = corpus(frame, book)
    study = medsec.applies(book)
    notes = medsec.omitted(c) if study else []
    if not study:
        omitted = [f"Table {n}" for n in range(1, 13) if f"Table {n}" not in tables]
        if omitted:
            notes.append(f"Not produced for codebook {book.name} (it lacks the dimension they need): {', '.join(omitted)}.")
    intro = (f"{frame['doc_id'].nunique()} documents, {len(frame)} paragraphs ({len(c.coded)} coded); codebook {book.name}.")
    write_report(tables, out, {}, charts=True, intro=intro, notes=notes,
                 **({"heading": medsec.HEADING, "source": medsec.SOURCE} if study else {}))
    payload = {"intro": intro, "notes": notes, "tables": [_table_json(t) for t in tables.values()]}
    write_text_atomic(out / "tables.json", json.dumps(payload, ensure_ascii=False))
    return payload


def _table_json(t) -> dict:
    display = t.display()
    return {"key": t.key, "title": t.title, "number": t.number, "layout": t.layout, "dimension": t.dimension,
            "row_header": display.index.name or "", "columns": [str(c) for c in display.columns], "notes": list(t.notes),
            "rows": [{"name": t.rows[i], "label": str(display.index[i]), "kind": t.kinds[i],
                      "cells": [str(v) for v in display.iloc[i].tolist()], "n": [int(x) for x in t.counts[i]],
                      "percent": [None if (p := t.percent(i, j)) is None else round(p, 4) for j in range(len(t.columns))]}
                     for i in range(len(t.rows))]}


__all__ = ["router", "OPEN_PATHS", "Jobs", "write_web_report"]
