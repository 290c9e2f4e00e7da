"""Throughput benchmark: tag N paragraphs three ways with one fine-tuned model —
a naive per-paragraph `transformers.pipeline` loop, policytag's batched PyTorch path, and
the ONNX int8 path (if exported) — and compare with the machine's fp32 ceiling.

    python benchmarks/throughput.py --model runs/m3e-ihms [--n 400]
            [--paragraphs ../shared/data/paragraphs.jsonl]

Each path runs in its own process so peak RSS is its own."""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_texts(path: str, n: int) -> list[str]:
    from policytag.files import read_jsonl

    rows = read_jsonl(path)
    return [r["text"] for r in rows[:n]]


def run_path(path: str, model: str, texts: list[str]) -> dict:
    import numpy as np

    from policytag.models.tagger import load_model, set_cpu_threads

    set_cpu_threads()
    if path == "naive":
        from safetensors.torch import load_file
        from transformers import pipeline

        from policytag.nlp.segment import normalize_text

        pipe = pipeline("feature-extraction", model=str(Path(model) / "encoder"), framework="pt", device="cpu")
        head = load_file(str(Path(model) / "head.safetensors"))
        w, b = head["weight"].numpy(), head["bias"].numpy()
        start = time.perf_counter()
        for t in texts:  # one paragraph at a time, as a first script would
            hidden = np.asarray(pipe(normalize_text(t), truncation=True, max_length=256))[0]
            _ = 1 / (1 + np.exp(-(hidden.mean(0) @ w.T + b)))
        seconds = time.perf_counter() - start
    else:
        tagger = load_model(model, backend="torch" if path == "batched" else "onnx")
        tagger.predict_proba(texts[:16])  # warm-up
        start = time.perf_counter()
        tagger.predict_proba(texts)
        seconds = time.perf_counter() - start
    return {"path": path, "seconds": seconds, "paragraphs_per_s": len(texts) / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ceiling(model: str, texts: list[str]) -> dict:
    """Measured fp32 matmul GFLOP/s ÷ model FLOPs per paragraph at the corpus's mean length."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from policytag.models.tagger import set_cpu_threads

    set_cpu_threads()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        torch.mm(a, b)
    gflops = 2 * 2048 ** 3 * reps / (time.perf_counter() - start) / 1e9
    cfg = AutoConfig.from_pretrained(Path(model) / "encoder")
    tok = AutoTokenizer.from_pretrained(Path(model) / "encoder")
    mean_t = sum(min(256, len(tok(t)["input_ids"])) for t in texts) / len(texts)
    h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_layer = 2 * mean_t * (4 * h * h + 2 * h * i) + 2 * 2 * mean_t * mean_t * h  # projections + FFN + attention
    flops = layers * per_layer
    return {"matmul_gflops": gflops, "mean_tokens": mean_t, "gflop_per_paragraph": flops / 1e9,
            "ceiling_paragraphs_per_s": gflops * 1e9 / flops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--paragraphs", default=str(HERE.parent.parent / "shared/data/paragraphs.jsonl"))
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    texts = load_texts(args.paragraphs, args.n)
    if args.only:
        print(json.dumps(run_path(args.only, args.model, texts)))
        return
    from rich.console import Console
    from rich.table import Table

    paths = ["naive", "batched"] + (["onnx-int8"] if (Path(args.model) / "model.int8.onnx").exists() else [])
    results = {}
    for p in paths:
        proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--n", str(args.n),
                               "--paragraphs", args.paragraphs, "--only", p], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        results[p] = json.loads(proc.stdout.strip().splitlines()[-1])
    ceil = ceiling(args.model, texts)
    table = Table(title=f"tagging {len(texts)} paragraphs (mean {ceil['mean_tokens']:.0f} tokens)")
    for col in ("path", "paragraphs/s", "× naive", "% of fp32 ceiling", "peak RSS MB"):
        table.add_column(col, justify="right")
    for p, r in results.items():
        table.add_row(p, f"{r['paragraphs_per_s']:.1f}", f"{r['paragraphs_per_s'] / results['naive']['paragraphs_per_s']:.2f}",
                      f"{100 * r['paragraphs_per_s'] / ceil['ceiling_paragraphs_per_s']:.0f}%", f"{r['peak_rss_mb']:.0f}")
    Console().print(table)
    Console().print(f"fp32 matmul: {ceil['matmul_gflops']:.1f} GFLOP/s; model: {ceil['gflop_per_paragraph']:.2f} GFLOP/paragraph "
                    f"→ ceiling {ceil['ceiling_paragraphs_per_s']:.1f} paragraphs/s")


if __name__ == "__main__":
    main()
