"""Quality benchmark: the fine-tuned encoder vs the TF-IDF baseline (and the int8 ONNX
export of the encoder) on the same grouped, stratified dev split of an annotated export.

    python benchmarks/quality.py [--data ../shared/data/annotations/ihms-train.json]
                                 [--base-model ../shared/models/m3e-small] [--out runs/bench]
Prints both metric sets side by side and the training times."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from labels.export import parse_export
from labels.schema import load_codebook
from models.tagger import load_model
from training.cli import metrics_table
from training.data import prepare
from training.metrics import evaluate
from training.train import TrainConfig, fit

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared/data/annotations/ihms-train.json"))
    ap.add_argument("--base-model", default=str(HERE.parent.parent / "shared/models/m3e-small"))
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    console = Console()
    book = load_codebook()
    examples, report = parse_export(args.data, book)
    data = prepare(examples, book, 0.2, args.seed)  # one split for every model
    console.print(data.summary)
    out = Path(args.out)
    results, times = {}, {}
    for name, kwargs in (("tfidf", {"baseline": "tfidf"}), ("m3e-small", {"base_model": args.base_model})):
        cfg = TrainConfig(epochs=args.epochs, seed=args.seed, data=[args.data], schema=str(book.path), **kwargs)
        start = time.time()
        r = fit(data, book, cfg, out / name, report)
        times[name] = time.time() - start
        results[name] = r["metrics"]
    from models.onnx import export_onnx

    export_onnx(out / "m3e-small")
    int8 = load_model(out / "m3e-small", backend="onnx")
    dev_texts = [data.texts[i] for i in data.dev_idx]
    results["m3e-small int8"] = evaluate(book, book.flat_labels, data.y[data.dev_idx], int8.decide(int8.predict_proba(dev_texts)))
    console.print(metrics_table(results, f"dev split: {len(data.dev_idx)} paragraphs (thresholds tuned on it, same for all)"))
    for name, seconds in times.items():
        console.print(f"training time {name}: {seconds:.0f} s")
    gain = results["m3e-small"]["dimensions"]["tool"]["macro_f1"] - results["tfidf"]["dimensions"]["tool"]["macro_f1"]
    console.print(f"tools macro-F1: m3e-small {results['m3e-small']['dimensions']['tool']['macro_f1']:.3f} vs "
                  f"tfidf {results['tfidf']['dimensions']['tool']['macro_f1']:.3f} ({gain:+.3f})")


if __name__ == "__main__":
    main()
