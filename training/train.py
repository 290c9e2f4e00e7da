"""Training the members of a tagger: the recipe (`TrainConfig`, every hyperparameter in one
place), the fine-tuned encoder and the TF-IDF model, and the checkpoints that make a run
resumable. `training.cv` runs these over document folds; `training.fit` puts it all together.

Each training run (a fold, or the final model) is a *stage*; its state is checkpointed in
`<out>.checkpoint/` so Ctrl-C stops cleanly and `--resume` continues bit for bit, and a
finished fold's out-of-fold probabilities are kept there so a resumed run skips it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from policytag.console import err, progress
from policytag.labels.schema import Codebook
from policytag.models.tagger import (EncoderBackend, EnsembleBackend, TfidfBackend, encode, encoder_classifier,
                                     length_batches, pick_device, set_cpu_threads, tfidf_input, title_columns,
                                     transformer_layers)


MODELS = ("ensemble", "encoder", "tfidf")
CONTEXTS = ("title", "none")
LONG_PARAGRAPHS = ("windows", "truncate")
PRECISIONS = ("auto", "fp32", "bf16")
LOSSES = ("bce", "asymmetric")


@dataclass
class TrainConfig:
    """Every training hyperparameter, defined once: the CLI, the service's retrain and the
    benchmark read their defaults from here. Defaults were chosen by the cross-validated
    comparison in benchmarks/quality.py (see README "Quality")."""

    base_model: str = ""
    model: str = "ensemble"  # ensemble (encoder + tfidf) | encoder | tfidf
    context: str = "none"  # none | title: the document title as context (sentence pair)
    # folds for the out-of-fold threshold and metrics (0: none). 3, not 5: the shipped model is
    # trained on all data either way and the global threshold moves at most one step (IHMS,
    # previous default: 0.55 from 3 folds, 0.6 from 5), at about half the cross-validation time;
    # the card's estimate is a little pessimistic
    cv_folds: int = 3
    epochs: int = 6
    # 2e-4 for m3e-small (4 layers): the encoder alone beat 1e-4 in 3-4 of 5 folds on every figure
    # (the ensemble by less than one sd; README Quality);
    # a 12-layer base model usually wants far less (about 3e-5; not measured here)
    lr: float = 2e-4
    head_lr: float = 2e-3
    batch_size: int = 16
    max_length: int = 256
    # a paragraph longer than max_length tokens, when tagged: read in overlapping windows (each
    # label's highest probability counts) or truncated. Training reads the first window either way.
    long_paragraphs: str = "windows"
    seed: int = 13
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    # the word embeddings are fine-tuned too (--no-freeze-embeddings): the encoder alone gained in
    # every fold on tools micro-F1 (IHMS and medsec), the ensemble by less than one sd, at 6-14 %
    # more training time (README Quality)
    freeze_embeddings: bool = False
    # the lowest N transformer layers are frozen too, and their output is computed once per
    # paragraph instead of once per epoch: each step runs only the layers above
    frozen_layers: int = 0
    max_pos_weight: float = 10.0
    # bce: binary cross-entropy, rare labels up-weighted (max_pos_weight); asymmetric: Ridnik et
    # al.'s asymmetric loss (ICCV 2021) for multi-label data with many easy negatives: a negative
    # counts by p^4 once its probability is over 0.05, a positive in full; no up-weighting
    loss: str = "bce"
    # codebook: each head row starts at the encoder's embedding of the label's name and cue words
    # (ensemble vs a random head: medsec +6 tools macro-F1; IHMS tools within noise, orientation better)
    label_init: str = "codebook"  # codebook | random
    # mean: one mean-pooled vector for every label; label-attention: each label its own weighted
    # mean of the tokens (models.tagger.encoder_classifier)
    pooling: str = "mean"
    # fine-tuning arithmetic: bf16 mixed precision (fp32 weights, bf16 matrix products) or fp32;
    # auto: bf16 where the hardware does it natively (resolve_precision). Same quality on medsec.
    precision: str = "auto"
    # dimensions whose labels the TF-IDF member takes from the document title + paragraph (a second
    # TF-IDF model for them): IHMS orientation micro-F1 +1.7 in the ensemble, higher in every fold,
    # nothing else moved (README Quality). Ids the codebook does not have are ignored here, so the
    # default does nothing on medsec (no orientation; its objectives did not gain); the CLI refuses
    # them. Unused with --context title (TF-IDF reads the title for every label then)
    tfidf_title: list[str] = field(default_factory=lambda: ["orientation"])
    # share of the TF-IDF member in the ensemble average; None: learned out of fold (0.5 without CV),
    # which lost to the plain mean on both codebooks (README "Quality")
    tfidf_weight: float | None = 0.5
    # decision thresholds from the out-of-fold probabilities: global (one for all labels),
    # per-label (each shrunk toward the global one) or flat (0.5). Per-label ones did not
    # transfer to unseen documents on either codebook (README "Quality").
    thresholds: str = "global"
    checkpoint_every: int = 50
    data: list[str] = field(default_factory=list)
    schema: str = ""

    @property
    def members(self) -> list[str]:
        return {"ensemble": ["encoder", "tfidf"], "encoder": ["encoder"], "tfidf": ["tfidf"]}[self.model]

    def title_dimensions(self, book: Codebook) -> list[str]:
        """The codebook's dimensions whose TF-IDF labels come from title + paragraph."""
        if "tfidf" not in self.members or self.context == "title":
            return []
        return [d for d in book.dimension_ids if d in self.tfidf_title]

    @property
    def weights(self) -> list[float]:
        w = 0.5 if self.tfidf_weight is None else self.tfidf_weight
        return {"ensemble": [1 - w, w]}.get(self.model, [1.0])

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Interrupted(Exception):
    """Training stopped by the user after a checkpoint was written."""


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pos_weight(y: np.ndarray, cap: float):
    """Rare labels weigh more: sqrt of the negative/positive ratio, capped."""
    import torch

    pos = y.sum(0)
    ratio = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.clip(np.sqrt(ratio), 1.0, cap), dtype=torch.float32)


