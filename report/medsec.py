"""The medical-security (medsec) study's tables for a corpus tagged with the medsec codebook, and the
study's published figures for `policytag report --compare paper`.

The study is the Shanghai multi-level medical-security framework (53 Shanghai documents, 297 tool
codes) that labels/medsec.yaml (= ../shared/codebook/medsec.yaml) codes. It publishes:
- Table 1: policy tools — the three groups (supply / environment / demand) with their n and share,
  each sub-tool's count and share of all tool codes (n = 297 tool codes);
- the distribution of its five policy objectives (code points and shares).
Those figures sit in the codebook header as YAML comments; PUBLISHED_* below is the one
machine-readable copy (tests/test_medsec.py checks it against that header).

The report's numbered tables for medsec:
  Table 1   policy tools, the study's Table 1 layout            (compared with the study)
  Table 2   policy objectives, paragraphs per objective          (compared with the study)
  Table 3   policy level of the coded paragraphs                 Table 4   policy nature
  Table 5/6 tools / objectives × level                           Table 7/8 tools / objectives × nature
  Table 9/10 tools / objectives × release year
Tables 3–10 are not in the study; they are counted with the 6D report's conventions (report/sixd.py):
tools × metadata as row % per sub-tool with group Totals, objectives × metadata as column %. A table is
left out when the codebook lacks its dimension or no coded paragraph has a known value of its metadata.
"""
from __future__ import annotations

import pandas as pd

from policytag.labels.schema import Codebook

from .sixd import (LEVEL_NAMES, NATURE_NAMES, TOOL, UNKNOWN, Corpus, Table, YearBins, _meta_categories,
                   _unknown_note, col_table, corpus, dist_table, meta_order, name_of, row_table, tool_codes_table)

SCHEMA = "medsec"
OBJECTIVE = "objective"
COVERED = (TOOL, OBJECTIVE)          # dimensions the numbered tables show; extras show the others
SOURCE = "the study"                 # how notes and the HTML page name the publication
STUDY = "the Shanghai multi-level medical-security study"
CITATION = ("the Shanghai multi-level medical-security study (53 Shanghai documents, 297 tool codes; figures as "
            "given in the header of ../shared/codebook/medsec.yaml)")
HEADING = "Medical-security policy report 医疗保障政策文本分析"

# fmt: off
# The study's Table 1: tool codes per sub-tool (codebook ids), groups in its order; a group's n is the
# sum of its sub-tools. Printed group shares over all PUBLISHED_TOOL_N codes.
PUBLISHED_TOOLS: dict[str, dict[str, int]] = {
    "supply": {"talent_manpower": 17, "basic_security_facilities": 74, "materials_capital": 35, "technology_it": 35},
    "environment": {"institutional_system": 40, "publicity_guidance": 12, "supervision_assessment": 38},
    "demand": {"pilot_demonstration": 16, "joint_procurement": 8, "social_participation": 22},
}
PUBLISHED_TOOL_N = 297
PUBLISHED_GROUP_SHARES = {"supply": "54.21", "environment": "30.30", "demand": "15.49"}
# The study's objectives: (code points, printed %). The counts sum to 197 while every printed % is
# count / 178: read as 178 paragraphs with an objective, 19 of them with two (multi-label), which
# reproduces every printed figure. The codebook header calls it an inconsistency in the publication.
PUBLISHED_OBJECTIVES: dict[str, tuple[int, str]] = {
    "coordinated_development": (27, "15.17"), "service_connection": (27, "15.17"),
    "long_term_planning": (29, "16.29"), "governance_modernization": (84, "47.19"),
    "sustainable_development": (30, "16.85"),
}
PUBLISHED_OBJECTIVE_BASE = 178
# fmt: on

OBJECTIVE_BASE_NOTE = (f"The study prints objective counts that sum to {sum(n for n, _ in PUBLISHED_OBJECTIVES.values())} "
                       f"with every % over {PUBLISHED_OBJECTIVE_BASE}; read here as {PUBLISHED_OBJECTIVE_BASE} paragraphs "
                       "with an objective, some with two (objectives are multi-label), which reproduces all its printed "
                       "figures; the codebook header flags it as an inconsistency in the publication.")

