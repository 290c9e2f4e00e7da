"""Fine-tuning a pretrained encoder (and the TF-IDF baseline) into a model directory.

The directory is built under a temporary name and renamed into place when complete, so a
crash or Ctrl-C never leaves a half-written model. Training state is checkpointed beside it
(`<out>.checkpoint/`) so `--resume` continues an interrupted run.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from labels.export import ParseReport
from labels.schema import Codebook
from models.tagger import CONFIG_FILE, EncoderClassifier, Tagger, length_batches, pick_device, set_cpu_threads

from .metrics import evaluate, tune_thresholds

err = Console(stderr=True)


@dataclass
class TrainConfig:
    base_model: str = ""
    epochs: int = 6
    lr: float = 1e-4
    head_lr: float = 2e-3
    batch_size: int = 16
    max_length: int = 256
    seed: int = 13
    dev_size: float = 0.2
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    freeze_embeddings: bool = True
    max_pos_weight: float = 10.0
    checkpoint_every: int = 50
    baseline: str | None = None  # "tfidf" trains the baseline instead
    data: list[str] = field(default_factory=list)
    schema: str = ""


class Interrupted(Exception):
    """Training stopped by the user after a checkpoint was written."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _fingerprint(texts: list[str], y: np.ndarray, cfg: TrainConfig) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
    h.update(y.tobytes())
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("checkpoint_every", "epochs")}
    h.update(json.dumps(keep, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _pos_weight(y: np.ndarray, cap: float) -> torch.Tensor:
    """Rare labels weigh more: sqrt of the negative/positive ratio, capped."""
    pos = y.sum(0)
    ratio = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.clip(np.sqrt(ratio), 1.0, cap), dtype=torch.float32)


def _write_model_dir(out: Path, fill) -> None:
    """Build the model directory in a temp dir beside `out`, then swap it in."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fill(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _common_files(d: Path, book: Codebook, cfg: TrainConfig, kind: str, thresholds: np.ndarray,
                  metrics: dict, card: str, extra: dict) -> None:
    flat = book.flat_labels
    version = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    (d / CONFIG_FILE).write_text(json.dumps({
        "kind": kind, "labels": flat, "schema": book.name, "schema_version": book.version,
        "max_length": cfg.max_length, "model_version": version, **extra}, ensure_ascii=False, indent=2), encoding="utf-8")
    shutil.copy(book.path, d / "codebook.yaml")
    (d / "thresholds.json").write_text(json.dumps({l: float(t) for (_, l), t in zip(flat, thresholds)}, indent=2), encoding="utf-8")
    (d / "training_config.json").write_text(json.dumps(asdict(cfg), ensure_ascii=False, indent=2), encoding="utf-8")
    (d / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    (d / "MODEL_CARD.md").write_text(card.replace("{model_version}", version), encoding="utf-8")


def model_card(book: Codebook, cfg: TrainConfig, kind: str, y: np.ndarray, train_idx, dev_idx, metrics: dict,
               report: ParseReport | None, seconds: float, licence: str, notes: list[str]) -> str:
    flat = book.flat_labels
    lines = ["# policytag model `{model_version}`", "",
             f"Multi-label tagger for the **{book.name}** codebook (v{book.version}): "
             f"{len(flat)} labels over {', '.join(book.dimension_ids)}.", ""]
    if kind == "transformer":
        lines += [f"- Base model: `{cfg.base_model}` — licence: {licence}",
                  "- Architecture: encoder → mean pooling over tokens → dropout → one linear layer over all labels; "
                  "sigmoid per label (BCE with logits, rare labels up-weighted by sqrt(neg/pos), capped at "
                  f"{cfg.max_pos_weight:g}).",
                  f"- Long paragraphs: truncated to the first {cfg.max_length} tokens "
                  "(the opening of a policy paragraph states its measure).",
                  f"- Training: {cfg.epochs} epochs, lr {cfg.lr:g} (head {cfg.head_lr:g}), batch {cfg.batch_size} "
                  f"length-sorted, embeddings {'frozen' if cfg.freeze_embeddings else 'trained'}, seed {cfg.seed}."]
    else:
        lines += ["- Baseline: TF-IDF over character 1–3-grams + one balanced logistic regression per label."]
    lines += ["- Tool groups are derived from predicted sub-tools, never predicted on their own.",
              "- Decision thresholds: per label, tuned for F1 on the dev split (`thresholds.json`).",
              f"- Data: {', '.join(cfg.data)} → {len(y)} paragraphs; split by document, iterative "
              f"multi-label stratification: {len(train_idx)} train / {len(dev_idx)} dev.",
              f"- Training time: {seconds:.0f} s.", ""]
    if report is not None:
        lines += ["## Data report", "", *[f"- {l}" for l in report.lines()], ""]
    if notes:
        lines += ["## Warnings", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Label counts", "", "| dimension | label | train | dev |", "|---|---|---:|---:|"]
    for j, (dim, label) in enumerate(flat):
        lines.append(f"| {dim} | {label} | {int(y[train_idx, j].sum())} | {int(y[dev_idx, j].sum())} |")
    lines += ["", "## Dev metrics", "", "| dimension | micro-F1 | macro-F1 | micro-P | micro-R |", "|---|---:|---:|---:|---:|"]
    for dim, m in metrics["dimensions"].items():
        lines.append(f"| {dim} | {m['micro_f1']:.3f} | {m['macro_f1']:.3f} | {m['micro_precision']:.3f} | {m['micro_recall']:.3f} |")
    lines += ["", f"Mean per-label Cohen's kappa vs. the reference: {metrics['kappa_mean']:.3f} "
              "(two human coders in the 6D paper: 0.746).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
def train_baseline(texts, y, train_idx, dev_idx, book: Codebook, cfg: TrainConfig, out: Path,
                   report: ParseReport | None = None, notes: list[str] = ()) -> dict:
    import joblib

    from models.baseline import TfidfBaseline

    start = time.time()
    err.print(f"training TF-IDF baseline on {len(train_idx)} paragraphs…")
    model = TfidfBaseline(seed=cfg.seed).fit([texts[i] for i in train_idx], y[train_idx])
    dev_probs = model.predict_proba([texts[i] for i in dev_idx])
    thresholds = tune_thresholds(y[dev_idx], dev_probs)
    metrics = evaluate(book, book.flat_labels, y[dev_idx], dev_probs >= thresholds, model=str(out))
    seconds = time.time() - start
    card = model_card(book, cfg, "tfidf", y, train_idx, dev_idx, metrics, report, seconds, "", list(notes))

    def fill(d: Path) -> None:
        joblib.dump(model, d / "baseline.joblib")
        _common_files(d, book, cfg, "tfidf", thresholds, metrics, card, {"train_seconds": seconds})

    _write_model_dir(out, fill)
    return {"metrics": metrics, "seconds": seconds}


def train_transformer(texts, y, train_idx, dev_idx, book: Codebook, cfg: TrainConfig, out: Path,
                      resume: bool = False, report: ParseReport | None = None, notes: list[str] = (),
                      device: str | None = None) -> dict:
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    out = Path(out)
    ckpt_dir = out.with_name(out.name + ".checkpoint")
    fingerprint = _fingerprint(texts, y, cfg)
    seed_everything(cfg.seed)
    dev = pick_device(device)
    if dev.type == "cpu":
        set_cpu_threads()
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    encoder = AutoModel.from_pretrained(cfg.base_model)
    model = EncoderClassifier(encoder, y.shape[1]).to(dev)
    if cfg.freeze_embeddings:
        for p in model.encoder.get_input_embeddings().parameters():
            p.requires_grad = False
    head_params = list(model.head.parameters())
    enc_params = [p for n, p in model.encoder.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": enc_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.head_lr}],
                                  weight_decay=cfg.weight_decay)
    full_lengths = [len(ids) for ids in tokenizer([texts[i] for i in train_idx])["input_ids"]]
    lengths = [min(n, cfg.max_length) for n in full_lengths]
    n_truncated = sum(n > cfg.max_length for n in full_lengths)
    if n_truncated:
        err.print(f"[yellow]note[/yellow] {n_truncated} training paragraph(s) longer than {cfg.max_length} tokens are truncated")
    batches = length_batches(lengths, cfg.max_length * cfg.batch_size, cfg.batch_size)
    steps_per_epoch = len(batches)
    total = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_pos_weight(y[train_idx], cfg.max_pos_weight).to(dev))
    y_train = torch.tensor(y[train_idx])

    step = 0
    if resume and (ckpt_dir / "state.pt").exists():
        state = torch.load(ckpt_dir / "state.pt", map_location=dev, weights_only=False)
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"{ckpt_dir}: the checkpoint was made with other data or settings; "
                             "rerun without --resume (or delete it) to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        torch.set_rng_state(state["torch_rng"])
        err.print(f"resuming from step {step}/{total} ({ckpt_dir})")
    elif resume:
        err.print(f"[yellow]no checkpoint at {ckpt_dir}: starting from scratch[/yellow]")

    def save_checkpoint() -> None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_dir / "state.pt.tmp"
        torch.save({"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "torch_rng": torch.get_rng_state()}, tmp)
        tmp.replace(ckpt_dir / "state.pt")

    # Ctrl-C is honoured between steps, never inside one: the checkpoint written on the way
    # out is then exactly the state after a whole step, and --resume replays the rest bit for bit.
    stop = []

    def on_sigint(signum, frame):
        if stop:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop.append(signum)
        err.print("[yellow]interrupt: finishing this step and saving a checkpoint…[/yellow]")

    previous_handler = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    start = time.time()
    seen = 0
    model.train()
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=err) as bar:
            task = bar.add_task("fine-tuning", total=total, completed=step, info="")
            while step < total:
                epoch = step // steps_per_epoch
                # The batch order of each epoch depends only on (seed, epoch): resume replays it exactly.
                order = np.random.default_rng(cfg.seed + epoch).permutation(steps_per_epoch)
                for b in order[step % steps_per_epoch:]:
                    rows = batches[b]
                    batch = tokenizer([texts[train_idx[i]] for i in rows], truncation=True, max_length=cfg.max_length,
                                      padding=True, return_tensors="pt").to(dev)
                    logits = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
                    loss = loss_fn(logits, y_train[rows].to(dev))
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    seen += len(rows)
                    rate = seen / max(1e-9, time.time() - start)
                    bar.update(task, completed=step, info=f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f} {rate:.1f} ex/s")
                    if stop or step % cfg.checkpoint_every == 0 or step % steps_per_epoch == 0:
                        save_checkpoint()
                    if stop:
                        raise Interrupted(f"interrupted at step {step}/{total}; checkpoint saved in {ckpt_dir} — rerun with --resume")
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    seconds = time.time() - start
    err.print(f"fine-tuned {seen} examples in {seconds:.0f} s ({seen / max(seconds, 1e-9):.1f} examples/s)")

    model.eval()

    def fill(d: Path) -> None:
        encoder.save_pretrained(d / "encoder")
        tokenizer.save_pretrained(d / "encoder")
        save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(d / "head.safetensors"))
        # Dev probabilities from the saved files themselves: what we measure is what we ship.
        _common_files(d, book, cfg, "transformer", np.full(y.shape[1], 0.5), {}, "", {})
        tagger = Tagger.load(d, device=str(dev))
        dev_probs = tagger.predict_proba([texts[i] for i in dev_idx])
        thresholds = tune_thresholds(y[dev_idx], dev_probs)
        metrics = evaluate(book, book.flat_labels, y[dev_idx], dev_probs >= thresholds, model=str(out))
        card = model_card(book, cfg, "transformer", y, train_idx, dev_idx, metrics, report, seconds,
                          base_model_licence(cfg.base_model), list(notes))
        _common_files(d, book, cfg, "transformer", thresholds, metrics, card,
                      {"base_model": cfg.base_model, "pooling": "mean", "train_seconds": seconds,
                       "examples_per_second": seen / max(seconds, 1e-9)})
        result["metrics"] = metrics

    result: dict = {"seconds": seconds, "examples_per_second": seen / max(seconds, 1e-9)}
    _write_model_dir(out, fill)
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: the checkpoint is no longer needed
    return result


def fit(data, book: Codebook, cfg: TrainConfig, out: Path, report: ParseReport | None = None,
        resume: bool = False, device: str | None = None) -> dict:
    """Train what `cfg` asks for (the baseline or a fine-tuned encoder) on prepared data."""
    split = (data.texts, data.y, data.train_idx, data.dev_idx, book, cfg, out)
    if cfg.baseline:
        return train_baseline(*split, report, data.notes)
    return train_transformer(*split, resume, report, data.notes, device)