def asymmetric_loss(gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05):
    """Ridnik et al., "Asymmetric Loss For Multi-Label Classification" (ICCV 2021), the setting
    the paper recommends: negatives are focused (weight p_m^4) and shifted (p_m = max(p - 0.05, 0),
    so a negative below 0.05 costs nothing), positives are plain log-likelihood. Mean over every
    (paragraph, label) as BCEWithLogitsLoss, so learning rates keep their meaning."""
    import torch
    import torch.nn.functional as F

    def loss(logits, targets):
        p = torch.sigmoid(logits)
        positive = targets * (1 - p) ** gamma_pos * F.logsigmoid(logits)
        p_m = (p - clip).clamp(min=0)
        negative = (1 - targets) * p_m ** gamma_neg * torch.log((1 - p_m).clamp(min=1e-8))
        return -(positive + negative).mean()

    return loss


def loss_function(cfg: TrainConfig, y: np.ndarray, device):
    import torch

    if cfg.loss == "asymmetric":
        return asymmetric_loss()
    if cfg.loss != "bce":
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {cfg.loss!r}")
    return torch.nn.BCEWithLogitsLoss(pos_weight=_pos_weight(y, cfg.max_pos_weight).to(device))


# -- checkpoints -----------------------------------------------------------------------------
class Checkpoint:
    """`<out>.checkpoint/`: step state of the running stage and the results of finished folds,
    valid only for the same data and settings (a fingerprint)."""

    def __init__(self, directory: Path, fingerprint: str, resume: bool):
        self.dir, self.fingerprint, self.resume = Path(directory), fingerprint, resume

    @staticmethod
    def fingerprint_of(texts: list[str], contexts: list[str] | None, y: np.ndarray, cfg: TrainConfig) -> str:
        h = hashlib.sha256()
        for t in texts + (contexts or []):
            h.update(t.encode("utf-8", "surrogatepass"))
        h.update(y.tobytes())
        keep = {k: v for k, v in asdict(cfg).items() if k not in ("checkpoint_every", "data")}
        h.update(json.dumps(keep, sort_keys=True).encode())
        return h.hexdigest()[:16]

    def load_state(self, stage: str):
        import torch

        path = self.dir / f"{stage}.pt"
        if not (self.resume and path.exists()):
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(f"{self.dir}: the checkpoint was made with other data or settings; "
                             "rerun without --resume (or delete it) to start over")
        return state

    def save_state(self, stage: str, state: dict) -> None:
        import torch

        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f"{stage}.pt.tmp"
        torch.save({"fingerprint": self.fingerprint, **state}, tmp)
        tmp.replace(self.dir / f"{stage}.pt")

    def load_fold(self, fold: int) -> dict[str, np.ndarray] | None:
        path = self.dir / f"fold-{fold}.npz"
        if not (self.resume and path.exists()):
            return None
        saved = np.load(path)
        if str(saved["fingerprint"]) != self.fingerprint:
            raise ValueError(f"{self.dir}: the checkpoint was made with other data or settings; "
                             "rerun without --resume (or delete it) to start over")
        return {k: saved[k] for k in saved.files if k != "fingerprint"}

    def save_fold(self, fold: int, probs: dict[str, np.ndarray]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f"fold-{fold}.tmp.npz"
        np.savez(tmp, fingerprint=self.fingerprint, **probs)
        tmp.replace(self.dir / f"fold-{fold}.npz")
        (self.dir / f"fold-{fold}.pt").unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# -- the encoder -----------------------------------------------------------------------------
def build_encoder(cfg: TrainConfig, book: Codebook, n_labels: int, device):
    """Tokenizer + encoder + head, the head optionally started from the codebook."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    model = encoder_classifier(AutoModel.from_pretrained(cfg.base_model), n_labels, pooling=cfg.pooling)
    if cfg.label_init == "codebook":
        init_head_from_codebook(model, tokenizer, book, cfg.max_length)
    if cfg.freeze_embeddings:
        for p in model.encoder.get_input_embeddings().parameters():
            p.requires_grad = False
    if cfg.frozen_layers:
        layers = transformer_layers(model.encoder)
        if not 0 < cfg.frozen_layers < len(layers):
            raise ValueError(f"frozen layers must be fewer than the base model's {len(layers)} layers, "
                             f"not {cfg.frozen_layers}")
        # everything below the first trained layer: embeddings (all of them) and the lowest layers
        for p in list(model.encoder.embeddings.parameters()) + list(layers[:cfg.frozen_layers].parameters()):
            p.requires_grad = False
    return tokenizer, model.to(device)


def init_head_from_codebook(model, tokenizer, book: Codebook, max_length: int) -> None:
    """Each label's head row starts as the (centred, unit) embedding of its Chinese name and
    cue words, so a label seen in few paragraphs starts from what the codebook says it is."""
    import torch

    texts = [f"{l.zh}：{'、'.join(l.cues)}" for d in book.dimensions for l in d.labels]
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = model.pooled(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        emb = emb - emb.mean(0, keepdim=True)
        emb = emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-6)
        model.head.weight.copy_(emb * model.head.weight.norm(dim=1, keepdim=True).mean())


def _optimizer(model, cfg: TrainConfig, total_steps: int):
    """AdamW over the trainable encoder weights and the head (its own, larger learning rate), with
    linear warm-up and decay."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    head = list(model.head.parameters()) + ([model.queries] if model.queries is not None else [])
    # fused: one kernel per step instead of a dozen passes over the 24M weights; the same
    # arithmetic (probabilities within 3e-7 of the default implementation after 30 steps) and
    # 3-10 % faster steps on 2 CPU cores
    optimizer = torch.optim.AdamW([{"params": encoder, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr}],
                                  weight_decay=cfg.weight_decay, fused=next(model.parameters()).device.type in ("cpu", "cuda"))
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)


