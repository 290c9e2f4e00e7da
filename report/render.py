"""Writing the 6D report: one .xlsx workbook, a CSV per table, PNG charts and a self-contained HTML page.

Chinese labels need a font with CJK glyphs. The PyPI package `mplfonts` ships Noto Sans CJK SC
(SIL OFL) inside its wheel, so a pip install is enough; it is registered with matplotlib at run
time. Fonts installed on the system are the fallback.
"""
from __future__ import annotations

import base64
import html
import importlib.util
import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from policytag.files import atomic_path, write_text_atomic  # noqa: E402

from .compare import Comparison  # noqa: E402
from .sixd import GRAND_NAME, TOTAL_NAME, Table, fmt_pct  # noqa: E402

BUNDLED_FONT = ("mplfonts", "fonts/NotoSansCJKsc-Regular.otf")  # Noto Sans CJK SC, SIL Open Font License
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
                "SimHei", "Microsoft YaHei", "PingFang SC", "AR PL UMing CN", "Droid Sans Fallback")
PROBE = "政策工具供给需求环境"
COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


class FontMissing(RuntimeError):
    pass


def font_has_glyphs(path: str, text: str = PROBE) -> bool:
    from matplotlib.ft2font import FT2Font

    try:
        font = FT2Font(path)
    except Exception:
        return False
    return all(font.get_char_index(ord(ch)) != 0 for ch in text)


def bundled_cjk_font() -> str | None:
    """The CJK font shipped by the `mplfonts` wheel (a policytag dependency), if installed."""
    package, relative = BUNDLED_FONT
    spec = importlib.util.find_spec(package)  # not imported: only its data file is needed
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / relative
        if path.is_file() and font_has_glyphs(str(path)):
            return str(path)
    return None


def system_cjk_font() -> str | None:
    entries = font_manager.fontManager.ttflist
    for entry in sorted(entries, key=lambda f: (f.name not in CJK_FAMILIES, f.name)):
        if entry.name in CJK_FAMILIES or re.search(r"CJK|Hei|Song|Kai|Ming|Han|WenQuanYi", entry.name):
            if font_has_glyphs(entry.fname):
                return entry.fname
    return None


def find_cjk_font() -> str:
    """A font file with Chinese glyphs, so charts don't show boxes: the bundled one, else a system one."""
    path = bundled_cjk_font() or system_cjk_font()
    if path is None:
        raise FontMissing("no font with Chinese glyphs found: reinstall policytag (`pip install -e .` brings the "
                          "mplfonts package with Noto Sans CJK SC), or run with --no-charts")
    return path


def use_cjk_font() -> str:
    path = find_cjk_font()
    font_manager.fontManager.addfont(path)
    name = font_manager.FontProperties(fname=path).get_name()
    plt.rcParams["font.family"] = [name]
    plt.rcParams["axes.unicode_minus"] = False
    return name


# -- charts ---------------------------------------------------------------------------------------
def short(name: str) -> str:
    """Chart label: the Chinese part of a bilingual name ('供给型 Supply-based · 合计 Total' -> '供给型 合计')."""
    parts = [p.strip() for p in name.split(" · ")]
    out = []
    for p in parts:
        first = p.split(" ")[0]
        out.append(first if re.search(r"[\u4e00-\u9fff]", first) else p)
    return " ".join(out)


def _hbar(ax, labels, values, annotations, colors=None, title=""):
    y = range(len(labels))[::-1]
    ax.barh(list(y), values, color=colors or COLORS[0])
    ax.set_yticks(list(y), labels, fontsize=8)
    for yy, v, a in zip(y, values, annotations):
        ax.annotate(a, (v, yy), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlabel("占比 share (%)")
    ax.set_xlim(0, max(list(values) + [1]) * 1.3)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)


def _pct(t: Table, i: int, j: int) -> float:
    p = t.percent(i, j)
    return 0.0 if p is None else p


def _dist_chart(t: Table) -> plt.Figure:
    idx = [i for i, k in enumerate(t.kinds) if k != "header"]
    groups = [i for i in idx if t.kinds[i] == "group"]
    if groups:  # Table 3: groups and sub-tools in separate panels, sub-tools coloured by group
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 6), dpi=110, gridspec_kw={"width_ratios": [1, 2.2]})
        _hbar(a, [short(t.rows[i]) for i in groups], [_pct(t, i, 0) for i in groups],
              [f"{t.counts[i][0]} ({fmt_pct(_pct(t, i, 0))}%)" for i in groups], COLORS[: len(groups)], "工具类型 groups")
        subs, colors, g = [], [], -1
        for i in idx:
            if t.kinds[i] == "group":
                g += 1
            else:
                subs.append(i), colors.append(COLORS[g % len(COLORS)])
        _hbar(b, [short(t.rows[i]) for i in subs], [_pct(t, i, 0) for i in subs],
              [f"{t.counts[i][0]} ({fmt_pct(_pct(t, i, 0))}%)" for i in subs], colors, "子工具 sub-tools")
    else:
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.38 * len(idx)), dpi=110)
        _hbar(ax, [short(t.rows[i]) for i in idx], [_pct(t, i, 0) for i in idx],
              [f"{t.counts[i][0]} ({fmt_pct(_pct(t, i, 0))}%)" for i in idx])
    return fig


