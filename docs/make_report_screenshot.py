"""Write docs/report-compare.png, the README's picture of `policytag report --compare paper`.

The corpus is the human-annotated Label Studio export in ../shared (its labels, not a model's),
turned into a tags file; the chart is the report's own comparison chart, so the picture is what
an analyst gets. Only aggregate counts end up in the image; no policy text.

    .venv/bin/python docs/make_report_screenshot.py [EXPORT.json] [--table "Table 3"] [--out docs/report-compare.png]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from policytag.labels.export import parse_export
from policytag.labels.schema import load_codebook
from policytag.files import atomic_path, write_jsonl_atomic
from policytag.nlp.metadata import nature_of

ROOT = Path(__file__).resolve().parents[1]


def export_to_tags(export: Path, out: Path) -> int:
    """A tags file (policytag predict's columns) holding the annotators' labels."""
    book = load_codebook()
    examples, _ = parse_export(export, book)
    rows = []
    for e in examples:
        m = e.meta
        rows.append({"doc_id": m.get("doc_id") or m.get("title"), "paragraph_index": m.get("paragraph_index"),
                     "level": m.get("level"), "nature": nature_of(m.get("title")),
                     "year": str(m.get("date") or "")[:4] or None,
                     **{d: list(e.labels.get(d, [])) for d in book.dimension_ids}})
    write_jsonl_atomic(out, rows)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", nargs="?", default=str(ROOT.parent / "shared/data/annotations/ihms-train.json"))
    ap.add_argument("--table", default="Table 3")
    ap.add_argument("--out", default=str(ROOT / "docs/report-compare.png"))
    args = ap.parse_args()
    from typer.testing import CliRunner

    from policytag.cli import app

    with tempfile.TemporaryDirectory() as tmp:
        tags = Path(tmp) / "annotated.jsonl"
        n = export_to_tags(Path(args.export), tags)
        result = CliRunner().invoke(app, ["report", str(tags), "--out", f"{tmp}/report", "--compare", "paper"])
        if result.exit_code != 0:
            sys.exit(f"report failed ({result.exit_code}):\n{result.output}")
        number = int(args.table.split()[-1])
        png = Path(tmp) / "report" / f"table_{number:02d}_vs_paper.png"
        with atomic_path(args.out) as dst:
            shutil.copyfile(png, dst)
    print(f"{n} annotated paragraphs → {args.out}")


if __name__ == "__main__":
    main()