@contextlib.contextmanager
def _stop_between_steps():
    """Ctrl-C is honoured between steps, never inside one: the first one appends to the yielded
    list (the loop checkpoints and stops after the step), a second one stops at once. The
    checkpoint written on the way out is exactly the state after a whole step, so --resume
    replays the rest bit for bit. Off the main thread signals cannot be caught: nothing changes."""
    stop: list[int] = []

    def on_sigint(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)
        err.print("[yellow]interrupt: finishing this step and saving a checkpoint…[/yellow]")

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        yield stop
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def train_encoder(texts: list[str], contexts: list[str] | None, y: np.ndarray, cfg: TrainConfig, book: Codebook,
                  device, ckpt: Checkpoint | None, stage: str, label: str) -> tuple[EncoderBackend, dict]:
    """Fine-tune on (texts, y) and return the model in memory, with speed figures."""
    import torch
    from rich.progress import TextColumn, TimeRemainingColumn

    seed_everything(cfg.seed)
    tokenizer, model = build_encoder(cfg, book, y.shape[1], device)
    precision = resolve_precision(cfg.precision, device)
    full_lengths = [len(ids) for ids in encode(tokenizer, texts, contexts, 10**6)["input_ids"]]
    lengths = [min(n, cfg.max_length) for n in full_lengths]
    n_truncated = sum(n > cfg.max_length for n in full_lengths)
    if n_truncated and stage == "final":
        where = ("training reads their first window; tagging reads them in overlapping windows"
                 if cfg.long_paragraphs == "windows" else "they are truncated")
        err.print(f"[yellow]note[/yellow] {n_truncated} training paragraph(s) longer than {cfg.max_length} tokens: {where}")
    batches = length_batches(lengths, cfg.max_length * cfg.batch_size, cfg.batch_size)
    steps_per_epoch = len(batches)
    total = steps_per_epoch * cfg.epochs
    encoded = [encode(tokenizer, [texts[i] for i in rows], None if contexts is None else [contexts[i] for i in rows],
                      cfg.max_length, padding=True, return_tensors="pt").to(device) for rows in batches]
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    start = time.time()  # the frozen layers' pass counts in the training time
    if cfg.frozen_layers:
        # The frozen layers never change: their output is computed once (no dropout), not every epoch.
        model.eval()
        with torch.no_grad(), autocast():
            frozen = [model.hidden_after(cfg.frozen_layers, e["input_ids"], e["attention_mask"], e.get("token_type_ids"))
                      for e in encoded]
    optimizer, scheduler = _optimizer(model, cfg, total)
    loss_fn = loss_function(cfg, y, device)
    y_train = torch.tensor(y)

    step = 0
    state = ckpt.load_state(stage) if ckpt else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        torch.set_rng_state(state["torch_rng"])
        err.print(f"resuming {label} from step {step}/{total} ({ckpt.dir})")

    def save_checkpoint() -> None:
        if ckpt:
            ckpt.save_state(stage, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "scheduler": scheduler.state_dict(), "step": step, "torch_rng": torch.get_rng_state()})

    seen = 0
    model.train()
    main_thread = threading.current_thread() is threading.main_thread()
    # Off the main thread (the service's retrain) there is no terminal to draw on: log instead.
    with _stop_between_steps() as stop, \
            progress(TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not main_thread) as bar:
        task = bar.add_task(label, total=total, completed=step, info="")
        while step < total:
            epoch = step // steps_per_epoch
            # The batch order of each epoch depends only on (seed, epoch): resume replays it exactly.
            order = np.random.default_rng(cfg.seed + epoch).permutation(steps_per_epoch)
            for b in order[step % steps_per_epoch:]:
                rows, batch = batches[b], encoded[b]
                with autocast():
                    if cfg.frozen_layers:
                        logits = model.forward_from(cfg.frozen_layers, frozen[b], batch["attention_mask"])
                    else:
                        logits = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
                loss = loss_fn(logits.float(), y_train[rows].to(device))
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
                    where = ckpt.dir if ckpt else "memory"
                    raise Interrupted(f"interrupted at step {step}/{total} of {label}; checkpoint saved in {where} "
                                      "— rerun with --resume")
    seconds = time.time() - start
    err.print(f"{label}: fine-tuned {seen} examples in {seconds:.0f} s ({seen / max(seconds, 1e-9):.1f} examples/s, {precision})")
    model.eval()
    backend = EncoderBackend(tokenizer, cfg.max_length, model=model, device=device, windows=cfg.long_paragraphs == "windows",
                             use_context=contexts is not None)
    return backend, {"seconds": seconds, "examples_per_second": seen / max(seconds, 1e-9), "truncated": n_truncated,
                     "precision": precision}


