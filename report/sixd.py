"""The 6D paper's Tables 1–12 (Yu, Wang & You, JMIR 2024) for any tagged corpus, counted as the paper counts.

Conventions (read off the published tables; see ../shared/reference/paper-6d-tables.md):
- The unit is the *coded paragraph* (the paper's "policy text", n = 1,345): a paragraph with at
  least one label in any dimension. Titles and closing formulas carry none and are left out.
- Tables 1, 2 count paragraphs per level / nature (each paragraph has its document's metadata).
- Table 3 counts tool codes: a group's n is the sum of its sub-tool codes, every % is over all
  tool codes. Table 4 counts stakeholder codes. Table 5 counts paragraphs per orientation.
- Table 6 counts tool × stakeholder co-occurrences, row % within each sub-tool, group Total rows
  and a Grand total. Tables 7, 9, 11: tool codes by level / nature / year bin, same layout;
  Table 7 merges provincial and municipal. Tables 8, 10, 12: orientation by level / nature /
  year, column % with n per column (paragraphs with an orientation there); Table 12 has a Total
  column. A zero cell in a sub-tool or orientation row reads "N/A", as in the paper.
Label names and groups come from the codebook; a table whose dimension the codebook lacks
(e.g. no stakeholder in a codebook of your own) is omitted. Extra views the paper lacks come after
Table 12 as "Extra A", "Extra B", …. The medsec codebook has its own study and tables
(report/medsec.py); `report.tables.build_tables` picks the layout from the codebook.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from policytag.labels.schema import Codebook

UNKNOWN = "unknown"
UNKNOWN_NAME = "未知 Unknown"
LEVEL_NAMES = {"national": "国家级 National level", "provincial": "省级 Provincial level",
               "municipal": "市级 Municipal level", "shanghai": "上海市 Shanghai",
               "provincial_municipal": "省市级 Provincial and municipal level", UNKNOWN: UNKNOWN_NAME}
NATURE_NAMES = {"planning": "规划类 Planning policy", "detailed_regulation": "细则类 Detailed regulations",
                UNKNOWN: UNKNOWN_NAME}
# Tables 7 and 8 of the paper put provincial and municipal documents in one column.
PAPER_LEVEL_MERGE = {"provincial": "provincial_municipal", "municipal": "provincial_municipal"}
# Category order when a codebook declares no `metadata` (the canonical medsec codebook has none).
DEFAULT_METADATA = {"level": ["national", "provincial", "municipal", "shanghai"],
                    "nature": ["planning", "detailed_regulation"]}
# The dimensions the paper's tables are about (codebook dimension ids).
TOOL, STAKEHOLDER, ORIENTATION = "tool", "stakeholder", "orientation"
TOTAL_NAME, GRAND_NAME = "合计 Total", "总计 Grand total"


# -- year bins -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class YearBins:
    """How Tables 11 and 12 group release years.

    "paper" (default): Table 11 has '2015 and before', then one column per year; Table 12 one
    column per year — as published. "years": one column per year in both. "2015,2018": upper
    edges, giving '2015 and before', '2016–2018', '2019 and after' in both tables."""

    spec: str = "paper"
    edges: tuple[int, ...] = ()

    @classmethod
    def parse(cls, spec: str | None) -> "YearBins":
        spec = (spec or "paper").strip()
        if spec in ("paper", "years"):
            return cls(spec)
        try:
            edges = tuple(int(x) for x in spec.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"--year-bins {spec!r}: use 'paper', 'years' or ascending upper edges like 2015,2018") from None
        if not edges or list(edges) != sorted(set(edges)):
            raise ValueError(f"--year-bins {spec!r}: the edges must be ascending years, e.g. 2015,2018")
        return cls(spec, edges)

    def bin(self, year, table: int) -> tuple[float, str]:
        """(sort key, column label) of a year (int) or UNKNOWN in Table `table` (11 or 12)."""
        if year == UNKNOWN:
            return float("inf"), UNKNOWN_NAME
        if self.spec == "years" or (self.spec == "paper" and table == 12):
            return year, str(year)
        if self.spec == "paper":
            return (2015, "2015 and before") if year <= 2015 else (year, str(year))
        edges = self.edges
        if year <= edges[0]:
            return edges[0], f"{edges[0]} and before"
        for lo, hi in zip(edges, edges[1:]):
            if lo < year <= hi:
                return hi, str(hi) if hi == lo + 1 else f"{lo + 1}–{hi}"
        return edges[-1] + 1, f"{edges[-1] + 1} and after"

    def describe(self, table: int) -> str:
        if self.spec == "years" or (self.spec == "paper" and table == 12):
            return "one column per release year"
        if self.spec == "paper":
            return "release years binned as in the paper: '2015 and before', then one column per year"
        return f"release years binned at {self.spec} (--year-bins)"


# -- a table in the paper's layout ----------------------------------------------------------------
@dataclass
class Table:
    """Counts and percentages of one table, with the paper's row kinds and n's.

    Row kinds: "header" (a group line without cells), "group" (Table 3's group line with its
    summed n), "label", "total" (a group's Total), "grand" (Grand total)."""

    key: str                       # "Table 3", "Extra A"
    title: str
    layout: str                    # "dist" (one column), "row" (row %), "col" (column %)
    row_header: str
    rows: list[str]                # unique row keys (display names)
    kinds: list[str]
    columns: list[str]
    counts: list[list[int]]        # [row][column]
    bases: list[list[int]]         # the denominator of every cell's %
    row_n: list[int | None]
    col_n: list[int | None]
    notes: list[str] = field(default_factory=list)
    number: int | None = None
    dimension: str | None = None   # the label dimension of the rows, for charts
    timeline: bool = False         # columns are release years: drawn as lines over time (the paper's Figure 4)

    def percent(self, i: int, j: int) -> float | None:
        base = self.bases[i][j]
        return 100.0 * self.counts[i][j] / base if base else None

    def cell_text(self, i: int, j: int) -> str:
        kind, n, p = self.kinds[i], self.counts[i][j], self.percent(i, j)
        if kind == "header":
            return ""
        if n == 0 and kind == "label":
            return "N/A"
        return f"{n} ({fmt_pct(p if p is not None else 0.0)})"

    def row_label(self, i: int) -> str:
        kind, name, n = self.kinds[i], self.rows[i], self.row_n[i]
        if kind == "total":
            name = TOTAL_NAME
        text = f"{name} (n={n})" if n is not None else name
        return f"  {text}" if kind in ("label", "total") and any(k in ("header", "group") for k in self.kinds) else text

    def column_label(self, j: int) -> str:
        n = self.col_n[j]
        return f"{self.columns[j]} (n={n}), n (%)" if n is not None else f"{self.columns[j]}, n (%)"

    def display(self) -> pd.DataFrame:
        """The table as printed in the paper: 'n (%)' strings, N/A cells, n in labels."""
        frame = pd.DataFrame([[self.cell_text(i, j) for j in range(len(self.columns))] for i in range(len(self.rows))],
                             columns=[self.column_label(j) for j in range(len(self.columns))],
                             index=[self.row_label(i) for i in range(len(self.rows))])
        frame.index.name = self.row_header
        return frame

    def cells(self) -> pd.DataFrame:
        """Every cell as numbers (one row per cell), for machine use and comparisons."""
        return pd.DataFrame([
            {"table": self.key, "row": self.rows[i], "kind": self.kinds[i], "column": self.columns[j],
             "n": self.counts[i][j], "base": self.bases[i][j], "percent": self.percent(i, j)}
            for i in range(len(self.rows)) if self.kinds[i] != "header" for j in range(len(self.columns))])

    def lookup(self, row: str, column: str | None = None) -> tuple[int, float | None]:
        i = self.rows.index(row)
        j = 0 if column is None else self.columns.index(column)
        return self.counts[i][j], self.percent(i, j)


def fmt_pct(p: float) -> str:
    """Two decimals at most, trailing zeros dropped, as the paper prints them (49, 88.1, 37.06)."""
    return f"{p:.2f}".rstrip("0").rstrip(".")


# -- the corpus, one row per paragraph ------------------------------------------------------------
def name_of(item) -> str:
    return f"{item.zh} {item.en}"


def _first(values):
    return next((v for v in values if v is not None and not (isinstance(v, float) and pd.isna(v)) and v != ""), None)


def _year(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return UNKNOWN
    m = re.search(r"(19|20)\d\d", str(value))
    return int(m.group(0)) if m else UNKNOWN


def _labels(value, book: Codebook, dim: str, unknown: Counter) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        value = [v for v in value.split(";") if v]
    ids, leaves = [], set(book.dimension(dim).label_ids)
    for v in list(value):
        lid = book.resolve(dim, v)
        if lid in leaves:
            if lid not in ids:
                ids.append(lid)
        else:
            unknown[f"{dim}:{v}"] += 1
    return ids


def documents(frame: pd.DataFrame, book: Codebook) -> pd.DataFrame:
    """One row per document: year (int or 'unknown'), level, nature — its first non-empty values."""
    meta = book.metadata or {}
    cols = {c: (frame[c] if c in frame.columns else pd.Series([None] * len(frame), index=frame.index))
            for c in ("year", "level", "nature")}
    grouped = pd.DataFrame({"doc_id": frame["doc_id"].astype(str), **cols}).groupby("doc_id", sort=False)
    docs = grouped.agg(lambda s: _first(list(s)))
    docs["year"] = docs["year"].map(_year).astype(object)
    for c in ("level", "nature"):
        known = meta.get(c)
        docs[c] = docs[c].map(lambda v: str(v) if v is not None and (not known or str(v) in known) else UNKNOWN)
    return docs


@dataclass
class Corpus:
    paragraphs: pd.DataFrame      # all paragraphs: doc_id, year, level, nature, one list column per dimension, coded
    docs: pd.DataFrame
    book: Codebook
    unknown_labels: Counter

    @property
    def coded(self) -> pd.DataFrame:
        return self.paragraphs[self.paragraphs["coded"]]


def corpus(frame: pd.DataFrame, book: Codebook) -> Corpus:
    if "doc_id" not in frame.columns:
        raise ValueError("a tags file needs a doc_id column")
    docs = documents(frame, book)
    para = pd.DataFrame({"doc_id": frame["doc_id"].astype(str).values})
    for c in ("year", "level", "nature"):
        para[c] = para["doc_id"].map(docs[c]).values
    unknown: Counter = Counter()
    for dim in book.dimension_ids:
        values = frame[dim] if dim in frame.columns else [[]] * len(frame)
        para[dim] = [_labels(v, book, dim, unknown) for v in values]
    para["coded"] = para[book.dimension_ids].map(len).sum(axis=1) > 0 if len(para) else pd.Series(dtype=bool)
    return Corpus(para, docs, book, unknown)


# -- building blocks ------------------------------------------------------------------------------
def meta_order(book: Codebook, column: str) -> list[str]:
    """The categories of a metadata column in table order: the codebook's, else the defaults."""
    return list((book.metadata or {}).get(column) or DEFAULT_METADATA.get(column, []))


def _meta_categories(values: list, order: list[str], names: dict, merge: dict | None = None) -> list[tuple[str, str]]:
    """(key, display name) of a metadata column: the codebook's values in its order (all of them,
    so layouts stay comparable), then any others, then 'unknown' if present."""
    merge = merge or {}
    keys = []
    for k in [merge.get(v, v) for v in order] + sorted({merge.get(v, v) for v in values if v != UNKNOWN} - set(order)):
        if k not in keys:
            keys.append(k)
    if UNKNOWN in values:
        keys.append(UNKNOWN)
    return [(k, names.get(k, str(k))) for k in keys]


def dist_table(key, title, row_header, column, entries, base, notes, number=None, sort=True, dimension=None) -> Table:
    """A one-column 'n (%)' table; entries are (name, kind, count); every % is over `base`."""
    if sort:  # the paper lists 1D distributions by decreasing n; 'unknown' always last
        entries = sorted(entries, key=lambda e: (e[0] == UNKNOWN_NAME, -e[2]))
    return Table(key, title, "dist", row_header, [e[0] for e in entries], [e[1] for e in entries], [column],
                 [[e[2]] for e in entries], [[base] for _ in entries], [None] * len(entries), [base],
                 notes, number, dimension)


def tool_structure(book: Codebook, dim: str) -> list[tuple[str | None, list]]:
    d = book.dimension(dim)
    if d.groups:
        return [(g, list(g.labels)) for g in d.groups]
    return [(None, list(d.labels))]


def tool_codes_table(book: Codebook, coded: pd.DataFrame, key: str, number: int, title: str, notes: list[str],
                     dim: str = TOOL) -> Table:
    """Tool codes in codebook order: a line per group with its summed n, its sub-tools under it;
    every % is over all tool codes (the paper's Table 3, the medsec study's Table 1)."""
    codes = Counter(l for ls in coded[dim] for l in ls)
    n_codes = sum(codes.values())
    entries = []
    for group, labels in tool_structure(book, dim):
        if group is not None:
            entries.append((name_of(group), "group", sum(codes.get(l.id, 0) for l in labels)))
        entries += [(name_of(l), "label", codes.get(l.id, 0)) for l in labels]
    t = dist_table(key, title.format(n=n_codes), name_of(book.dimension(dim)), "政策工具 Policy tools", entries,
                   n_codes, notes, number, sort=False, dimension=dim)
    t.row_n = [e[2] if e[1] == "group" else None for e in entries]
    return t


def row_table(key, title, book, dim, pairs: Counter, columns: list[tuple[str, str]], notes, number=None) -> Table:
    """Rows = the dimension's labels under their groups; row % within each row; group Total rows
    sum their labels; a Grand total. `pairs` counts (label id, column key)."""
    rows, kinds, counts = [], [], []
    grand = [0] * len(columns)
    for group, labels in tool_structure(book, dim):
        total = [0] * len(columns)
        if group is not None:
            rows.append(name_of(group)), kinds.append("header"), counts.append([0] * len(columns))
        for label in labels:
            line = [pairs.get((label.id, ck), 0) for ck, _ in columns]
            rows.append(name_of(label)), kinds.append("label"), counts.append(line)
            total = [a + b for a, b in zip(total, line)]
        if group is not None:
            rows.append(f"{name_of(group)} · {TOTAL_NAME}"), kinds.append("total"), counts.append(total)
        grand = [a + b for a, b in zip(grand, total)]
    rows.append(GRAND_NAME), kinds.append("grand"), counts.append(grand)
    row_n = [None if k == "header" else sum(c) for k, c in zip(kinds, counts)]
    bases = [[n or 0] * len(columns) for n in row_n]
    return Table(key, title, "row", name_of(book.dimension(dim)), rows, kinds, [name for _, name in columns],
                 counts, bases, row_n, [None] * len(columns), notes, number, dim)


def col_table(key, title, book, dim, para: pd.DataFrame, column: pd.Series, columns: list[tuple[str, str]],
              notes, number=None, total_column=False) -> Table:
    """Rows = the dimension's labels; column % over the paragraphs with a label in that column."""
    labels = list(book.dimension(dim).labels)
    has = para[dim].map(len) > 0
    keys = [ck for ck, _ in columns]
    col_n = [int((has & (column == ck)).sum()) for ck in keys]
    counts = [[int((para[dim].map(lambda ls, l=l.id: l in ls) & (column == ck)).sum()) for ck in keys] for l in labels]
    names = [name for _, name in columns]
    if total_column:
        col_n.append(int(has.sum()))
        counts = [row + [sum(row)] for row in counts]
        names.append(TOTAL_NAME)
    bases = [list(col_n) for _ in labels]
    return Table(key, title, "col", name_of(book.dimension(dim)), [name_of(l) for l in labels], ["label"] * len(labels),
                 names, counts, bases, [None] * len(labels), col_n, notes, number, dim)


# -- the paper's tables ---------------------------------------------------------------------------
def _unknown_note(values, what: str) -> list[str]:
    n = sum(1 for v in values if v == UNKNOWN)
    return [f"{n} paragraphs have no known {what}; they are counted under '{UNKNOWN_NAME}' (the paper has none)."] if n else []


def paper_tables(c: Corpus, bins: YearBins | None = None) -> dict[str, Table]:
    """Table 1 … Table 12 in the paper's layout; tables whose dimension the codebook lacks are omitted."""
    bins = bins or YearBins()
    book, coded = c.book, c.coded
    dims = set(book.dimension_ids)
    n_coded, n_uncoded = len(coded), int((~c.paragraphs["coded"]).sum())
    unit = (f"n = coded paragraphs (the paper's 'policy texts': at least one label in any dimension); "
            f"{n_uncoded} paragraphs without any label (titles, formulas) are not counted.")
    levels = _meta_categories(list(coded["level"]), meta_order(book, "level"), LEVEL_NAMES)
    natures = _meta_categories(list(coded["nature"]), meta_order(book, "nature"), NATURE_NAMES)
    merged = _meta_categories(list(coded["level"]), meta_order(book, "level"), LEVEL_NAMES, PAPER_LEVEL_MERGE)
    merged_level = coded["level"].map(lambda v: PAPER_LEVEL_MERGE.get(v, v))
    merge_note = ("Provincial and municipal documents are merged into one column, as in the paper."
                  if any(k == "provincial_municipal" for k, _ in merged) else "")
    tables: dict[str, Table] = {}

    lv = Counter(coded["level"])
    tables["Table 1"] = dist_table(
        "Table 1", "Distribution of policy level of the coded policy texts 政策层级分布", "政策层级 Policy level",
        "段落 Policies", [(name, "label", lv.get(k, 0)) for k, name in levels], n_coded,
        [unit, *_unknown_note(coded["level"], "level")], 1)
    nt = Counter(coded["nature"])
    tables["Table 2"] = dist_table(
        "Table 2", "Distribution of policy nature of the coded policy texts 政策性质分布", "政策性质 Policy nature",
        "段落 Policies", [(name, "label", nt.get(k, 0)) for k, name in natures], n_coded,
        [unit, *_unknown_note(coded["nature"], "nature")], 2)

    if TOOL in dims:
        tables["Table 3"] = tool_codes_table(
            book, coded, "Table 3", 3, "Distribution of policy tools (n={n}) 政策工具分布",
            ["n = tool codes: a paragraph with k sub-tools counts k times; a group's n is the sum of its "
             "sub-tool codes; every % is over all tool codes, as in the paper."])

    if STAKEHOLDER in dims:
        codes = Counter(l for ls in coded[STAKEHOLDER] for l in ls)
        n_codes = sum(codes.values())
        tables["Table 4"] = dist_table(
            "Table 4", f"Distribution of stakeholders (n={n_codes}) 利益相关者分布", name_of(book.dimension(STAKEHOLDER)),
            "参与 Participation", [(name_of(l), "label", codes.get(l.id, 0)) for l in book.dimension(STAKEHOLDER).labels],
            n_codes, ["n = stakeholder codes (a paragraph addressing k stakeholders counts k times); % of all stakeholder codes."],
            4, dimension=STAKEHOLDER)

    if ORIENTATION in dims:
        oriented = coded[coded[ORIENTATION].map(len) > 0]
        multi = int((oriented[ORIENTATION].map(len) > 1).sum())
        codes = Counter(l for ls in oriented[ORIENTATION] for l in ls)
        notes = [f"n = coded paragraphs with an orientation ({len(oriented)}; {n_coded - len(oriented)} coded paragraphs "
                 "have none). The paper coded exactly one orientation per paragraph."]
        if multi:
            notes.append(f"Orientation is multi-label in policytag: {multi} paragraphs have more than one, each counted "
                         "once per orientation, so the percentages add up to more than 100 %.")
        tables["Table 5"] = dist_table(
            "Table 5", "Distribution of policy orientation of the coded policy texts 政策导向分布",
            name_of(book.dimension(ORIENTATION)), "段落 Policies",
            [(name_of(l), "label", codes.get(l.id, 0)) for l in book.dimension(ORIENTATION).labels],
            len(oriented), notes, 5, dimension=ORIENTATION)

    row_note = "Row % within each sub-tool; a group's Total sums its sub-tools. N/A: zero cell (not applicable)."
    if TOOL in dims and STAKEHOLDER in dims:
        pairs = Counter((t, s) for ts, ss in zip(coded[TOOL], coded[STAKEHOLDER]) for t in ts for s in ss)
        cols = [(l.id, name_of(l)) for l in book.dimension(STAKEHOLDER).labels]
        t = row_table("Table 6", "", book, TOOL, pairs, cols,
                      ["n = tool × stakeholder co-occurrences: a paragraph with 2 sub-tools and 3 stakeholders counts 6 "
                       "times, as the paper's n = 2,997 > 1,929 tool codes implies.", row_note], 6)
        t.title = f"2D distribution of policy tools and stakeholders (n={t.row_n[-1]}) 政策工具×利益相关者"
        tables["Table 6"] = t

    def tool_by(key, number, title, column: pd.Series, columns, notes):
        pairs = Counter((l, ck) for ls, ck in zip(coded[TOOL], column) for l in ls)
        t = row_table(key, "", book, TOOL, pairs, columns, notes + [row_note], number)
        t.title = title.format(n=t.row_n[-1])
        t.timeline = number == 11
        tables[key] = t

    def orientation_by(key, number, title, column: pd.Series, columns, notes, total_column=False):
        ncol = ("Column % over the coded paragraphs with an orientation in that column (n per column); "
                "N/A: zero cell (not applicable).")
        multi = ["Orientation is multi-label in policytag: a paragraph with several orientations counts in each, "
                 "so a column can exceed 100 %."] if (coded[ORIENTATION].map(len) > 1).any() else []
        tables[key] = col_table(key, title, book, ORIENTATION, coded, column, columns, notes + [ncol] + multi, number,
                                total_column)

    years11 = coded["year"].map(lambda y: bins.bin(y, 11))
    years12 = coded["year"].map(lambda y: bins.bin(y, 12))

    def year_columns(binned: pd.Series) -> list[tuple[str, str]]:
        return [(name, name) for _, name in sorted(set(binned))]

    if TOOL in dims:
        tool_by("Table 7", 7, "2D distribution of policy tools and policy levels (n={n}) 政策工具×政策层级", merged_level,
                merged, ["n = tool codes by the policy level of their paragraph. " + merge_note,
                         *_unknown_note(coded["level"], "level")])
    if ORIENTATION in dims:
        orientation_by("Table 8", 8, "2D distribution of policy orientations and policy levels 政策导向×政策层级",
                       merged_level, merged, [merge_note, *_unknown_note(coded["level"], "level")])
    if TOOL in dims:
        tool_by("Table 9", 9, "2D distribution of policy tools and policy nature (n={n}) 政策工具×政策性质", coded["nature"],
                natures, ["n = tool codes by the policy nature of their paragraph.",
                          *_unknown_note(coded["nature"], "nature")])
    if ORIENTATION in dims:
        orientation_by("Table 10", 10, "2D distribution of policy orientation and policy nature 政策导向×政策性质",
                       coded["nature"], natures, [*_unknown_note(coded["nature"], "nature")])
    if TOOL in dims:
        tool_by("Table 11", 11, "2D distribution of policy tools and release time (n={n}) 政策工具×发布时间",
                years11.map(lambda b: b[1]), year_columns(years11),
                [f"n = tool codes by release year; {bins.describe(11)}.", *_unknown_note(coded["year"], "year")])
    if ORIENTATION in dims:
        oriented_n = int((coded[ORIENTATION].map(len) > 0).sum())
        orientation_by("Table 12", 12, f"2D distribution of policy orientations and release time (n={oriented_n}) "
                       "政策导向×发布时间", years12.map(lambda b: b[1]), year_columns(years12),
                       [f"{bins.describe(12).capitalize()}.", *_unknown_note(coded["year"], "year")], total_column=True)
        tables["Table 12"].timeline = True
    for t in tables.values():
        t.notes = [n for n in t.notes if n]
    return tables


# -- extra views the paper lacks ------------------------------------------------------------------
def extra_tables(c: Corpus, covered: tuple[str, ...] = (TOOL, STAKEHOLDER, ORIENTATION),
                 source: str = "the paper") -> dict[str, Table]:
    """Views `source` lacks; a distribution for each dimension the numbered tables do not cover."""
    book, docs, coded = c.book, c.docs, c.coded
    n_docs = len(docs)
    extras: dict[str, Table] = {}
    letters = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    mark = f"Extra view, not in {source}."

    def add(table: Table) -> None:
        key = f"Extra {next(letters)}"
        table.key = key
        extras[key] = table

    for col, names, what in (("level", LEVEL_NAMES, "政策层级 Policy level"), ("nature", NATURE_NAMES, "政策性质 Policy nature")):
        counts = Counter(docs[col])
        cats = _meta_categories(list(docs[col]), meta_order(book, col), names)
        add(dist_table("", f"Documents per {what.split(' ', 1)[1].lower()} 文件数×{what.split(' ')[0]}", what, "文件 Documents",
                       [(name, "label", counts.get(k, 0)) for k, name in cats], n_docs,
                       [mark + " n = documents (the paper's Tables 1–2 count paragraphs)."]))
    years = Counter(docs["year"])
    entries = [(str(y), "label", years[y]) for y in sorted(k for k in years if k != UNKNOWN)]
    if years.get(UNKNOWN):
        entries.append((UNKNOWN_NAME, "label", years[UNKNOWN]))
    figure = " (the paper's Figure 3)" if source == "the paper" else ""
    add(dist_table("", f"Documents per release year 文件数×发布年份{figure}", "发布年份 Release year",
                   "文件 Documents", entries, n_docs,
                   [mark + (" The paper shows this distribution as its Figure 3." if figure else "")], sort=False))
    # How many labels coded paragraphs carry per dimension: where this corpus departs from one-code-per-paragraph.
    bands = ["0", "1", "2", "3+"]
    rows, counts = [], []
    for d in book.dimensions:
        sizes = Counter(min(len(ls), 3) for ls in coded[d.id])
        rows.append(name_of(d))
        counts.append([sizes.get(k, 0) for k in range(4)])
    n = len(coded)
    add(Table("", "Labels per coded paragraph 每段标签数 (multi-label notes)", "row", "维度 Dimension", rows,
              ["label"] * len(rows), [f"{b} labels" for b in bands], counts, [[n] * 4 for _ in rows], [n] * len(rows),
              [None] * 4, [mark + " Row % of the coded paragraphs with 0, 1, 2 or 3+ labels in each dimension"
                                  + ("; the paper coded one orientation per paragraph." if ORIENTATION in book.dimension_ids
                                     and source == "the paper" else ".")]))
    for d in book.dimensions:
        if d.id in covered:
            continue
        codes = Counter(l for ls in coded[d.id] for l in ls)
        add(dist_table("", f"Distribution of {d.en.lower()} {d.zh}分布", name_of(d), "编码 Codes",
                       [(name_of(l), "label", codes.get(l.id, 0)) for l in d.labels], sum(codes.values()),
                       [mark + f" n = {d.en.lower()} codes; % of all codes in this dimension."], dimension=d.id))
    if c.unknown_labels:
        add(dist_table("", "Labels not in the codebook (ignored) 未识别标签", "标签 Label", "段落 Paragraphs",
                       [(k, "label", v) for k, v in c.unknown_labels.most_common()], sum(c.unknown_labels.values()),
                       [mark + " These values are not label ids or names of this codebook and were not counted."]))
    return extras


def sixd_tables(frame: pd.DataFrame, book: Codebook, bins: YearBins | None = None) -> dict[str, Table]:
    """The 6D paper's Table 1 … Table 12 (those the codebook allows), then the extra views."""
    c = corpus(frame, book)
    return {**paper_tables(c, bins), **extra_tables(c)}
