"""Writing the 6D tables: CSV per table, one .xlsx workbook, PNG charts, a self-contained HTML page."""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from nlp.files import atomic_path, write_text_atomic  # noqa: E402

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
                "SimHei", "Microsoft YaHei", "PingFang SC", "AR PL UMing CN", "Droid Sans Fallback")
PROBE = "政策工具供给需求环境"


class FontMissing(RuntimeError):
    pass


def font_has_glyphs(path: str, text: str = PROBE) -> bool:
    from matplotlib.ft2font import FT2Font

    try:
        font = FT2Font(path)
    except Exception:
        return False
    return all(font.get_char_index(ord(ch)) != 0 for ch in text)


def find_cjk_font() -> str:
    """A font file on this machine that has Chinese glyphs (so charts don't show boxes)."""
    entries = font_manager.fontManager.ttflist
    preferred = sorted(entries, key=lambda f: (f.name not in CJK_FAMILIES, f.name))
    for entry in preferred:
        if entry.name in CJK_FAMILIES or re.search(r"CJK|Hei|Song|Kai|Ming|Han|WenQuanYi", entry.name):
            if font_has_glyphs(entry.fname):
                return entry.fname
    raise FontMissing("no font with Chinese glyphs found; install one (Debian/Ubuntu: apt-get install fonts-wqy-microhei "
                      "or fonts-noto-cjk), or run with --no-charts")


def use_cjk_font() -> str:
    path = find_cjk_font()
    font_manager.fontManager.addfont(path)
    name = font_manager.FontProperties(fname=path).get_name()
    plt.rcParams["font.family"] = [name]
    plt.rcParams["axes.unicode_minus"] = False
    return name


def _slug(name: str) -> str:
    return re.sub(r"[^\w\u4e00-\u9fff×-]+", "_", name).strip("_")


def chart(name: str, table: pd.DataFrame) -> plt.Figure:
    """Bar chart for a 1D table, stacked bars for a 2D table, lines for a table over years."""
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    if "count" in table.columns:  # 1D
        series = table["count"]
        labels = [str(i).strip() for i in series.index]
        ax.bar(labels, series.values, color="#4C72B0")
        for x, (v, p) in enumerate(zip(series.values, table["percent"].values)):
            ax.annotate(f"{v}\n{p}%", (x, v), ha="center", va="bottom", fontsize=7)
        ax.set_ylabel("数量 count")
        ax.tick_params(axis="x", rotation=45 if len(labels) > 6 else 0)
    else:
        data = table.drop(columns=["total"])
        data.index = [str(i).strip() for i in data.index]
        if "年份" in name:
            # Over the years: one line per row of the table (groups only, for legibility).
            sub = data[[not str(i).startswith("  ") for i in table.index]] if any(str(i).startswith("  ") for i in table.index) else data
            sub = sub.loc[:, [c for c in sub.columns if c != "unknown"]]
            for row, values in sub.iterrows():
                ax.plot(list(sub.columns), values.values, marker="o", label=row)
            ax.set_xlabel("发布年份 year")
        else:
            data.plot(kind="bar", stacked=True, ax=ax, width=0.8, colormap="tab20")
            ax.tick_params(axis="x", rotation=60)
        ax.set_ylabel("段落数 paragraphs")
        ax.legend(fontsize=7, ncol=2)
    ax.set_title(name)
    fig.tight_layout()
    return fig


def _png_bytes(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(tables: dict[str, pd.DataFrame], out_dir: Path, charts: bool = True, intro: str = "") -> dict[str, list[Path]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {"csv": [], "png": [], "xlsx": [], "html": []}
    for name, table in tables.items():
        path = out_dir / f"{_slug(name)}.csv"
        with atomic_path(path) as tmp:
            table.to_csv(tmp, encoding="utf-8-sig")
        written["csv"].append(path)
    xlsx = out_dir / "6d_report.xlsx"
    with atomic_path(xlsx) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for name, table in tables.items():
                table.to_excel(writer, sheet_name=re.sub(r"[\[\]:*?/\\]", "", name)[:31])
    written["xlsx"].append(xlsx)
    images: dict[str, bytes] = {}
    if charts:
        use_cjk_font()
        for name, table in tables.items():
            data = _png_bytes(chart(name, table))
            path = out_dir / f"{_slug(name)}.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
            images[name] = data
            written["png"].append(path)
    parts = ["<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>6D policy report</title>",
             "<style>body{font-family:'Noto Sans CJK SC','WenQuanYi Micro Hei','Microsoft YaHei',sans-serif;margin:2em;max-width:1100px}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th:first-child,td:first-child{text-align:left;white-space:pre}img{max-width:100%}</style></head><body>",
             "<h1>6D policy report 政策文本六维分析</h1>", f"<p>{html.escape(intro)}</p>"]
    for name, table in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(table.to_html(border=0))
        if name in images:
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(images[name]).decode()}'>")
    parts.append("</body></html>")
    page = out_dir / "6d_report.html"
    write_text_atomic(page, "\n".join(parts))
    written["html"].append(page)
    return written
