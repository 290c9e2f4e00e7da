"""`fit`: the one pipeline behind `policytag train`, the service's retrain and the model card.

1. cross-validation over documents (`training.cv`): every paragraph gets a probability from
   a model that never saw its document;
2. thresholds chosen on those out-of-fold probabilities (one global threshold by default), and
   the metrics of the model card measured out of fold (never on the rows that tuned them);
3. the shipped model trained on *all* the data (`training.train`) and written atomically.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from policytag.console import err
from policytag.files import apply_umask
from policytag.labels.export import ParseReport
from policytag.labels.schema import Codebook
from policytag.models.tagger import Tagger, context_texts

from . import cv
from .card import model_card
from .metrics import choose_thresholds
from .train import Checkpoint, TrainConfig, _device, ensemble_of, train_members


def base_model_licence(base: str) -> str:
    """The licence stated in the base model's card (front matter or a License section)."""
    for name in ("MODEL_CARD.md", "README.md"):
        card = Path(base) / name
        if not card.exists():
            continue
        text = card.read_text(encoding="utf-8", errors="replace")
        m = re.search(r"^license:\s*(\S.*)$", text, re.M)
        if m:
            return m.group(1).strip()
        m = re.search(r"^#+\s*Licen[cs]e\s*\n+(.+?)(?:\n\n|\n#|$)", text, re.M | re.S)
        if m:
            return " ".join(m.group(1).split())
    return "not stated in the base model directory: check its model card before use"


def write_model_dir(out: Path, fill) -> None:
    """Build the model directory in a temp dir beside `out`, then swap it in. Only a policytag
    model directory is ever replaced (callers check `--out` first: see policytag.files)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fill(tmp)
        apply_umask(tmp)  # mkdtemp makes 0700: the model folder gets what the user's umask asks for
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fit(data, book: Codebook, cfg: TrainConfig, out: Path, report: ParseReport | None = None,
        resume: bool = False, device: str | None = None) -> dict:
    """Cross-validate (thresholds + honest metrics), train on everything, write `out`."""
    out = Path(out)
    if cfg.model != "tfidf" and not cfg.base_model:
        raise ValueError("a base model is required for the encoder (--base-model)")
    titles = context_texts(data.titles, len(data.texts))
    ckpt = Checkpoint(out.with_name(out.name + ".checkpoint"),
                      Checkpoint.fingerprint_of(data.texts, titles, data.y, cfg), resume)
    if resume and not ckpt.dir.exists():
        err.print(f"[yellow]no checkpoint at {ckpt.dir}: starting from scratch[/yellow]")
    dev = _device(device) if cfg.model != "tfidf" else None
    start = time.time()
    notes = list(data.notes)
    if cfg.title_dimensions(book) and not any(titles):  # nothing to read: the card and config say so
        notes.append(f"no document titles in the data: the TF-IDF for {', '.join(cfg.title_dimensions(book))} "
                     "reads the paragraph alone")
        err.print(f"[yellow]note[/yellow] {notes[-1]}")
        cfg = replace(cfg, tfidf_title=[])

    k, why = cv.usable_folds(data.groups, cfg.cv_folds)
    if why:
        notes.append(why)
        err.print(f"[yellow]note[/yellow] {why}")
    run = None
    learned = cfg.model == "ensemble" and cfg.tfidf_weight is None
    if k >= 2:
        run = cv.cross_validate(data, book, cfg, k, dev, ckpt, final_rows=len(data.texts))
        # the metrics learn the ensemble weight (when open) and thresholds without each scored fold
        metrics = cv.cross_fitted_metrics(book, data.y, run.mixer(cfg, data.y), run.fold, model=str(out),
                                          thresholds=cfg.thresholds)
        if learned:
            cfg = replace(cfg, tfidf_weight=cv.learn_tfidf_weight(data.y, run.probs["encoder"], run.probs["tfidf"]))
            err.print(f"ensemble weight learned out of fold: encoder {1 - cfg.tfidf_weight:g} / TF-IDF {cfg.tfidf_weight:g}")
        probs = run.combined(cfg)
        thresholds = choose_thresholds(data.y, probs, cfg.thresholds)
        if len(data.texts) < 50:
            notes.append(f"the out-of-fold estimate rests on {len(data.texts)} paragraphs only: treat it as a rough guide")
    else:
        thresholds = np.full(data.y.shape[1], 0.5, dtype=np.float32)
        metrics = None
        if learned:
            cfg = replace(cfg, tfidf_weight=0.5)  # nothing out of fold to learn it from
            learned = False

    members, stats = train_members(data.texts, titles, data.y, cfg, book, dev, ckpt, "final",
                                   "fine-tuning (all data)")
    seconds = time.time() - start
    kind = cfg.model if cfg.model != "encoder" else "transformer"
    config = {"kind": kind, "labels": book.flat_labels, "schema": book.name, "schema_version": book.version,
              "max_length": cfg.max_length, "long_paragraphs": cfg.long_paragraphs, "context": cfg.context,
              "model_version": f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}", "train_seconds": round(seconds, 1)}
    if getattr(members.get("tfidf"), "title_pipeline", None) is not None:
        config["tfidf_title"] = cfg.title_dimensions(book)  # these labels' TF-IDF reads the title too

    if cfg.model == "ensemble":
        config["members"] = [{"kind": n if n != "encoder" else "transformer", "weight": w}
                             for n, w in zip(cfg.members, cfg.weights)]
    if cfg.model != "tfidf":
        config.update(base_model=cfg.base_model, pooling=cfg.pooling,
                      examples_per_second=round(stats.get("examples_per_second", 0.0), 1))
    tagger = Tagger(ensemble_of(members, cfg), book, config, thresholds)
    licence = base_model_licence(cfg.base_model) if cfg.model != "tfidf" else ""
    card = model_card(book, cfg, data, metrics, run, report, seconds, licence, notes, stats, learned)

    def fill(d: Path) -> None:
        tagger.save(d)
        (d / "training_config.json").write_text(json.dumps(asdict(cfg), ensure_ascii=False, indent=2), encoding="utf-8")
        (d / "metrics.json").write_text(json.dumps(metrics or {"note": notes[-1] if notes else "no estimate"},
                                                   ensure_ascii=False, indent=2), encoding="utf-8")
        (d / "MODEL_CARD.md").write_text(card.replace("{model_version}", config["model_version"]), encoding="utf-8")

    write_model_dir(out, fill)
    ckpt.clear()  # finished: the checkpoint is no longer needed
    # after **stats: its "seconds" is the last fine-tuning alone, not the whole run
    return {**stats, "metrics": metrics, "seconds": seconds, "notes": notes, "folds": k}