def _stacked(ax, t: Table, rows: list[int], title: str):
    y = list(range(len(rows)))[::-1]
    left = [0.0] * len(rows)
    for j, col in enumerate(t.columns):
        values = [_pct(t, i, j) for i in rows]
        ax.barh(y, values, left=left, color=COLORS[j % len(COLORS)], label=short(col))
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(y, [f"{short(t.rows[i])} (n={t.row_n[i]})" for i in rows], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("行占比 row share (%)")
    ax.set_title(title, fontsize=10)


def _row_chart(t: Table) -> plt.Figure:
    """Tables 6, 7, 9, 11: each group's and each sub-tool's spread over the columns (row %)."""
    totals = [i for i, k in enumerate(t.kinds) if k in ("total", "grand")]
    labels = [i for i, k in enumerate(t.kinds) if k == "label"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 0.8 + 0.32 * len(labels)), dpi=110,
                               gridspec_kw={"width_ratios": [1, 1.4]})
    _stacked(a, t, totals, "工具类型 groups")
    _stacked(b, t, labels, "子工具 sub-tools")
    b.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=min(len(t.columns), 5))
    return fig


def _col_chart(t: Table) -> plt.Figure:
    """Tables 8, 10: orientation shares within each column, grouped bars."""
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    width = 0.8 / max(len(t.rows), 1)
    for i, row in enumerate(t.rows):
        xs = [j + i * width for j in range(len(t.columns))]
        values = [_pct(t, i, j) for j in range(len(t.columns))]
        ax.bar(xs, values, width, color=COLORS[i % len(COLORS)], label=short(row))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(t.columns))],
                  [f"{short(c)}\n(n={n})" for c, n in zip(t.columns, t.col_n)], fontsize=8)
    ax.set_ylabel("列占比 column share (%)")
    ax.legend(fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _lines(ax, xs, series: dict[str, list[float]], ylabel: str, title: str):
    for k, (name, values) in enumerate(series.items()):
        ax.plot(xs, values, marker="o", color=COLORS[k % len(COLORS)], label=name)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)


def _evolution_chart(t: Table) -> plt.Figure:
    """The paper's Figure 4: tools (groups) or orientations over the release years, counts and shares."""
    cols = [j for j, c in enumerate(t.columns) if c != TOTAL_NAME and not c.startswith("未知")]
    xs = [t.columns[j] for j in cols]
    if t.layout == "row":
        rows = [i for i, k in enumerate(t.kinds) if k == "total"] or [i for i, k in enumerate(t.kinds) if k == "label"]
        grand = t.kinds.index("grand")
    else:
        rows, grand = list(range(len(t.rows))), None
    counts = {short(t.rows[i]).replace(" 合计", ""): [t.counts[i][j] for j in cols] for i in rows}
    if grand is not None:  # share of the year's tool codes
        shares = {k: [100 * c / t.counts[grand][j] if t.counts[grand][j] else 0 for c, j in zip(v, cols)]
                  for k, v in counts.items()}
    else:  # share of the year's paragraphs with an orientation
        shares = {short(t.rows[i]): [_pct(t, i, j) for j in cols] for i in rows}
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=110)
    _lines(a, xs, counts, "编码数 codes" if grand is not None else "段落数 paragraphs", "数量 counts")
    _lines(b, xs, shares, "占比 share (%)", "占比 shares")
    b.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def chart(t: Table) -> plt.Figure:
    if t.timeline:
        fig = _evolution_chart(t)
    elif t.layout == "dist":
        fig = _dist_chart(t)
    elif t.layout == "row":
        fig = _row_chart(t)
    else:
        fig = _col_chart(t)
    fig.suptitle(f"{t.key}. {t.title}", fontsize=11)
    fig.tight_layout()
    return fig