# number -> (label dimension or None, metadata column or None, title)
SPEC: dict[int, tuple[str | None, str | None, str]] = {
    1: (TOOL, None, "Distribution of policy tools (n={n}) 政策工具分布"),
    2: (OBJECTIVE, None, "Distribution of policy objectives of the coded paragraphs (n={n}) 政策目标分布"),
    3: (None, "level", "Distribution of policy level of the coded paragraphs 政策层级分布"),
    4: (None, "nature", "Distribution of policy nature of the coded paragraphs 政策性质分布"),
    5: (TOOL, "level", "2D distribution of policy tools and policy levels (n={n}) 政策工具×政策层级"),
    6: (OBJECTIVE, "level", "2D distribution of policy objectives and policy levels 政策目标×政策层级"),
    7: (TOOL, "nature", "2D distribution of policy tools and policy nature (n={n}) 政策工具×政策性质"),
    8: (OBJECTIVE, "nature", "2D distribution of policy objectives and policy nature 政策目标×政策性质"),
    9: (TOOL, "year", "2D distribution of policy tools and release time (n={n}) 政策工具×发布时间"),
    10: (OBJECTIVE, "year", "2D distribution of policy objectives and release time (n={n}) 政策目标×发布时间"),
}


def applies(book: Codebook) -> bool:
    """The medsec layout is used for the codebook named medsec (labels/medsec.yaml)."""
    return book.name == SCHEMA


def _known(values: pd.Series) -> bool:
    return bool(len(values)) and bool((values != UNKNOWN).any())


def omitted(c: Corpus) -> list[str]:
    """Why each numbered table is missing for this corpus, one note per reason."""
    dims, coded = set(c.book.dimension_ids), c.coded
    reasons: dict[str, list[str]] = {}
    for number, (dim, meta, _) in SPEC.items():
        if dim is not None and dim not in dims:
            why = f"codebook {c.book.name} has no {dim} dimension"
        elif meta is not None and not _known(coded[meta]):
            why = f"no coded paragraph has a known {meta}"
        else:
            continue
        reasons.setdefault(why, []).append(f"Table {number}")
    return [f"Not produced ({why}): {', '.join(keys)}." for why, keys in reasons.items()]


def study_tables(c: Corpus, bins: YearBins | None = None) -> dict[str, Table]:
    """The numbered tables of SPEC that this codebook and corpus allow."""
    bins = bins or YearBins()
    book, coded = c.book, c.coded
    dims = set(book.dimension_ids)
    n_coded, n_uncoded = len(coded), int((~c.paragraphs["coded"]).sum())
    unit = (f"n = coded paragraphs (at least one label in any dimension); {n_uncoded} paragraphs without any label "
            "(titles, formulas) are not counted.")
    not_in_study = f"Not in {STUDY}; counted with the 6D report's conventions."
    row_note = "Row % within each sub-tool; a group's Total sums its sub-tools. N/A: zero cell (not applicable)."
    col_note = ("Column % over the coded paragraphs with an objective in that column (n per column); objectives are "
                "multi-label, so a column can exceed 100 %. N/A: zero cell (not applicable).")
    years = coded["year"].map(lambda y: bins.bin(y, 12))  # one column per year unless --year-bins gives edges
    year_desc = "one column per release year" if bins.spec in ("paper", "years") else bins.describe(12)
    columns = {
        "level": (coded["level"], _meta_categories(list(coded["level"]), meta_order(book, "level"), LEVEL_NAMES)),
        "nature": (coded["nature"], _meta_categories(list(coded["nature"]), meta_order(book, "nature"), NATURE_NAMES)),
        "year": (years.map(lambda b: b[1]), [(name, name) for _, name in sorted(set(years))]),
    }
    tables: dict[str, Table] = {}
    for number, (dim, meta, title) in SPEC.items():
        key = f"Table {number}"
        if (dim is not None and dim not in dims) or (meta is not None and not _known(coded[meta])):
            continue
        unknown = _unknown_note(coded[meta], meta) if meta else []
        if number == 1:
            t = tool_codes_table(book, coded, key, number, title, [
                f"Layout of Table 1 of {STUDY}: each tool group with its n and share, each sub-tool's count and share "
                "of all tool codes.",
                "n = tool codes: a paragraph with k sub-tools counts k times; a group's n is the sum of its sub-tool "
                "codes; every % is over all tool codes."])
        elif number == 2:
            having = coded[coded[OBJECTIVE].map(len) > 0]
            multi = int((having[OBJECTIVE].map(len) > 1).sum())
            counts = {l.id: 0 for l in book.dimension(OBJECTIVE).labels}
            for ls in having[OBJECTIVE]:
                for l in ls:
                    counts[l] += 1
            notes = [f"The objectives distribution of {STUDY}, in its order.",
                     f"n = coded paragraphs with an objective ({len(having)}; {n_coded - len(having)} coded paragraphs "
                     "have none); a paragraph counts once per objective it carries."]
            if multi:
                notes.append(f"Objectives are multi-label: {multi} paragraphs have more than one, so the percentages "
                             "add up to more than 100 %.")
            t = dist_table(key, title.format(n=len(having)), name_of(book.dimension(OBJECTIVE)), "段落 Paragraphs",
                           [(name_of(l), "label", counts[l.id]) for l in book.dimension(OBJECTIVE).labels],
                           len(having), notes, number, sort=False, dimension=OBJECTIVE)
        elif dim is None:
            values, cats = columns[meta]
            t = dist_table(key, title, {"level": "政策层级 Policy level", "nature": "政策性质 Policy nature"}[meta],
                           "段落 Paragraphs", [(name, "label", int((values == k).sum())) for k, name in cats], n_coded,
                           [unit, not_in_study, *unknown], number)
        elif dim == TOOL:
            values, cats = columns[meta]
            pairs = {}
            for ls, ck in zip(coded[TOOL], values):
                for l in ls:
                    pairs[(l, ck)] = pairs.get((l, ck), 0) + 1
            what = {"level": "the policy level", "nature": "the policy nature", "year": "the release year"}[meta]
            t = row_table(key, "", book, TOOL, pairs, cats,
                          [f"n = tool codes by {what} of their paragraph" + (f"; {year_desc}." if meta == "year" else "."),
                           row_note, not_in_study, *unknown], number)
            t.title = title.format(n=t.row_n[-1])
            t.timeline = meta == "year"
        else:
            values, cats = columns[meta]
            having = int((coded[OBJECTIVE].map(len) > 0).sum())
            t = col_table(key, title.format(n=having), book, OBJECTIVE, coded, values, cats,
                          ([f"{year_desc.capitalize()}."] if meta == "year" else []) + [col_note, not_in_study, *unknown],
                          number, total_column=meta == "year")
            t.timeline = meta == "year"
        t.notes = [n for n in t.notes if n]
        tables[key] = t
    return tables


