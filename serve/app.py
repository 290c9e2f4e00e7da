"""The tagging service: a REST API for programs and the Label Studio ML backend protocol,
in one FastAPI app.

Concurrent requests are micro-batched: paragraphs from all callers wait at most
`batch_wait_ms` in one queue and are tagged together, so throughput under load approaches
batch tagging. Inputs are validated before they join a batch (lone surrogates, blank or
invisible-only paragraphs, limits: 413/422 for that request), and a batch that still fails is
retried request by request, so one bad request never fails the others batched with it. The
model can be swapped atomically (after a background retrain) without dropping requests.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import html
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policytag.models.tagger import Tagger, load_model
from policytag.nlp.metadata import merge_metadata, parse_metadata
from policytag.nlp.segment import first_lone_surrogate, has_visible_text, segment

from . import web

log = logging.getLogger("policytag.serve")


class SafeJSONResponse(JSONResponse):
    """JSON that can always be sent: a lone surrogate that reached a response (an echoed key,
    an error location) becomes U+FFFD instead of failing the response with a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8", "replace")


def _find_lone_surrogate(value: Any, where: str = "body") -> str | None:
    """Where in a parsed JSON body the first lone surrogate is, e.g. 'paragraphs[1] at character 3'."""
    stack = [(value, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, str):
            i = first_lone_surrogate(v)
            if i is not None:
                return f"{at} at character {i}"
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and first_lone_surrogate(k) is not None:
                    return f"a key of {at}"
                stack.append((item, f"{at}.{k}" if isinstance(k, str) else at))
        elif isinstance(v, (list, tuple)):
            stack.extend((item, f"{at}[{i}]") for i, item in enumerate(v))
    return None


class _ValidUnicode(BaseModel):
    """Rejects (422) a body holding a lone surrogate anywhere ("\\ud800" in JSON): no tokenizer
    accepts one, so it must never reach a shared batch."""

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        where = _find_lone_surrogate(data)
        if where is not None:
            raise ValueError(f"{where.removeprefix('body.')}: a lone surrogate (invalid Unicode); send valid UTF-8 text")
        return data


@dataclass
class Settings:
    model_dir: Path
    backend: str = "torch"  # or onnx / onnx-fp32 after `policytag export-onnx`
    api_token: Optional[str] = None  # POLICYTAG_API_TOKEN
    # Label Studio sends the token as HTTP Basic password (`policytag studio connect-backend`).
    # Opt-out, not recommended: leaves the protocol routes (/setup, /predict, /webhook) open.
    ml_backend_open: bool = False  # POLICYTAG_ML_BACKEND_OPEN=1
    max_body_bytes: int = 2_000_000
    max_paragraphs: int = 500
    max_chars: int = 5_000
    batch_wait_ms: float = 10.0
    max_batch: int = 64
    # Background retraining on Label Studio webhooks (off unless min_new_annotations > 0).
    min_new_annotations: int = 0
    retrain_base_model: Optional[str] = None  # None: retrain the TF-IDF baseline
    label_studio_url: Optional[str] = None
    label_studio_api_key: Optional[str] = None

    @classmethod
    def from_env(cls, model_dir: Path, **overrides) -> "Settings":
        env = os.environ
        values = dict(
            api_token=env.get("POLICYTAG_API_TOKEN") or None,
            ml_backend_open=env.get("POLICYTAG_ML_BACKEND_OPEN", "").lower() in ("1", "true", "yes"),
            max_body_bytes=int(env.get("POLICYTAG_MAX_BODY_BYTES", 2_000_000)),
            max_paragraphs=int(env.get("POLICYTAG_MAX_PARAGRAPHS", 500)),
            max_chars=int(env.get("POLICYTAG_MAX_CHARS", 5_000)),
            min_new_annotations=int(env.get("POLICYTAG_RETRAIN_AFTER", 0)),
            retrain_base_model=env.get("POLICYTAG_RETRAIN_BASE_MODEL") or None,
            label_studio_url=env.get("LABEL_STUDIO_URL") or None,
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY") or None,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model_dir=Path(model_dir), **values)


# ---- request / response bodies ------------------------------------------------------------
class ParagraphIn(_ValidUnicode):
    model_config = ConfigDict(extra="allow")
    text: str


class TagRequest(_ValidUnicode):
    """Either one document (`text`, split into paragraphs here) or ready `paragraphs`."""

    model_config = ConfigDict(extra="forbid")
    text: Optional[str] = Field(None, description="A whole document; cut into paragraphs by the server.")
    paragraphs: Optional[list[Union[str, ParagraphIn]]] = Field(None, description="Paragraphs to tag as they are.")
    metadata: Optional[dict[str, Any]] = Field(None, description="Document metadata (title, issuer, date, level…).")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v):
        if v is not None and not v.strip():
            raise ValueError("text is empty")
        return v


class LSPredictRequest(_ValidUnicode):
    """What Label Studio sends to an ML backend's /predict (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")
    tasks: list[dict[str, Any]]


class LSWebhook(_ValidUnicode):
    model_config = ConfigDict(extra="allow")
    action: Optional[str] = None
    project: Optional[dict[str, Any]] = None


class TaggedParagraph(BaseModel):
    index: int
    text: str
    is_heading: bool = False
    labels: dict[str, list[str]]
    groups: dict[str, list[str]]
    probabilities: dict[str, float]


class TagResponse(BaseModel):
    model_version: str
    schema_name: str
    schema_version: str
    metadata: dict[str, Any] = {}
    paragraphs: list[TaggedParagraph]


# ---- micro-batching ---------------------------------------------------------------------------
@dataclass
class _Job:
    texts: list[str]
    titles: list  # each paragraph's document title (model context), None where unknown
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Collects paragraphs from concurrent requests and tags them in shared batches, one
    batch at a time in a worker thread (the event loop never blocks on the model)."""

    def __init__(self, get_tagger, wait_ms: float, max_batch: int):
        self.get_tagger, self.wait, self.max_batch = get_tagger, wait_ms / 1000, max_batch
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def probabilities(self, texts: list[str], titles: list | None = None) -> tuple[np.ndarray, Tagger]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(texts, list(titles) if titles is not None else [None] * len(texts), future))
        return await future

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0].texts)
            deadline = time.perf_counter() + self.wait
            while size < self.max_batch:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                jobs.append(job)
                size += len(job.texts)
            tagger = self.get_tagger()  # one model for the whole batch, even during a swap
            jobs = [j for j in jobs if not j.future.done()]  # callers that went away
            if not jobs:
                continue
            texts = [t for j in jobs for t in j.texts]
            titles = [t for j in jobs for t in j.titles]
            try:
                probs = await asyncio.to_thread(tagger.predict_proba, texts, titles)
            except Exception as exc:
                if len(jobs) == 1:
                    self._fail(jobs[0], exc)
                    continue
                # Isolate: one request's input must not fail the others batched with it.
                log.warning("a batch of %d requests failed (%s: %s); retrying them one by one",
                            len(jobs), type(exc).__name__, exc)
                for j in jobs:
                    try:
                        own = await asyncio.to_thread(tagger.predict_proba, j.texts, j.titles)
                    except Exception as job_exc:
                        self._fail(j, job_exc)
                    else:
                        if not j.future.done():
                            j.future.set_result((own, tagger))
                continue
            start = 0
            for j in jobs:
                if not j.future.done():
                    j.future.set_result((probs[start:start + len(j.texts)], tagger))
                start += len(j.texts)

    @staticmethod
    def _fail(job: _Job, exc: Exception) -> None:
        log.error("tagging failed for one request (%d paragraphs): %s: %s", len(job.texts), type(exc).__name__, exc)
        if not job.future.done():
            job.future.set_exception(exc)


