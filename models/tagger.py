"""The paragraph tagger and its model directory.

A `Tagger` turns paragraphs (and, where the model was trained with it, each paragraph's
document title) into per-label probabilities through one *backend*, then applies per-label
thresholds and derives tool groups from sub-tools. Backends share one protocol,
`predict_proba(texts, contexts, progress) -> (n, n_labels)`:

  encoder   a fine-tuned pretrained encoder, mean pooling, one linear head over every label
            (run by PyTorch, or by ONNX Runtime after `policytag export-onnx`)
  tfidf     TF-IDF character n-grams + one logistic regression per label (scikit-learn); the
            labels of chosen dimensions (IHMS: orientation) from a second one that reads the
            document title with the paragraph
  ensemble  the weighted mean of its members' probabilities (default: encoder + tfidf)

A model directory holds:
  policytag.json    kind, members and weights, labels, context, max_length, version
  codebook.yaml     the codebook it was trained with
  thresholds.json   per-label decision thresholds (chosen on out-of-fold predictions)
  encoder/ + head.safetensors   and/or   tfidf.joblib (+ tfidf-title.joblib)
  metrics.json, training_config.json, MODEL_CARD.md   (written by training)
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from policytag.labels.schema import Codebook, load_codebook
from policytag.nlp.segment import normalize_text

CONFIG_FILE = "policytag.json"
# The runtime for encoder members; the names are the CLI's --backend choices.
BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-fp32")


class Runtime(str, Enum):
    """--backend on the command line: an unknown name is refused by Typer before anything runs."""

    torch = "torch"
    onnx = "onnx"
    onnx_int8 = "onnx-int8"
    onnx_fp32 = "onnx-fp32"
MAX_CONTEXT_CHARS = 48  # a document title longer than this is cut: the paragraph matters more


def pick_device(device: str | None = None):
    """CUDA where present (no code changes for a GPU), else CPU."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def usable_cores() -> int:
    """The cores this process may run on (affinity aware), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def set_cpu_threads() -> None:
    """Use every core we were given, not torch's guess."""
    import torch

    torch.set_num_threads(usable_cores())


def length_batches(lengths: list[int], max_tokens: int, max_batch: int) -> list[list[int]]:
    """Indices grouped by similar length, each batch under a token budget: little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current, longest = [], [], 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if current and (longest_if * (len(current) + 1) > max_tokens or len(current) >= max_batch):
            batches.append(current)
            current, longest_if = [], lengths[i]
        current.append(i)
        longest = longest_if
    if current:
        batches.append(current)
    return batches


def context_texts(titles: Sequence | None, n: int) -> list[str]:
    """Each paragraph's document title as model context ('' when unknown), normalised and cut."""
    if titles is None:
        return [""] * n
    return [normalize_text(str(t))[:MAX_CONTEXT_CHARS] if t is not None and t == t else "" for t in titles]


def tfidf_input(text: str, context: str) -> str:
    """What the TF-IDF member reads: title and paragraph as one string (title n-grams count too)."""
    return f"{context}\n{text}" if context else text