# -- the study's published figures as a corpus -----------------------------------------------------
def study_corpus(book: Codebook) -> pd.DataFrame:
    """A coded corpus (tags-file columns) with exactly the study's published counts: one paragraph per
    tool code (297), and 178 of them carrying the 197 objective codes (the first 19 carry two).
    Empty if the codebook lacks the study's labels."""
    tools = [l for group in PUBLISHED_TOOLS.values() for l, n in group.items() for _ in range(n)]
    objectives = [l for l, (n, _) in PUBLISHED_OBJECTIVES.items() for _ in range(n)]
    base = PUBLISHED_OBJECTIVE_BASE
    per_paragraph = [[objectives[i]] + ([objectives[base + i]] if base + i < len(objectives) else []) for i in range(base)]
    assert all(len(set(o)) == len(o) for o in per_paragraph)
    rows = [{"doc_id": f"study-{i}", "paragraph_index": 0, "level": None, "nature": None, "year": None,
             "tool": [t], OBJECTIVE: per_paragraph[i] if i < base else []} for i, t in enumerate(tools)]
    frame = pd.DataFrame(rows)
    try:
        ok = (set(tools) <= set(book.dimension(TOOL).label_ids)
              and set(objectives) <= set(book.dimension(OBJECTIVE).label_ids)
              and all(book.label(l).group == g for g, labels in PUBLISHED_TOOLS.items() for l in labels))
    except KeyError:
        ok = False
    return frame if ok else frame.iloc[0:0]


def study_reference(book: Codebook) -> tuple[dict[str, Table], dict[str, str]]:
    """The study's Tables 1–2 counted by the same code from its published counts, and {table: why not}."""
    frame = study_corpus(book)
    if frame.empty:
        return {}, {key: f"codebook {book.name} lacks the study's labels" for key in ("Table 1", "Table 2")}
    built = study_tables(corpus(frame, book))
    return {k: built[k] for k in ("Table 1", "Table 2") if k in built}, {}


def compare_with_study(ours: dict[str, Table], book: Codebook, ours_name: str):
    """Tables 1–2 beside the study's published figures; notes on what could not be compared."""
    from .compare import PAPER, compare_all

    reference, why = study_reference(book)
    comparisons = compare_all({k: t for k, t in ours.items() if k in reference}, reference, ours_name, PAPER)
    for c in comparisons.values():
        c.notes.append(f"Paper: {CITATION}; its % recomputed from its published n (they reproduce every printed share).")
        if c.key == "Table 2":
            c.notes.append(OBJECTIVE_BASE_NOTE)
    notes = []
    skipped = [k for k in why if k in ours]
    if skipped:
        notes.append(f"Not compared with the study ({next(iter(why.values()))}): {', '.join(skipped)}.")
    rest = [k for k, t in ours.items() if t.number is not None and k not in reference and k not in why]
    if rest:
        notes.append(f"Not compared with the study (it publishes no such table): {', '.join(rest)}.")
    return comparisons, notes
