"""Which study's tables a codebook gets: the 6D paper's (report/sixd.py) or, for the medical-security
codebook, the Shanghai study's (report/medsec.py); and the comparison with that study's published figures.
The one place that chooses, so the layout modules never import each other."""
from __future__ import annotations

import pandas as pd

from policytag.labels.schema import Codebook

from . import medsec
from .compare import Comparison, compare_with_6d_paper
from .sixd import Table, YearBins, corpus, extra_tables, sixd_tables


def build_tables(frame: pd.DataFrame, book: Codebook, bins: YearBins | None = None) -> dict[str, Table]:
    """The numbered tables of the codebook's study, then the extra views (dimensions they leave out)."""
    if medsec.applies(book):
        c = corpus(frame, book)
        return {**medsec.study_tables(c, bins), **extra_tables(c, medsec.COVERED, medsec.SOURCE)}
    return sixd_tables(frame, book, bins)


def compare_with_paper(ours: dict[str, Table], book: Codebook, bins: YearBins,
                       ours_name: str) -> tuple[dict[str, Comparison], list[str]]:
    """`--compare paper`: our tables beside the codebook's published study, and notes on what was not compared."""
    if medsec.applies(book):
        return medsec.compare_with_study(ours, book, ours_name)
    return compare_with_6d_paper(ours, book, bins, ours_name)