def encode(tokenizer, texts: list[str], contexts: list[str] | None, max_length: int, **kwargs):
    """Tokenise paragraphs, as sentence pairs `title [SEP] paragraph` when contexts are given;
    only the paragraph is truncated."""
    if contexts is None:
        return tokenizer(texts, truncation=True, max_length=max_length, **kwargs)
    room = min(MAX_CONTEXT_CHARS, max_length // 4)  # the title never crowds out the paragraph
    return tokenizer([c[:room] for c in contexts], texts, truncation="only_second", max_length=max_length, **kwargs)


Progress = Callable[[int], None] | None


class Backend(Protocol):
    kind: str

    def predict_proba(self, texts: list[str], contexts: list[str] | None, progress: Progress = None) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...


# -- the encoder -----------------------------------------------------------------------------
POOLINGS = ("mean", "label-attention")


def encoder_classifier(encoder, num_labels: int, dropout: float = 0.1, pooling: str = "mean"):
    """AutoModel encoder + pooling + dropout + linear head (built lazily: torch is imported only
    by the commands that run a model). pooling: `mean`, masked mean over the tokens, one vector
    for every label; `label-attention`, each label its own weighted mean of the tokens, the
    weights a softmax of the tokens' scores against a learned query per label (zero at the
    start, so training begins from the mean), for paragraphs whose labels hang on a phrase."""
    import math

    import torch
    from torch import nn

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")

    def mean_pool(hidden, attention_mask):
        # Mean over real tokens: works for checkpoints with no trained pooler (ALBERT-tiny, m3e).
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    class EncoderClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(encoder.config.hidden_size, num_labels)
            hidden = encoder.config.hidden_size
            self.queries = nn.Parameter(torch.zeros(num_labels, hidden)) if pooling == "label-attention" else None
            self.scale = 1.0 / math.sqrt(hidden)

        def classify(self, hidden, attention_mask):
            """Logits from the last hidden states."""
            if self.queries is None:
                return self.head(self.dropout(mean_pool(hidden, attention_mask)))
            scores = torch.einsum("bth,lh->blt", hidden, self.queries.to(hidden.dtype)) * self.scale
            scores = scores.masked_fill(attention_mask[:, None, :] == 0, -1e4)
            pooled = torch.einsum("blt,bth->blh", scores.softmax(-1).to(hidden.dtype), hidden)
            return (self.dropout(pooled) * self.head.weight.to(pooled.dtype)).sum(-1) + self.head.bias

        def last_hidden(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.encoder(**kwargs).last_hidden_state

        def pooled(self, input_ids, attention_mask, token_type_ids=None):
            """The mean over real tokens (what the codebook's label texts are embedded with)."""
            return mean_pool(self.last_hidden(input_ids, attention_mask, token_type_ids), attention_mask)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            return self.classify(self.last_hidden(input_ids, attention_mask, token_type_ids), attention_mask)

        def hidden_after(self, n_layers: int, input_ids, attention_mask, token_type_ids=None):
            """The hidden states after the lowest `n_layers` transformer layers."""
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "output_hidden_states": True}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.encoder(**kwargs).hidden_states[n_layers]

        def forward_from(self, n_layers: int, hidden, attention_mask):
            """`forward` continued from `hidden_after(n_layers, …)`: the layers above, pooling, head."""
            from transformers.masking_utils import create_bidirectional_mask

            mask = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)
            for layer in transformer_layers(self.encoder)[n_layers:]:
                hidden = layer(hidden, mask)
            return self.classify(hidden, attention_mask)

        def head_state(self) -> dict:
            """What head.safetensors holds: the linear head (and the label queries)."""
            state = dict(self.head.state_dict())
            if self.queries is not None:
                state["queries"] = self.queries
            return state

        def load_head_state(self, state: dict) -> None:
            state = dict(state)
            if self.queries is not None:
                if "queries" not in state:
                    raise ValueError("head.safetensors has no label queries: the model was saved with mean pooling")
                with torch.no_grad():
                    self.queries.copy_(state.pop("queries"))
            self.head.load_state_dict(state)

    return EncoderClassifier()


