"""The 6D paper's published Tables 1–12 (Yu, Wang & You, JMIR 2024;26:e47197) as reference data.

This is the one place where the paper's category names and IHMS label ids are written out: it
is the paper's data, not counting code. `paper_corpus(number, book)` turns a published table
back into a synthetic coded corpus with exactly the paper's counts, so the reference goes through
the same counting code as any tagged corpus (`policytag report --compare paper`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from policytag.labels.schema import Codebook

CITATION = "Yu, Wang & You, JMIR 2024;26:e47197 (152 documents, 1,345 coded paragraphs)"

# The paper's category names -> (column in a tags file, value). Labels are IHMS codebook ids.
PAPER_NAMES: dict[str, tuple[str, object]] = {
    **{name: ("tool", i) for name, i in {
        "Talent construction": "talent_construction", "Financial guarantee": "financial_guarantee",
        "Information support": "information_support", "Technical support": "technical_support",
        "Rational layout": "rational_layout", "Medical insurance payment": "medical_insurance_payment",
        "Medicine supply": "medicine_supply", "Price adjustment": "price_adjustment",
        "Ability building": "ability_building", "Adhere to public welfare": "adhere_public_welfare",
        "Orderly medical treatment": "orderly_treatment", "Demonstration project": "demonstration_project",
        "Objective programming": "objective_programming", "Institutional building": "institutional_building",
        "Incentive and restraint": "incentive_restraint", "Policy promotion": "policy_promotion",
        "Functional localization": "functional_localization", "Resource sharing": "resource_sharing"}.items()},
    **{name: ("stakeholder", i) for name, i in {
        "Governments": "government", "Second-class-and-above hospitals": "higher_hospital",
        "Grassroots hospitals": "grassroots_institution", "Physicians": "physician", "Residents": "resident"}.items()},
    **{name: ("orientation", i) for name, i in {
        "Graded diagnosis and treatment": "graded_diagnosis", "Medical association": "medical_association",
        "Smart health care": "smart_health", "Healthy community": "healthy_community",
        "Healthy China": "healthy_china"}.items()},
    "National level": ("level", "national"), "Provincial level": ("level", "provincial"),
    "Municipal level": ("level", "municipal"), "Shanghai": ("level", "shanghai"),
    # merged in Tables 7 and 8; the synthetic corpus alternates the two so the merge is exercised
    "Provincial and municipal level": ("level", ("provincial", "municipal")),
    "Planning policy": ("nature", "planning"), "Detailed regulations": ("nature", "detailed_regulation"),
    # Table 11's first bin; the synthetic corpus alternates 2014/2015 (the paper starts in 2014)
    "2015 and before": ("year", (2014, 2015)),
    **{str(y): ("year", y) for y in range(2014, 2022)},
}

# The paper's years (Table 11 bins them from its first year to 2015).
PAPER_YEAR_BINS = "paper"

# fmt: off
# The paper's Tables 1-12 exactly as published (tab-separated), copied from
# ../shared/reference/paper-6d-tables.md so the package works without it; a test checks the copy.
PUBLISHED: dict[int, tuple[str, str]] = {
    1: ('Distribution of policy level of marked integrated health management system policy texts.',
        'Policy level\tPolicies (n=1345), n (%)\nProvincial level\t659 (49)\nNational level\t275 (20.45)\nMunicipal level\t253 (18.81)\nShanghai\t158 (11.75)\n'),
    2: ('Distribution of policy nature of marked integrated health management system policy texts.',
        'Policy nature\tPolicies (n=1345), n (%)\nPlanning policy\t674 (50.11)\nDetailed regulations\t671 (49.89)\n'),
    3: ('Distribution of policy tools of the integrated health management system (n=1929).',
        'Policy tool and secondary classification\tPolicy tools, n (%)\nSupply-based (n=357)\nTalent construction\t75 (3.89)\nFinancial guarantee\t37 (1.92)\nInformation support\t127 (6.58)\nTechnical support\t18 (0.93)\nRational layout\t100 (5.18)\nDemand-based (n=483)\nMedical insurance payment\t73 (3.78)\nMedicine supply\t40 (2.07)\nPrice adjustment\t38 (1.97)\nAbility building\t59 (3.06)\nAdhere to public welfare\t24 (1.24)\nOrderly medical treatment\t197 (10.21)\nDemonstration project\t52 (2.7)\nEnvironment-based (n=1089)\nObjective programming\t223 (11.56)\nInstitutional building\t253 (13.12)\nIncentive and restraint\t187 (9.69)\nPolicy promotion\t49 (2.54)\nFunctional localization\t241 (12.49)\nResource sharing\t136 (7.05)\n'),
    4: ('Distribution of stakeholders in the integrated health management system (n=2019).',
        'Stakeholders\tParticipation, n (%)\nGovernments\t1154 (57.16)\nGrassroots hospitals\t461 (22.83)\nSecond-class-and-above hospitals\t328 (16.25)\nPhysicians\t65 (3.22)\nResidents\t11 (0.54)\n'),
    5: ('Distribution of policy orientation of marked integrated health management system policy texts.',
        'Policy orientation\tPolicies (n=1345), n (%)\nMedical association\t778 (57.84)\nGraded diagnosis and treatment\t486 (36.13)\nSmart health care\t36 (2.68)\nHealthy community\t24 (1.78)\nHealthy China\t21 (1.56)\n'),
    6: ('2D distribution table of policy tools and stakeholders of the integrated health management system (n=2997).',
        'Policy tool and secondary classification\tGovernments, n (%)\tSecond-class-and-above hospitals, n (%)\tGrassroots hospitals, n (%)\tPhysicians, n (%)\tResidents, n (%)\nSupply-based\nTalent construction (n=143)\t53 (37.06)\t46 (32.17)\t36 (25.17)\t8 (5.59)\tN/A\nFinancial guarantee (n=42)\t37 (88.1)\t2 (4.76)\t2 (4.76)\t1 (2.38)\tN/A\nInformation support (n=225)\t121 (53.78)\t76 (33.78)\t27 (12)\t1 (0.44)\tN/A\nTechnical support (n=30)\t15 (50)\t10 (33.33)\t5 (16.77)\tN/A\tN/A\nRational layout (n=180)\t90 (50)\t48 (26.67)\t40 (22.22)\t2 (1.11)\tN/A\nTotal (n=620)\t316 (50.97)\t182 (29.35)\t110 (17.74)\t12 (1.94)\t0 (0)\nDemand-based\nMedical insurance payment (n=94)\t73 (77.66)\t11 (11.7)\t8 (8.51)\t2 (2.13)\tN/A\nMedicine supply (n=63)\t35 (55.56)\t15 (23.81)\t12 (19.05)\t1 (1.59)\tN/A\nPrice adjustment (n=52)\t38 (73.08)\t8 (15.38)\t6 (11.54)\tN/A\tN/A\nAbility building (n=117)\t43 (36.75)\t40 (34.19)\t33 (28.21)\t1 (0.85)\tN/A\nAdhere to public welfare (25)\t23 (92)\t1 (4)\t1 (4)\tN/A\tN/A\nOrderly medical treatment (n=396)\t121 (30.56)\t118 (29.8)\t99 (25)\t48 (12.12)\t10 (2.53)\nDemonstration project (n=80)\t52 (65)\t15 (18.75)\t13 (16.25)\tN/A\tN/A\nTotal (n=827)\t385 (46.55)\t208 (25.15)\t172 (20.8)\t52 (6.29)\t10 (1.21)\nEnvironment-based\nObjective programming (n=273)\t219 (80.22)\t30 (10.99)\t20 (7.33)\t3 (1.1)\t1 (0.37)\nInstitutional building (n=371)\t239 (64.42)\t64 (17.25)\t51 (13.75)\t14 (3.77)\t3 (0.81)\nIncentive and restraint (n=241)\t169 (70.12)\t48 (19.92)\t20 (8.3)\t3 (1.24)\t1 (0.41)\nPolicy promotion (n=56)\t48 (85.71)\t3 (5.36)\t5 (8.93)\tN/A\tN/A\nFunctional localization (n=351)\t189 (53.85)\t94 (26.78)\t68 (19.37)\tN/A\tN/A\nResource sharing (n=258)\t128 (49.61)\t74 (28.68)\t52 (20.16)\t4 (1.55)\tN/A\nTotal (n=1550)\t992 (64)\t313 (20.19)\t216 (13.94)\t24 (1.55)\t5 (0.32)\nGrand total (n=2997)\t1693 (56.49)\t703 (23.46)\t498 (16.62)\t88 (2.94)\t15 (0.5)\nN/A: not applicable.\n'),
    7: ('2D distribution table of policy tools and policy levels of the integrated health management system (n=1929).',
        'Policy tool and secondary classification\tNational level, n (%)\tProvincial and municipal level, n (%)\tShanghai, n (%)\nSupply-based\nTalent construction (n=75)\t10 (13.33)\t59 (78.67)\t6 (8)\nFinancial guarantee (n=37)\t4 (10.81)\t28 (75.68)\t5 (13.51)\nInformation support (n=127)\t33 (25.98)\t77 (60.63)\t17 (13.39)\nTechnical support (n=18)\t2 (11.11)\t8 (44.44)\t8 (44.44)\nRational layout (n=100)\t12 (12)\t76 (76)\t12 (12)\nTotal (n=357)\t61 (17.09)\t248 (69.47)\t48 (13.45)\nDemand-based\nMedical insurance payment (n=73)\t6 (8.22)\t61 (84.56)\t6 (8.22)\nMedicine supply (n=40)\t5 (12.5)\t34 (85)\t1 (2.5)\nPrice adjustment (n=38)\t2 (5.26)\t33 (86.84)\t3 (7.89)\nAbility building (n=59)\t8 (13.56)\t39 (66.1)\t12 (20.34)\nAdhere to public welfare (n=24)\t4 (16.67)\t17 (70.83)\t3 (12.5)\nOrderly medical treatment (n=197)\t53 (26.9)\t131 (66.5)\t13 (6.6)\nDemonstration project (n=52)\t16 (30.77)\t31 (59.62)\t5 (9.62)\nTotal (n=483)\t94 (19.46)\t346 (71.64)\t43 (8.9)\nEnvironment-based\nObjective programming (n=223)\t21 (9.42)\t173 (77.58)\t29 (13)\nInstitutional building (n=253)\t38 (15.02)\t193 (76.28)\t22 (8.7)\nIncentive and restraint (n=187)\t41 (21.93)\t120 (64.17)\t26 (13.9)\nPolicy promotion (n=49)\t6 (12.24)\t36 (73.47)\t7 (14.29)\nFunctional localization (n=241)\t64 (26.56)\t150 (62.24)\t27 (11.2)\nResource sharing (n=136)\t26 (19.12)\t92 (67.65)\t18 (13.24)\nTotal (n=1089)\t196 (18)\t764 (70.16)\t129 (11.85)\nGrand total (n=1929)\t351 (18.2)\t1358 (70.4)\t220 (11.4)\n'),
    8: ('2D distribution table of policy orientations and policy levels of the integrated health management system.',
        'Policy orientation\tNational level (n=275), n (%)\tShanghai (n=158), n (%)\tProvincial and municipal level (n=912), n (%)\nGraded diagnosis and treatment\t120 (43.6)\t49 (31)\t317 (34.8)\nHealthy community\t9 (3.3)\t9 (5.7)\t6 (0.7)\nHealthy China\t6 (2.2)\t4 (2.5)\t11 (1.2)\nMedical association\t130 (47.3)\t92 (58.2)\t556 (61)\nSmart health care\t10 (3.6)\t4 (2.5)\t22 (2.4)\n'),
    9: ('2D distribution table of policy tools and policy nature of the integrated health management system (n=1929).',
        'Policy tool and secondary classification\tPlanning policy, n (%)\tDetailed regulations, n (%)\nSupply-based\nTalent construction (n=75)\t47 (63)\t28 (37)\nFinancial guarantee (n=37)\t21 (57)\t16 (43)\nInformation support (n=127)\t58 (45.7)\t69 (54.3)\nTechnical support (n=18)\t9 (50)\t9 (50)\nRational layout (n=100)\t46 (46)\t54 (54)\nTotal (n=357)\t181 (50.7)\t176 (49.3)\nDemand-based\nMedical insurance payment (n=73)\t45 (62)\t28 (38)\nMedicine supply (n=40)\t20 (50)\t20 (50)\nPrice adjustment (n=38)\t24 (63)\t14 (37)\nAbility building (n=59)\t40 (68)\t19 (32)\nAdhere to public welfare (n=24)\t14 (58)\t10 (42)\nOrderly medical treatment (n=197)\t112 (56.9)\t85 (43.1)\nDemonstration project (n=52)\t15 (29)\t37 (71)\nTotal (n=483)\t270 (55.9)\t213 (44.1)\nEnvironment-based\nObjective programming (n=223)\t101 (45.3)\t122 (54.7)\nInstitutional building (n=253)\t123 (48.6)\t130 (51.4)\nIncentive and restraint (n=187)\t67 (35.8)\t120 (64.2)\nPolicy promotion (n=49)\t29 (59)\t20 (41)\nFunctional localization (n=241)\t108 (44.8)\t133 (55.2)\nResource sharing (n=136)\t77 (56.6)\t59 (43.4)\nTotal (n=1089)\t505 (46.37)\t584 (53.63)\nGrand total (n=1929)\t956 (49.56)\t973 (50.44)\n'),
    10: ('2D distribution table of policy orientation and policy nature of the integrated health management system.',
        'Policy orientation\tPlanning policy (n=674), n (%)\tDetailed regulations (n=671), n (%)\nGraded diagnosis and treatment\t345 (51.2)\t141 (21)\nHealthy community\t8 (1.2)\t16 (2.4)\nHealthy China\t11 (1.6)\t10 (1.5)\nMedical association\t295 (43.8)\t483 (72)\nSmart health care\t15 (2.2)\t21 (3.1)\n'),
    11: ('2D distribution table of policy tools and release time of the integrated health management system (n=1929).',
        'Policy tool and secondary classification\t2015 and before, n (%)\t2016, n (%)\t2017, n (%)\t2018, n (%)\t2019, n (%)\t2020, n (%)\t2021, n (%)\nSupply-based\nTalent construction (n=75)\t13 (17)\t12 (16)\t29 (39)\t8 (11)\t8 (11)\t1 (1)\t4 (5)\nFinancial guarantee (n=37)\t2 (5)\t6 (16)\t20 (54)\t1 (3)\t6 (16)\t2 (5)\tN/A\nInformation support (n=127)\t11 (8.7)\t19 (15)\t39 (30.7)\t22 (17.3)\t19 (15)\t14 (11)\t3 (2.4)\nTechnical support (n=18)\t1 (6)\tN/A\t9 (50)\t2 (11)\t1 (6)\t2 (11)\t3 (17)\nRational layout (n=100)\t9 (9)\t2 (2)\t71 (71)\t3 (3)\t5 (5)\t6 (6)\t4 (4)\nTotal (n=357)\t36 (10.1)\t39 (10.9)\t168 (47.1)\t36 (10.1)\t39 (10.9)\t25 (7)\t14 (3.9)\nDemand-based\nMedical insurance payment (n=73)\t9 (12)\t17 (23)\t35 (48)\t6 (8)\t6 (8)\tN/A\tN/A\nMedicine supply (n=40)\t6 (15)\t5 (13)\t21 (53)\t6 (15)\t1 (3)\t1 (3)\tN/A\nPrice adjustment (n=38)\t6 (16)\t15 (39)\t15 (39)\t1 (3)\t1 (3)\tN/A\tN/A\nAbility building (n=59)\t9 (15)\t13 (22)\t17 (29)\t5 (8)\t10 (17)\t2 (3)\t3 (5)\nAdhere to public welfare (n=24)\t1 (4)\t2 (8)\t17 (71)\t3 (13)\tN/A\t1 (4)\tN/A\nOrderly medical treatment (n=197)\t43 (21.8)\t54 (27.4)\t71 (36)\t9 (4.6)\t15 (7.6)\t3 (1.5)\t2 (1)\nDemonstration project (n=52)\t6 (12)\t10 (19)\t21 (40)\t2 (4)\t13 (25)\tN/A\tN/A\nTotal (n=483)\t80 (16.6)\t116 (24)\t197 (40.8)\t32 (6.6)\t46 (9.5)\t7 (1.4)\t5 (1)\nEnvironment-based\nObjective programming (n=223)\t24 (10.8)\t29 (13)\t132 (59.2)\t21 (9.4)\t9 (4)\t5 (2.2)\t3 (1.3)\nInstitutional building (n=253)\t25 (9.9)\t42 (16.6)\t127 (50.2)\t33 (13)\t10 (4)\t12 (4.7)\t4 (1.6)\nIncentive and restraint (n=187)\t15 (8)\t23 (12.3)\t72 (38.5)\t56 (29.9)\t9 (4.8)\t9 (4.8)\t3 (1.6)\nPolicy promotion (n=49)\t9 (18)\t14 (29)\t19 (39)\t2 (4)\t3 (6)\t1 (2)\t1 (2)\nFunctional localization (n=241)\t23 (9.5)\t39 (16.2)\t103 (42.7)\t19 (7.9)\t28 (11.6)\t17 (7.1)\t12 (5)\nResource sharing (n=136)\t16 (11.8)\t16 (11.8)\t72 (52.9)\t7 (5.1)\t11 (8.1)\t10 (7.4)\t4 (2.9)\nTotal (n=1089)\t112 (10.28)\t163 (15.15)\t525 (48.21)\t138 (12.67)\t70 (6.43)\t54 (4.96)\t27 (2.48)\nGrand total (n=1929)\t228 (11.82)\t318 (16.49)\t890 (46.14)\t206 (10.68)\t155 (8.04)\t86 (4.46)\t46 (2.38)\nN/A: not applicable.\n'),
    12: ('2D distribution table of policy orientations and release time of the integrated health management system (n=1345).',
        'Policy orientation\t2014 (n=9), n (%)\t2015 (n=168), n (%)\t2016 (n=234), n (%)\t2017 (n=531), n (%)\t2018 (n=149), n (%)\t2019 (n=135), n (%)\t2020 (n=77), n (%)\t2021 (n=42), n (%)\tTotal, n (%)\nGraded diagnosis and treatment\t9 (100)\t104 (61.9)\t201 (85.9)\t54 (10.2)\t55 (36.9)\t57 (42.2)\tN/A \t6 (14.3)\t486 (36.1)\nHealthy community\tN/A\t2 (1.2)\t1 (0.4)\t1 (0.2)\t1 (0.7)\t4 (3)\t10 (13)\t5 (11.9)\t24 (1.8)\nHealthy China\tN/A\tN/A\t2 (0.9)\tN/A\t1 (0.7)\t12 (8.9)\t5 (6.5)\t1 (2.4)\t21 (1.6)\nMedical association\tN/A\t61 (36.3)\t28 (12)\t475 (89.5)\t77 (51.7)\t53 (39.3)\t55 (71.4)\t29 (69)\t778 (57.8)\nSmart health care\tN/A\t1 (0.6)\t2 (1.2)\t1 (0.2)\t15 (10.1)\t9 (6.7)\t7 (9.1)\t1 (2.4)\t36 (2.7)\nN/A: not applicable.\n'),
}
# fmt: on

_N_IN = re.compile(r"\s*\((?:n=)?([\d,]+)\)\s*$")  # "Talent construction (n=143)", "(25)" once
_CELL = re.compile(r"^\s*(\d+)\s*\(([\d.]+)\)\s*$")


@dataclass
class PublishedRow:
    name: str            # the paper's row name without "(n=…)"
    kind: str            # "header" (group line without cells), "label", "total", "grand"
    n: int | None        # the n printed after the name, if any
    cells: list[tuple[int, str | None]]  # (n, printed percent) per column; N/A -> (0, None)


@dataclass
class PublishedTable:
    number: int
    title: str
    row_header: str
    columns: list[str]           # column names without "(n=…)" and ", n (%)"
    column_n: list[int | None]   # n printed in the column header
    rows: list[PublishedRow]


def _strip_n(text: str) -> tuple[str, int | None]:
    text = text.strip()
    m = _N_IN.search(text)
    if m:
        return text[: m.start()].strip(), int(m.group(1).replace(",", ""))
    return text, None


def parse_published(number: int, title: str, body: str) -> PublishedTable:
    """One published table: rows with (n, printed %) cells; 'N/A' cells are zero counts."""
    lines = [l.rstrip("\n") for l in body.strip("\n").split("\n")]
    lines = [l for l in lines if l.strip() and not l.startswith("N/A:")]
    header = lines[0].split("\t")
    columns, column_n = [], []
    for col in header[1:]:
        name, n = _strip_n(re.sub(r",\s*n \(%\)\s*$", "", col.strip()))
        columns.append(name)
        column_n.append(n)
    rows = []
    for line in lines[1:]:
        parts = line.split("\t")
        name, n = _strip_n(parts[0])
        if len(parts) == 1:
            rows.append(PublishedRow(name, "header", n, []))
            continue
        cells = []
        for raw in parts[1:]:
            raw = raw.strip()
            if raw == "N/A":
                cells.append((0, None))
                continue
            m = _CELL.match(raw)
            if not m:
                raise ValueError(f"Table {number}: cannot read cell {raw!r} in row {name!r}")
            cells.append((int(m.group(1)), m.group(2)))
        kind = "grand" if name == "Grand total" else "total" if name == "Total" else "label"
        rows.append(PublishedRow(name, kind, n, cells))
    return PublishedTable(number, title, header[0].strip(), columns, column_n, rows)


def published_tables() -> dict[int, PublishedTable]:
    return {n: parse_published(n, title, body) for n, (title, body) in PUBLISHED.items()}


def _value(name: str, i: int):
    column, value = PAPER_NAMES[name]
    if isinstance(value, tuple):  # a merged category: spread its paragraphs over its members
        value = value[i % len(value)]
    return column, value


def paper_corpus(number: int, book: Codebook | None = None) -> pd.DataFrame:
    """A coded corpus (one row per paragraph, tags-file columns) with exactly the published
    counts of one table. Tables 1-2 need their paragraphs coded: each gets the codebook's first
    label. Returns an empty frame if the table names labels this codebook does not have."""
    table = published_tables()[number]
    filler = None
    if book is not None and number in (1, 2):
        filler = (book.dimensions[0].id, book.dimensions[0].labels[0].id)
    rows = []
    for prow in table.rows:
        if prow.kind != "label":
            continue
        for cname, (count, _) in zip(table.columns, prow.cells):
            if cname == "Total":  # Table 12's margin, not a category
                continue
            for i in range(count):
                row = {"level": None, "nature": None, "year": None, "tool": [], "stakeholder": [], "orientation": []}
                for name in (prow.name, cname):
                    if name in PAPER_NAMES:
                        col, value = _value(name, i)
                        row[col] = [value] if col in ("tool", "stakeholder", "orientation") else value
                if filler:
                    row[filler[0]] = [filler[1]]
                rows.append(row)
    frame = pd.DataFrame(rows, columns=["level", "nature", "year", "tool", "stakeholder", "orientation"])
    frame.insert(0, "doc_id", [f"paper-t{number}-{i}" for i in range(len(frame))])
    frame.insert(1, "paragraph_index", 0)
    if book is not None:
        for dim in ("tool", "stakeholder", "orientation"):
            used = {v for labels in frame[dim] for v in labels}
            if used and (dim not in book.dimension_ids or not used <= set(book.dimension(dim).label_ids)):
                return frame.iloc[0:0]
    return frame