def train_tfidf(texts: list[str], titles: list[str], y: np.ndarray, cfg: TrainConfig, book: Codebook) -> TfidfBackend:
    """The TF-IDF member; `titles`: each paragraph's document title ('' where unknown)."""
    from policytag.models.baseline import fit_tfidf

    use_context = cfg.context == "title"
    inputs = [tfidf_input(t, c) for t, c in zip(texts, titles)] if use_context else texts
    columns = title_columns(book.flat_labels, cfg.title_dimensions(book))
    titled = None
    if columns and any(titles):
        titled = fit_tfidf([tfidf_input(t, c) for t, c in zip(texts, titles)], y[:, columns], seed=cfg.seed)
    return TfidfBackend(fit_tfidf(inputs, y, seed=cfg.seed), use_context, titled, columns if titled is not None else ())


def train_members(texts: list[str], titles: list[str], y: np.ndarray, cfg: TrainConfig, book: Codebook,
                  device=None, ckpt: Checkpoint | None = None, stage: str = "final",
                  label: str = "fine-tuning") -> tuple[dict, dict]:
    """The members `cfg` asks for, trained on these rows: ({name: backend}, speed figures).
    `titles`: each paragraph's document title ('' where unknown, see `context_texts`); which
    member reads them depends on `cfg` (context, tfidf_title)."""
    members, stats = {}, {}
    contexts = titles if cfg.context == "title" else None
    for name in cfg.members:
        if name == "tfidf":
            start = time.time()
            members[name] = train_tfidf(texts, titles, y, cfg, book)
            stats["tfidf_seconds"] = time.time() - start
        else:
            members[name], s = train_encoder(texts, contexts, y, cfg, book, device, ckpt, stage, label)
            stats.update(s)
    return members, stats