def compare_chart(c: Comparison) -> plt.Figure:
    """Shares of the two sides as paired horizontal bars, with the difference in points."""
    f = c.frame
    pa, pb = f[f"{c.ours} %"].fillna(0), f[f"{c.other} %"].fillna(0)
    labels = [short(r) + (f" | {short(col)}" if "column" in f.columns else "") for r, col in
              zip(f["row"], f["column"] if "column" in f.columns else [""] * len(f))]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.42 * len(f)), dpi=110)
    y = list(range(len(f)))[::-1]
    h = 0.4
    ax.barh([v + h / 2 for v in y], pa, h, color=COLORS[0], label=c.ours)
    ax.barh([v - h / 2 for v in y], pb, h, color=COLORS[1], label=c.other)
    for yy, a, b, d in zip(y, pa, pb, f["Δ pp"]):
        if pd.notna(d):
            ax.annotate(f"{d:+.1f} pp", (max(a, b), yy), xytext=(4, 0), textcoords="offset points", va="center",
                        fontsize=7, color="#C44E52" if abs(d) >= 5 else "#555")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("占比 share (%)")
    ax.set_xlim(0, max(list(pa) + list(pb) + [1]) * 1.25)
    ax.legend(fontsize=8, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(f"{c.key}: {c.ours} vs {c.other}", fontsize=11)
    fig.tight_layout()
    return fig


def png_bytes(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")  # keeps legends placed below an axis
    plt.close(fig)
    return buf.getvalue()


# -- files ----------------------------------------------------------------------------------------
def _slug(key: str) -> str:
    kind, _, num = key.partition(" ")
    return f"{kind.lower()}_{int(num):02d}" if num.isdigit() else f"{kind.lower()}_{num}"


def _write_sheet(writer, sheet: str, heading: str, frame: pd.DataFrame, notes: list[str], index: bool) -> None:
    frame.to_excel(writer, sheet_name=sheet, startrow=2, index=index)
    ws = writer.sheets[sheet]
    ws.cell(row=1, column=1, value=heading)
    for k, note in enumerate(notes):
        ws.cell(row=len(frame) + 5 + k, column=1, value=note)
    ws.column_dimensions["A"].width = 48


def write_report(tables: dict[str, Table], out_dir: Path, comparisons: dict[str, Comparison] | None = None,
                 charts: bool = True, intro: str = "", notes: list[str] | None = None,
                 heading: str = "6D policy report 政策文本六维分析", source: str = "the paper") -> dict[str, list[Path]]:
    """All files of the report, each written atomically; returns them by kind. `heading` titles the
    HTML page; `source` names the publication the numbered tables follow."""
    comparisons = comparisons or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {"csv": [], "png": [], "xlsx": [], "html": []}

    def csv(name: str, frame: pd.DataFrame, index: bool) -> None:
        path = out_dir / f"{name}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, encoding="utf-8-sig", index=index)  # BOM: Excel opens UTF-8 Chinese correctly
        written["csv"].append(path)

    for key, t in tables.items():
        csv(_slug(key), t.display(), True)
    for c in comparisons.values():
        csv(c.slug, c.frame, False)
    cells = pd.concat([t.cells() for t in tables.values()], ignore_index=True)
    csv("6d_cells", cells, False)  # every cell as numbers, for further analysis

    xlsx = out_dir / "6d_report.xlsx"
    with atomic_path(xlsx) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for key, t in tables.items():
                _write_sheet(writer, key, f"{key}. {t.title}", t.display(), t.notes, True)
                if key in comparisons:
                    c = comparisons[key]
                    _write_sheet(writer, c.sheet, f"{key} compared: {c.ours} vs {c.other}", c.frame, c.notes, False)
            cells.to_excel(writer, sheet_name="cells", index=False)
    written["xlsx"].append(xlsx)

    images: dict[str, bytes] = {}
    if charts:
        use_cjk_font()
        for name, fig_of in [*((k, lambda t=t: chart(t)) for k, t in tables.items()),
                             *((c.slug, lambda c=c: compare_chart(c)) for c in comparisons.values())]:
            data = png_bytes(fig_of())
            path = out_dir / f"{_slug(name) if ' ' in name else name}.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
            images[name] = data
            written["png"].append(path)

    def img(name: str) -> str:
        if name not in images:
            return ""
        return f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(images[name]).decode()}'>"

    page_title = re.split(r"\s+(?=[\u4e00-\u9fff])", heading)[0]  # the part before the Chinese
    parts = ["<!doctype html><html lang='zh'><head><meta charset='utf-8'>"
             f"<title>{html.escape(page_title)}</title>",
             "<style>body{font-family:'Noto Sans CJK SC','WenQuanYi Micro Hei','Microsoft YaHei',sans-serif;margin:2em;"
             "max-width:1200px}table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left;white-space:pre}"
             "img{max-width:100%}.note{font-size:12px;color:#555;margin:.2em 0}h3{font-size:15px}</style></head><body>",
             f"<h1>{html.escape(heading)}</h1>", f"<p>{html.escape(intro)}</p>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes or []]
    extra_started = False
    for key, t in tables.items():
        if t.number is None and not extra_started:
            parts.append(f"<h1>Extra views, not in {html.escape(source)} 附加视图</h1>")
            extra_started = True
        parts.append(f"<h2 id='{_slug(key)}'>{html.escape(key)}. {html.escape(t.title)}</h2>")
        parts.append(t.display().to_html(border=0))
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in t.notes]
        parts.append(img(key))
        if key in comparisons:
            c = comparisons[key]
            parts.append(f"<h3>{html.escape(key)} compared: {html.escape(c.ours)} vs {html.escape(c.other)}</h3>")
            parts.append(c.frame.to_html(border=0, index=False, na_rep=""))
            parts += [f"<p class='note'>{html.escape(n)}</p>" for n in c.notes]
            parts.append(img(c.slug))
    parts.append("</body></html>")
    page = out_dir / "6d_report.html"
    write_text_atomic(page, "\n".join(parts))
    written["html"].append(page)
    return written


__all__ = ["FontMissing", "find_cjk_font", "bundled_cjk_font", "font_has_glyphs", "use_cjk_font", "write_report",
           "chart", "compare_chart", "GRAND_NAME"]
