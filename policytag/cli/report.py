"""`policytag report`: the 6D paper's Tables 1–12 for a tagged corpus (for the medsec codebook, the medical-security
study's tables), optionally beside the published figures or another corpus."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table as RichTable

from policytag.console import err
from policytag.console import out as out_console


def _read(path: Path, book):
    """A tags file as a frame, or exit 2 with the reason."""
    from policytag.nlp.tagsfile import read_tags

    try:
        frame = read_tags(path)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read {path}[/red]: {exc}")
        raise typer.Exit(2)
    missing = [d for d in book.dimension_ids if d not in frame.columns]
    if missing or "doc_id" not in frame.columns:
        err.print(f"[red]{path} is not a tags file for codebook {book.name}[/red]: missing columns {missing or ['doc_id']}")
        raise typer.Exit(2)
    return frame


def report(
    tags: Path = typer.Argument(..., help="Output of `policytag predict` (.jsonl/.csv/.xlsx/.parquet)."),
    out: Path = typer.Option(..., "--out", help="Folder for the workbook, CSVs, charts and HTML page."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="Codebook YAML (default: shipped IHMS)."),
    compare: Optional[str] = typer.Option(
        None, "--compare",
        help="'paper': put the published distribution of the codebook's study beside this corpus's (IHMS: the 6D "
             "paper; medsec: the Shanghai medical-security study's Table 1 and objectives); or another tags file "
             "(e.g. one province vs national documents, or two periods). Differences in percentage points."),
    year_bins: str = typer.Option(
        "paper", "--year-bins",
        help="Release-year columns of Tables 11-12: 'paper' (Table 11: '2015 and before', 2016, ...; Table 12: one "
             "per year), 'years' (one per year), or upper edges like 2015,2018."),
    charts: bool = typer.Option(True, help="Draw PNG charts (Chinese labels; the font comes with the mplfonts package)."),
) -> None:
    """The 6D paper's Tables 1-12 (numbered and laid out as published) and extra views, for any tagged corpus;
    with the medsec codebook, the medical-security study's Table 1 and objectives, then level, nature and year tables."""
    from policytag.cli.labels import load_or_exit
    from policytag.report import medsec
    from policytag.report.compare import compare_all
    from policytag.report.render import FontMissing, write_report
    from policytag.report.sixd import YearBins, corpus
    from policytag.report.tables import build_tables, compare_with_paper

    book = load_or_exit(schema)
    try:
        bins = YearBins.parse(year_bins)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    frame = _read(tags, book)
    tables = build_tables(frame, book, bins)
    c = corpus(frame, book)
    study = medsec.applies(book)
    intro = (f"{frame['doc_id'].nunique()} documents, {len(frame)} paragraphs ({len(c.coded)} coded) from {tags.name}; "
             f"codebook {book.name}. " + (
                 "Table 1 follows the layout of Table 1 of the Shanghai multi-level medical-security study and Table 2 "
                 "its objectives distribution; Tables 3-10 (level, nature, release year) are not in the study; "
                 "extra views follow them." if study else
                 "Tables 1-12 are numbered and counted as in Yu, Wang & You (JMIR 2024); extra views follow them."))
    notes: list[str] = []
    comparisons = {}
    if compare:
        if compare == "paper":
            comparisons, notes = compare_with_paper(tables, book, bins, tags.name)
        else:
            other_path = Path(compare)
            other = build_tables(_read(other_path, book), book, bins)
            name = other_path.name if other_path.name != tags.name else str(other_path)
            comparisons = compare_all(tables, other, tags.name, name)
        if not comparisons:
            err.print(f"[yellow]nothing to compare with {compare}[/yellow]")
    if study:
        notes += medsec.omitted(c)
    else:
        omitted = [f"Table {n}" for n in range(1, 13) if f"Table {n}" not in tables]
        if omitted:
            notes.append(f"Not produced for codebook {book.name} (it lacks the dimension they need): {', '.join(omitted)}.")
    try:
        written = write_report(tables, out, comparisons, charts=charts, intro=intro, notes=notes,
                               **({"heading": medsec.HEADING, "source": medsec.SOURCE} if study else {}))
    except FontMissing as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    except OSError as exc:
        err.print(f"[red]cannot write the report to {out}[/red]: {exc}")
        raise typer.Exit(2)
    for key, t in tables.items():
        if t.number is None:
            continue
        display = t.display()
        rt = RichTable(title=f"{key}. {t.title}", caption="\n".join(t.notes), caption_justify="left")
        rt.add_column(display.index.name or "")
        for col in display.columns:
            rt.add_column(str(col), justify="right")
        for idx, row in display.iterrows():
            rt.add_row(str(idx), *row.values)
        out_console.print(rt)
        if key in comparisons:
            cmp = comparisons[key].frame
            ct = RichTable(title=f"{key}: {tags.name} vs {comparisons[key].other}")
            for col in cmp.columns:
                ct.add_column(str(col), justify="left" if col in ("row", "column") else "right")
            for _, row in cmp.iterrows():
                ct.add_row(*["" if v is None or v != v else f"{v:g}" if isinstance(v, float) else str(v) for v in row.values])
            out_console.print(ct)
    for note in notes:
        err.print(f"[yellow]{note}[/yellow]")
    err.print(f"{sum(1 for t in tables.values() if t.number)} {'study' if study else 'paper'} tables + {sum(1 for t in tables.values() if not t.number)} "
              f"extra views{f', {len(comparisons)} comparisons' if comparisons else ''} → {out}: {len(written['csv'])} CSV, "
              f"{len(written['png'])} PNG, {written['xlsx'][0].name}, {written['html'][0].name}")