def ensemble_of(members: dict, cfg: TrainConfig):
    backends = [members[n] for n in cfg.members]
    return backends[0] if len(backends) == 1 else EnsembleBackend(backends, cfg.weights)


def native_bf16(device) -> bool:
    """Whether the device multiplies in bf16 natively: CPUs with AMX or AVX512-BF16, CUDA GPUs
    that support it. Elsewhere bf16 is emulated: on an AMD EPYC with AVX2 only, one training step
    of m3e-small took 38 s in bf16 against 1.1-1.5 s in fp32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        native = [getattr(torch.cpu, f, lambda: False) for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
        return any(f() for f in native)
    return False


_warned_bf16: set[str] = set()


def resolve_precision(precision: str, device) -> str:
    """'auto' becomes bf16 where the hardware does it natively and fp32 elsewhere; an explicit
    bf16 on hardware that emulates it is honoured, with a warning (it is far slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "bf16" and not native_bf16(device) and device.type not in _warned_bf16:
        _warned_bf16.add(device.type)  # once, not once per fold
        err.print(f"[yellow]warning[/yellow] bf16 is emulated on this {device.type} (no native bf16 arithmetic): "
                  "training runs far slower than in fp32 (25-30 times on a CPU with AVX2 only); --precision auto picks fp32 here")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def _device(device: str | None):
    dev = pick_device(device)
    if dev.type == "cpu":
        set_cpu_threads()
    return dev


# -- the model directory ---------------------------------------------------------------------