# ---- the app ------------------------------------------------------------------------------------
OPEN_PATHS = {"/healthz", "/readyz", "/health"}
ML_BACKEND_PATHS = {"/setup", "/predict", "/webhook"}


def _header_bytes(value: str) -> bytes:
    """The header's bytes as they came over the wire (ASGI servers decode them as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _authorised(header: str | None, token: str) -> bool:
    """Bearer <token>, or HTTP Basic with the token as password (what Label Studio's ML
    backend connection can send). Compared as bytes in constant time, so any header, ASCII
    or not, is simply right or wrong (hmac.compare_digest rejects non-ASCII str)."""
    if not header:
        return False
    expected = token.encode("utf-8")
    raw = _header_bytes(header)
    scheme, _, value = raw.partition(b" ")
    if scheme.lower() == b"bearer":
        return hmac.compare_digest(value.strip(), expected)
    if scheme.lower() == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (ValueError, TypeError):
            return False
        _, _, password = decoded.partition(b":")
        return hmac.compare_digest(password, expected)
    return False


def _docs_page(spec: dict) -> str:
    """The API reference as one self-contained HTML page (no scripts, no CDN): works offline."""
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>policytag API</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "pre{background:#f4f4f4;padding:.6em;overflow:auto}code{background:#f4f4f4}"
             "h3{margin-bottom:.2em}.m{font-weight:bold;text-transform:uppercase}</style></head><body>",
             f"<h1>{e(spec.get('info', {}).get('title', 'API'))} {e(str(spec.get('info', {}).get('version', '')))}</h1>",
             f"<p>{e(spec.get('info', {}).get('description', ''))}</p>",
             "<p>Machine-readable: <a href='openapi.json'>openapi.json</a>. Send "
             "<code>Authorization: Bearer &lt;POLICYTAG_API_TOKEN&gt;</code> when the server has a token.</p>"]
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            parts.append(f"<h3><span class='m'>{e(method)}</span> <code>{e(path)}</code></h3>")
            if op.get("summary"):
                parts.append(f"<p>{e(op['summary'])}</p>")
            if op.get("description"):
                parts.append(f"<p>{e(op['description'])}</p>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                parts.append(f"<p>Request body:</p><pre>{e(json.dumps(body, ensure_ascii=False, indent=1))}</pre>")
            codes = ", ".join(f"{e(str(c))} {e(r.get('description', ''))}" for c, r in op.get("responses", {}).items())
            parts.append(f"<p>Responses: {codes}</p>")
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        parts.append("<h2>Schemas</h2>")
        for name, schema in schemas.items():
            parts.append(f"<h3 id='{e(name)}'>{e(name)}</h3><pre>{e(json.dumps(schema, ensure_ascii=False, indent=1))}</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def create_app(settings: Settings, tagger: Tagger | None = None) -> FastAPI:
    """`tagger`: an already loaded model (the CLI loads it first to report a damaged model
    directory in one line); otherwise it is loaded at start-up."""
    state: dict[str, Any] = {"tagger": None, "new_annotations": 0, "retraining": False, "retrains": 0, "last_error": None}

    def current() -> Tagger:
        return state["tagger"]

    batcher = MicroBatcher(current, settings.batch_wait_ms, settings.max_batch)

    async def lifespan(app: FastAPI):
        state["tagger"] = tagger or await asyncio.to_thread(load_model, settings.model_dir, None, settings.backend)
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="policytag", version="1", lifespan=lifespan, default_response_class=SafeJSONResponse,
                  docs_url=None, redoc_url=None,  # /docs is served below without a CDN
                  description="Tags paragraphs of Chinese health-policy documents with policy tools, stakeholders and "
                              "orientations; also a Label Studio ML backend (/health, /setup, /predict, /webhook).")
    app.state.settings, app.state.model_state = settings, state

    @app.middleware("http")
    async def guard(request: Request, call_next):
        open_paths = OPEN_PATHS | web.OPEN_PATHS | (ML_BACKEND_PATHS if settings.ml_backend_open else set())
        if settings.api_token and request.url.path not in open_paths and not _authorised(
                request.headers.get("authorization"), settings.api_token):
            return SafeJSONResponse({"detail": "missing or wrong token: send 'Authorization: Bearer <POLICYTAG_API_TOKEN>'"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return SafeJSONResponse({"detail": f"request body of {length} bytes exceeds the limit of {settings.max_body_bytes} "
                                           "bytes (POLICYTAG_MAX_BODY_BYTES)"}, status_code=413)
        if request.method == "POST" and not length:
            body = await request.body()  # chunked upload: measure what arrived
            if len(body) > settings.max_body_bytes:
                return SafeJSONResponse({"detail": f"request body exceeds the limit of {settings.max_body_bytes} bytes"},
                                    status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return SafeJSONResponse({"detail": "invalid request body", "errors": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):  # last resort: a clear body, never a bare traceback
        return SafeJSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    app.include_router(web.router)  # the analysts' page at / (serve/web.py)

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    async def docs():
        return HTMLResponse(_docs_page(app.openapi()))

    @app.get("/healthz", tags=["health"])
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz():
        tagger = current()
        if tagger is None:
            return SafeJSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "model_version": tagger.version}

    @app.get("/v1/schema", tags=["api"])
    async def schema():
        tagger = current()
        return {**tagger.book.to_dict(), "model_version": tagger.version}

    def _check_limits(texts: list[str]) -> None:
        if len(texts) > settings.max_paragraphs:
            raise HTTPException(413, f"{len(texts)} paragraphs exceed the limit of {settings.max_paragraphs} per request "
                                     "(POLICYTAG_MAX_PARAGRAPHS)")
        for i, t in enumerate(texts):
            if len(t) > settings.max_chars:
                raise HTTPException(422, f"paragraph {i} has {len(t)} characters, over the limit of {settings.max_chars} "
                                         "(POLICYTAG_MAX_CHARS)")

    @app.post("/v1/tag", response_model=TagResponse, tags=["api"],
              responses={401: {"description": "token missing"}, 413: {"description": "over a size limit"},
                         422: {"description": "invalid body"}})
    async def tag(body: TagRequest):
        if (body.text is None) == (body.paragraphs is None):
            raise HTTPException(422, "send exactly one of 'text' (a document) or 'paragraphs' (a list)")
        metadata = dict(body.metadata or {})
        if body.text is not None:
            spans = segment(body.text)
            texts = [body.text[s.start:s.end] for s in spans]
            headings = [s.is_heading for s in spans]
            metadata = merge_metadata(parse_metadata(texts), metadata)  # the same merge as `policytag ingest`
        else:
            texts = [p if isinstance(p, str) else p.text for p in body.paragraphs]
            headings = [False] * len(texts)
        if not texts:
            raise HTTPException(422, "no paragraphs to tag")
        empty = [i for i, t in enumerate(texts) if not has_visible_text(t)]
        if empty:
            raise HTTPException(422, f"paragraph(s) {empty[:10]} are empty (only whitespace, control or zero-width "
                                     "characters)")
        _check_limits(texts)
        probs, tagger = await batcher.probabilities(texts, [metadata.get("title")] * len(texts))
        out = []
        for i, (text, heading, row) in enumerate(zip(texts, headings, probs)):
            pred = tagger.decode(row)
            out.append(TaggedParagraph(index=i, text=text, is_heading=heading, labels=pred.labels, groups=pred.groups,
                                       probabilities={k: round(v, 5) for k, v in pred.probs.items()}))
        return TagResponse(model_version=tagger.version, schema_name=tagger.book.name,
                           schema_version=tagger.book.version, metadata=metadata, paragraphs=out)

    # ---- Label Studio ML backend protocol -------------------------------------------------------
    @app.get("/health", tags=["label-studio"])
    async def ls_health():
        tagger = current()
        return {"status": "UP" if tagger else "LOADING", "model_class": "policytag",
                "model_version": tagger.version if tagger else None}

    @app.post("/setup", tags=["label-studio"])
    async def ls_setup(body: Optional[dict[str, Any]] = None):
        return {"model_version": current().version}

    @app.post("/predict", tags=["label-studio"])
    async def ls_predict(body: LSPredictRequest):
        from policytag.labels.studio import confidence, prediction_result

        texts, titles = [], []
        for i, t in enumerate(body.tasks):
            data = t.get("data")
            text = data.get("text") if isinstance(data, dict) else None
            if isinstance(data, dict) and isinstance(data.get("model_text"), str) and data["model_text"].strip():
                text = data["model_text"]  # `studio push`: the normalised text, beside the document's own
            if not isinstance(text, str):
                raise HTTPException(422, f"task {i} has no data.text")
            texts.append(text[: settings.max_chars])
            titles.append(data.get("title") if isinstance(data.get("title"), str) else None)
        if len(texts) > settings.max_paragraphs:
            raise HTTPException(413, f"{len(texts)} tasks exceed the limit of {settings.max_paragraphs} per request")
        if not texts:
            return {"results": [], "model_version": current().version}
        probs, tagger = await batcher.probabilities(texts, titles)
        results = []
        for row in probs:
            pred = tagger.decode(row)
            results.append({"result": prediction_result(tagger.book, pred.labels),
                            "score": round(confidence(row, tagger.thresholds), 4), "model_version": tagger.version})
        return {"results": results, "model_version": tagger.version}

    @app.post("/webhook", tags=["label-studio"])
    async def ls_webhook(body: LSWebhook):
        action = body.action
        if action not in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
            return {"status": "ignored", "action": action}
        state["new_annotations"] += 1
        project = (body.project or {}).get("id")
        started = False
        if (settings.min_new_annotations and state["new_annotations"] >= settings.min_new_annotations
                and not state["retraining"] and project is not None):
            state["retraining"], state["new_annotations"] = True, 0
            threading.Thread(target=_retrain, args=(project,), daemon=True).start()
            started = True
        return {"status": "ok", "new_annotations": state["new_annotations"], "retraining": state["retraining"],
                "retrain_started": started, "model_version": current().version}

    @app.get("/v1/model", tags=["api"])
    async def model_info():
        tagger = current()
        return {"model_version": tagger.version, "kind": tagger.kind, "retraining": state["retraining"],
                "retrains": state["retrains"], "last_error": state["last_error"]}

    def _retrain(project_id: int) -> None:
        """Export the project and run `policytag train` on it in a child process (the server
        keeps answering, and training's memory and threads leave with the process); then load
        the new model with the runtime being served, swap it in, and remove the model this
        server had retrained before (never the one it was started with)."""
        import subprocess
        import sys
        import tempfile

        try:
            from policytag.labels.studio import connect, export_project

            tagger = current()
            ls = connect(settings.label_studio_url or "", settings.label_studio_api_key or "")
            tasks = export_project(ls, project_id)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = settings.model_dir.parent / f"{settings.model_dir.name}-retrained-{stamp}"
            with tempfile.TemporaryDirectory(prefix="policytag-retrain-") as work:
                export = Path(work) / "export.json"
                export.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
                cmd = [sys.executable, "-m", "policytag", "train", "--data", str(export), "--out", str(out),
                       "--schema", str(tagger.path / "codebook.yaml")]
                cmd += (["--base-model", settings.retrain_base_model] if settings.retrain_base_model
                        else ["--model", "tfidf"])
                log.info("retraining on %d tasks of Label Studio project %s: %s", len(tasks), project_id, " ".join(cmd))
                done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TERM": "dumb"})
            for line in (done.stderr + done.stdout).splitlines():
                if line.strip():
                    log.info("retrain: %s", line.rstrip())
            if done.returncode != 0:
                tail = next((l for l in reversed(done.stderr.splitlines()) if l.strip()), f"exit code {done.returncode}")
                raise RuntimeError(f"policytag train failed: {tail.strip()}")
            if settings.backend != "torch" and (out / "encoder").exists():
                from policytag.models.onnx import export_onnx

                export_onnx(load_model(out, "cpu"))  # keep serving the runtime the server was started with
            new = load_model(out, None, settings.backend)
            previous = state.get("retrained_dir")
            state["tagger"] = new  # one reference assignment: requests see the old or the new model, never a mix
            state["retrained_dir"] = out
            state["retrains"] += 1
            state["last_error"] = None
            if previous and previous != settings.model_dir:
                import shutil

                shutil.rmtree(previous, ignore_errors=True)  # superseded, and made by this server
            log.info("serving retrained model %s from %s", new.version, out)
        except Exception as exc:
            state["last_error"] = f"{type(exc).__name__}: {exc}"
            log.error("retrain failed: %s", state["last_error"])
        finally:
            state["retraining"] = False

    return app