def transformer_layers(encoder):
    """The encoder's stack of separate transformer layers (BERT, RoBERTa, ERNIE…), or a clear
    error for models that have none (ALBERT runs one shared layer again and again)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None or not hasattr(layers, "__getitem__") or type(encoder).__name__.startswith("Albert"):
        raise ValueError(f"{type(encoder).__name__} has no separate transformer layers to freeze: "
                         "use --frozen-layers 0 with this base model")
    return layers


class EncoderBackend:
    """A fine-tuned encoder + head, run by PyTorch (`model`) or ONNX Runtime (`session`)."""

    kind = "encoder"

    def __init__(self, tokenizer, max_length: int, model=None, session=None, device=None, windows: bool = False,
                 use_context: bool = False):
        """`windows`: a paragraph longer than `max_length` tokens is read in overlapping windows and
        each label's probability is its highest in any window (else only the first window is read).
        `use_context`: trained on `title [SEP] paragraph`; otherwise the titles every member is
        handed are not read."""
        self.tokenizer, self.max_length, self.windows, self.use_context = tokenizer, max_length, windows, use_context
        self.model, self.session, self.device = model, session, device

    @classmethod
    def load(cls, path: Path, n_labels: int, max_length: int, runtime: str = "torch", device: str | None = None,
             windows: bool = False, use_context: bool = False, pooling: str = "mean"):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path / "encoder")
        if runtime in ("onnx", "onnx-int8", "onnx-fp32"):
            from .onnx import open_session

            return cls(tokenizer, max_length, session=open_session(path, quantized=runtime != "onnx-fp32", threads=usable_cores()),
                       windows=windows, use_context=use_context)
        if runtime != "torch":
            raise ValueError(f"unknown backend {runtime!r}: choose one of {', '.join(BACKENDS)}")
        from safetensors.torch import load_file
        from transformers import AutoModel

        dev = pick_device(device)
        if dev.type == "cpu":
            set_cpu_threads()
        model = encoder_classifier(AutoModel.from_pretrained(path / "encoder"), n_labels, pooling=pooling)
        model.load_head_state(load_file(str(path / "head.safetensors")))
        return cls(tokenizer, max_length, model=model.to(dev).eval(), device=dev, windows=windows, use_context=use_context)

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        self.model.encoder.save_pretrained(directory / "encoder")
        self.tokenizer.save_pretrained(directory / "encoder")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.model.head_state().items()},
                  str(directory / "head.safetensors"))

    def features(self, texts: list[str], contexts: list[str] | None) -> tuple[dict, np.ndarray]:
        """The token sequences the model reads and, for each, the paragraph it comes from. With
        `windows`, a long paragraph gives several, overlapping by an eighth so that a cue cut by
        one window's edge is whole in the next; the title, if any, is repeated in each."""
        if not self.windows:
            return encode(self.tokenizer, texts, contexts, self.max_length), np.arange(len(texts))
        enc = encode(self.tokenizer, texts, contexts, self.max_length, return_overflowing_tokens=True,
                     stride=self.max_length // 8)
        return enc, np.asarray(enc.pop("overflow_to_sample_mapping"), dtype=np.int64)

    def predict_proba(self, texts: list[str], contexts: list[str] | None, progress: Progress = None,
                      batch_tokens: int = 2048, max_batch: int = 16) -> np.ndarray:
        """Batches are length-sorted under a token budget; 16 × 128 tokens measured fastest on
        a 2-core CPU (larger batches fall out of cache and get slower)."""
        enc, owner = self.features(texts, contexts if self.use_context else None)
        first = np.r_[True, owner[1:] != owner[:-1]]  # progress counts each paragraph once
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        out = np.zeros((len(texts), self.n_labels), dtype=np.float32)
        for batch in length_batches([len(ids) for ids in enc["input_ids"]], batch_tokens, max_batch):
            probs = self._forward(self._pad({k: [enc[k][i] for i in batch] for k in keys}))
            np.maximum.at(out, owner[batch], probs)  # a paragraph's windows: the highest probability
            if progress:
                progress(int(first[batch].sum()))
        return out

    @property
    def n_labels(self) -> int:
        if self.session is not None:
            return int(self.session.get_outputs()[0].shape[-1])
        return int(self.model.head.out_features)

    def _pad(self, rows: dict[str, list[list[int]]]) -> dict[str, np.ndarray]:
        width = max(len(r) for r in rows["input_ids"])
        fill = {"input_ids": self.tokenizer.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
        return {k: np.array([r + [fill[k]] * (width - len(r)) for r in v], dtype=np.int64) for k, v in rows.items()}

    def _forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self.session is not None:
            feeds = {i.name: batch[i.name] if i.name in batch else np.zeros_like(batch["input_ids"])
                     for i in self.session.get_inputs()}
            return self.session.run(["probs"], feeds)[0]
        import torch

        t = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            logits = self.model(t["input_ids"], t["attention_mask"], t.get("token_type_ids"))
        return torch.sigmoid(logits.float()).cpu().numpy()


# -- TF-IDF ----------------------------------------------------------------------------------
class TfidfBackend:
    """`pipeline` gives every label from the paragraph (from title + paragraph with `use_context`).
    `title_pipeline`, when there is one, gives the labels in `title_columns` instead, from title +
    paragraph: for dimensions that follow what the whole document is about (IHMS orientation:
    README Quality). A paragraph whose title is unknown keeps the paragraph-only probabilities,
    the ones trained on what it offers."""

    kind = "tfidf"
    FILE = "tfidf.joblib"
    TITLE_FILE = "tfidf-title.joblib"

    def __init__(self, pipeline, use_context: bool = True, title_pipeline=None, title_columns: Sequence[int] = ()):
        self.pipeline, self.use_context = pipeline, use_context
        self.title_pipeline, self.title_columns = title_pipeline, np.asarray(title_columns, dtype=np.int64)

    @classmethod
    def load(cls, path: Path, use_context: bool = True, title_columns: Sequence[int] = ()) -> "TfidfBackend":
        import joblib

        if (path / cls.FILE).exists():
            title = joblib.load(path / cls.TITLE_FILE) if len(title_columns) else None
            return cls(joblib.load(path / cls.FILE), use_context, title, title_columns)
        return cls(joblib.load(path / "baseline.joblib"), use_context=False)  # policytag 0.1 directories

    def save(self, directory: Path) -> None:
        import joblib

        joblib.dump(self.pipeline, directory / self.FILE)
        if self.title_pipeline is not None:
            joblib.dump(self.title_pipeline, directory / self.TITLE_FILE)

    def predict_proba(self, texts: list[str], contexts: list[str] | None, progress: Progress = None) -> np.ndarray:
        inputs = texts
        if self.use_context and contexts is not None:
            inputs = [tfidf_input(t, c) for t, c in zip(texts, contexts)]
        probs = np.asarray(self.pipeline.predict_proba(inputs), dtype=np.float32)
        if self.title_pipeline is not None and contexts is not None:
            rows = [i for i, c in enumerate(contexts) if c]
            if rows:
                titled = self.title_pipeline.predict_proba([tfidf_input(texts[i], contexts[i]) for i in rows])
                # a one-label dimension was fitted as one binary problem: (n, 2), positive last
                probs[np.ix_(rows, self.title_columns)] = np.asarray(titled)[:, -len(self.title_columns):]
        if progress:
            progress(len(texts))
        return probs


# -- ensemble --------------------------------------------------------------------------------
class EnsembleBackend:
    """Weighted mean of member probabilities. Members differ in what they see (an encoder
    reads meaning, TF-IDF reads exact policy vocabulary); averaging measured better than either
    on unseen documents (benchmarks/quality.py)."""

    kind = "ensemble"

    def __init__(self, members: list[Backend], weights: list[float]):
        total = float(sum(weights))
        self.members, self.weights = members, [w / total for w in weights]

    def save(self, directory: Path) -> None:
        for m in self.members:
            m.save(directory)

    def predict_proba(self, texts: list[str], contexts: list[str] | None, progress: Progress = None) -> np.ndarray:
        # Progress follows the slowest member (the encoder); the others are near-instant.
        slow = max(range(len(self.members)), key=lambda i: self.members[i].kind == "encoder")
        out = None
        for i, (m, w) in enumerate(zip(self.members, self.weights)):
            p = w * m.predict_proba(texts, contexts, progress if i == slow else None)
            out = p if out is None else out + p
        return out


def title_columns(labels: Sequence, dimensions: Sequence[str]) -> list[int]:
    """Columns of `labels` ((dimension, label) pairs) that belong to `dimensions`."""
    return [j for j, (dim, _) in enumerate(labels) if dim in set(dimensions)]


def load_backend(path: Path, config: dict, runtime: str = "torch", device: str | None = None) -> Backend:
    n_labels, max_length = len(config["labels"]), int(config.get("max_length", 256))
    use_context = config.get("context") == "title"
    kind = config["kind"]
    if kind in ("transformer", "encoder"):
        # directories written before windows existed read the first max_length tokens only
        windows = config.get("long_paragraphs", "truncate") == "windows"
        return EncoderBackend.load(path, n_labels, max_length, runtime, device, windows, use_context,
                                   config.get("pooling", "mean"))
    if kind == "tfidf":
        return TfidfBackend.load(path, use_context, title_columns(config["labels"], config.get("tfidf_title", [])))
    if kind == "ensemble":
        members = [load_backend(path, {**config, "kind": m["kind"]}, runtime, device) for m in config["members"]]
        return EnsembleBackend(members, [m["weight"] for m in config["members"]])
    raise ValueError(f"{path}: unknown model kind {kind!r}")


@dataclass
class Prediction:
    labels: dict[str, list[str]]  # dimension -> ids over threshold
    groups: dict[str, list[str]]  # hierarchical dimension -> groups implied by its labels
    probs: dict[str, float]  # label id -> probability


class Tagger:
    """A model: backend + labels + thresholds + codebook, loaded from or saved to a directory."""

    def __init__(self, backend: Backend, book: Codebook, config: dict, thresholds: dict[str, float] | np.ndarray,
                 path: Path | None = None):
        self.backend, self.book, self.config = backend, book, config
        self.path = Path(path) if path else None
        self.labels: list[tuple[str, str]] = [tuple(x) for x in config["labels"]]
        self.label_ids = [label for _, label in self.labels]
        if isinstance(thresholds, dict):
            thresholds = [thresholds.get(l, 0.5) for l in self.label_ids]
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.kind = config["kind"]
        self.version = config.get("model_version", self.path.name if self.path else "unsaved")

    @property
    def reads_titles(self) -> bool:
        """Some member reads each paragraph's document title (as context or for some dimensions)."""
        return self.config.get("context") == "title" or bool(self.config.get("tfidf_title"))

    @property
    def max_length(self) -> int:
        return int(self.config.get("max_length", 256))

    @property
    def encoder(self) -> EncoderBackend | None:
        """The encoder member (for ONNX export), if the model has one."""
        members = getattr(self.backend, "members", [self.backend])
        return next((m for m in members if isinstance(m, EncoderBackend)), None)

    # -- directory ------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str | None = None, backend: str = "torch") -> "Tagger":
        """backend: the runtime of the encoder member — torch, onnx (int8, after
        `policytag export-onnx`) or onnx-fp32. An unknown name is an error."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        path = Path(path)
        config_path = path / CONFIG_FILE
        if not config_path.exists():
            raise FileNotFoundError(f"{path}: not a policytag model directory (no {CONFIG_FILE})")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        book = load_codebook(path / "codebook.yaml")
        thresholds = json.loads((path / "thresholds.json").read_text(encoding="utf-8"))
        return cls(load_backend(path, config, backend, device), book, config, thresholds, path)

    def save(self, directory: Path) -> None:
        """Write the model into an existing (empty, temporary) directory; training adds its
        metrics and card, and renames the directory into place."""
        directory = Path(directory)
        self.backend.save(directory)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config, ensure_ascii=False, indent=2), encoding="utf-8")
        shutil.copy(self.book.path, directory / "codebook.yaml")
        (directory / "thresholds.json").write_text(
            json.dumps({l: round(float(t), 4) for l, t in zip(self.label_ids, self.thresholds)}, indent=2), encoding="utf-8")

    # -- inference ------------------------------------------------------------
    def predict_proba(self, texts: list[str], titles: Sequence | None = None, progress: Progress = None) -> np.ndarray:
        """Probabilities, shape (len(texts), n_labels), in input order. `titles`: each
        paragraph's document title (read by the members trained with it, see `reads_titles`)."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        clean = [normalize_text(t) for t in texts]
        contexts = context_texts(titles, len(clean)) if self.reads_titles else None
        return self.backend.predict_proba(clean, contexts, progress)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return probs >= self.thresholds

    def decode(self, probs_row: np.ndarray) -> Prediction:
        chosen = probs_row >= self.thresholds
        labels: dict[str, list[str]] = {d: [] for d in self.book.dimension_ids}
        for (dim, label), on in zip(self.labels, chosen):
            if on:
                labels[dim].append(label)
        # Groups are derived from sub-labels, never predicted: they can't disagree.
        groups = {d.id: self.book.groups_of(d.id, labels[d.id]) for d in self.book.dimensions if d.groups}
        return Prediction(labels, groups, {l: float(p) for l, p in zip(self.label_ids, probs_row)})

    def predict(self, texts: list[str], titles: Sequence | None = None, **kwargs) -> list[Prediction]:
        probs = self.predict_proba(texts, titles, **kwargs)
        return [self.decode(row) for row in probs]


def load_model(path: str | Path, device: str | None = None, backend: str = "torch") -> Tagger:
    """backend: torch, or onnx (int8, after `policytag export-onnx`) / onnx-fp32."""
    return Tagger.load(path, device, backend)
