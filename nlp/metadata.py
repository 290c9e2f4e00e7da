"""Document metadata from the header/footer of a Chinese policy document.

Title, 文号, issuing body and date are read where the document states them; level,
nature and year are derived from those. Anything not found stays None — never guessed.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from .segment import normalize_text

FIELDS = ("title", "issuer", "doc_number", "date", "year", "level", "nature")

_CN_DIGIT = {"〇": 0, "○": 0, "零": 0, "Ｏ": 0, "O": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5,
             "六": 6, "七": 7, "八": 8, "九": 9}
_YEAR = r"(?:\d{4}|[〇○零Ｏ一二三四五六七八九]{4})"
_NUM = r"(?:\d{1,2}|[一二三四五六七八九十]{1,3})"
DATE = re.compile(rf"({_YEAR})\s*年\s*({_NUM})\s*月\s*({_NUM})\s*日")
# 国办发〔2015〕70号, 医保发[2019]39号, 阜蒙健促办发[2020] 3 号, 国家医疗保障局令第2号
DOC_NUMBER = re.compile(
    r"[\u4e00-\u9fa5]{1,12}\s*[〔\[［(（【]\s*(\d{4})\s*[〕\]］)）】]\s*第?\s*\d{1,4}\s*号"
    r"|[\u4e00-\u9fa5]{2,30}(?:令|公告)第\s*[\d一二三四五六七八九十百零〇]{1,6}\s*号"
)
_TITLE_WORDS = re.compile(r"关于|通知|意见|方案|办法|条例|规划|纲要|细则|规范|标准|规定|决定|计划|行动|指南|法$|制度")
_ISSUER_WORDS = re.compile(r"(人民政府|办公厅|办公室|委员会|国务院|[部委局厅院会署办司]|中心|小组)$")
_SENTENCE = re.compile(r"[。；！？，,:：]")

# Nature keywords from the 6D paper (planning vs detailed regulation); the last one in
# the title wins, so '关于印发X规划的通知' is planning, not a notice.
_NATURE = [
    ("planning", ("规划", "纲要", "指导意见", "意见", "计划")),
    ("detailed_regulation", ("方案", "办法", "细则", "通知", "规范", "标准", "条例", "规定")),
]


def _cn_number(token: str) -> int:
    if token.isdigit():
        return int(token)
    if all(ch in _CN_DIGIT for ch in token):  # 二〇二四
        return int("".join(str(_CN_DIGIT[ch]) for ch in token))
    # 十, 十二, 二十, 二十八
    tens, _, ones = token.partition("十")
    if "十" not in token:
        return _CN_DIGIT[token]
    return (_CN_DIGIT.get(tens, 1) if tens else 1) * 10 + (_CN_DIGIT.get(ones, 0) if ones else 0)


def parse_date(text: str) -> str | None:
    """The first date in `text` as ISO YYYY-MM-DD (accepts 二〇二四年十月二十八日)."""
    m = DATE.search(text)
    if not m:
        return None
    try:
        y, mo, d = (_cn_number(g) for g in m.groups())
    except KeyError:
        return None
    if not (1949 <= y <= 2100 and 1 <= mo <= 12 and 1 <= d <= 31):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}"


_NATIONAL = re.compile(r"^(国务院|国家|全国|中共中央|中央|中华人民共和国|[\u4e00-\u9fa5]{1,8}部(办公厅)?$)")
_PROVINCE = re.compile(r"^([\u4e00-\u9fa5]{2,8}?(省|自治区)|(北京|天津|重庆)市)")
_LOCAL = re.compile(r"^[\u4e00-\u9fa5]{1,8}?(市|县|区|州|盟|旗)(?!委员会|人民代表)")


def level_of(issuer: str | None, doc_number: str | None = None) -> str | None:
    """Administrative level of the issuing body, as in the 6D paper (Shanghai kept apart).
    The first of several joint issuers decides; without an issuer, only a 文号 prefix that
    names the level (沪…, 国…) is used."""
    if not issuer:
        if doc_number and doc_number.startswith("沪"):
            return "shanghai"
        if doc_number and doc_number.startswith(("国办", "国发", "国卫", "国医保")):
            return "national"
        return None
    head = re.split(r"[、，,\s]", issuer.strip())[0]
    if "上海" in head:
        return "shanghai"
    if _NATIONAL.match(head):
        return "national"
    province = _PROVINCE.match(head)
    if province:
        # '广东省汕头市…' is a city; '海南省健康海南建设委员会' the province itself.
        return "municipal" if _LOCAL.match(head[province.end():]) else "provincial"
    if re.search(r"[市县区州盟旗]", head):
        return "municipal"
    return None


def nature_of(title: str | None) -> str | None:
    if not title:
        return None
    best, best_pos = None, -1
    for nature, words in _NATURE:
        for word in words:
            pos = title.rfind(word)
            if pos < 0:
                continue
            # '……的通知' around a named document: the document inside decides.
            if word == "通知" and best_pos >= 0:
                continue
            if pos > best_pos:
                best, best_pos = nature, pos
    return best


_SESSION = re.compile(r"第[一二三四五六七八九十百]+届")
_MEETING = re.compile(r"第[一二三四五六七八九十百]+次(?:全体)?会议")
_HISTORY = re.compile(r"发布|通过|批准|印发|公布|修正|修订")  # not 施行: the effective date is not the issue date


def _issuer_from_history(rest: str) -> str | None:
    """'临沂市第十九届人民代表大会常务委员会第三十七次会议通过' -> '临沂市人民代表大会常务委员会'."""
    rest = _SESSION.sub("", rest.strip(" （()）"))
    m = re.match(r"(?:经)?([\u4e00-\u9fa5、]+?)(?:第[一二三四五六七八九十百]+次(?:全体)?会议)?(?:《.*》)?(?:发布|通过|印发|公布)", rest)
    return m.group(1) if m and _ISSUER_WORDS.search(m.group(1)) else None


def parse_metadata(paragraphs: list[str]) -> dict:
    """Read title, 文号, issuer and date from the first/last paragraphs of a document.
    Values keep the document's own characters; matching runs on normalised text."""
    lines = [p.strip() for p in paragraphs]
    norm = [normalize_text(p) for p in lines]
    meta: dict = dict.fromkeys(FIELDS)
    head = range(min(8, len(lines)))
    tail = range(max(0, len(lines) - 8), len(lines))

    for i in head:
        m = DOC_NUMBER.search(lines[i])
        if m and len(norm[i]) <= 45:
            meta["doc_number"] = re.sub(r"\s+", "", m.group(0))
            break

    # Title: the first short line(s) that read like a document title, before a 文号 or date line.
    title_lines = []
    for i in list(head)[:3]:
        line = norm[i]
        if DOC_NUMBER.search(line) or DATE.search(line) or line.endswith(("：", ":")):
            break
        if len(line) > 90 or line.endswith(("。", ";")) or _SENTENCE.search(line):
            break
        title_lines.append(lines[i])
        if _TITLE_WORDS.search(line):
            break
    title = "".join(title_lines)
    if title and _TITLE_WORDS.search(title):
        meta["title"] = title

    # Footer: one or more issuer lines, then the date, at the end of the document.
    for i in reversed(tail):
        if len(norm[i]) <= 20 and DATE.fullmatch(norm[i]):
            meta["date"] = parse_date(norm[i])
            issuers = []
            j = i - 1
            while j >= 0 and len(norm[j]) <= 60 and not _SENTENCE.search(norm[j]) and _ISSUER_WORDS.search(norm[j]):
                issuers.insert(0, lines[j])
                j -= 1
            if issuers:
                meta["issuer"] = "、".join(issuers)
            break
    # Header history lines of laws and regulations: '2021年5月8日 临沂市…会议通过',
    # '（2018年7月17日国家卫生健康委员会、国家中医药管理局发布）'. The latest date is the
    # version in force; the first line names the body that adopted it.
    if meta["date"] is None:
        dates = []
        for i in list(head)[:6]:
            m = DATE.search(norm[i])
            if m and len(norm[i]) <= 120 and _HISTORY.search(norm[i]) and not _SENTENCE.search(norm[i][:m.start()]):
                dates.append(parse_date(norm[i]))
                if meta["issuer"] is None:
                    meta["issuer"] = _issuer_from_history(norm[i][m.end():])
        dates = [d for d in dates if d]
        if dates:
            meta["date"] = max(dates)
    if meta["issuer"] is None and meta["title"] and "关于" in meta["title"]:
        prefix = meta["title"].split("关于", 1)[0]
        if 2 <= len(prefix) <= 40 and _ISSUER_WORDS.search(prefix):
            meta["issuer"] = prefix
    meta.update(derive(meta))
    return meta


def derive(meta: dict) -> dict:
    """Year, level and nature from the stated fields (only where missing)."""
    out = {}
    if meta.get("year") in (None, ""):
        year = None
        if meta.get("date"):
            m = re.match(r"(\d{4})", str(meta["date"]))
            year = int(m.group(1)) if m else None
        if year is None and meta.get("doc_number"):
            m = re.search(r"[〔\[［(（【](\d{4})", meta["doc_number"])
            year = int(m.group(1)) if m else None
        out["year"] = year
    else:
        try:
            out["year"] = int(meta["year"])
        except (TypeError, ValueError):
            out["year"] = None
    if not meta.get("level"):
        out["level"] = level_of(meta.get("issuer"), meta.get("doc_number"))
    if not meta.get("nature"):
        out["nature"] = nature_of(meta.get("title"))
    return out


def merge_metadata(parsed: dict, given: dict) -> dict:
    """One document's metadata: what was parsed from its text, overridden by what the user
    stated (sidecar, --metadata, API metadata), then year/level/nature derived from the merged
    fields unless they were stated. Used by `policytag ingest` and the API alike."""
    given = {k: v for k, v in (given or {}).items() if v not in (None, "")}
    meta = {**dict.fromkeys(FIELDS), **{k: v for k, v in parsed.items() if v is not None}, **given}
    # Derived fields follow the stated ones: re-derive unless they were given explicitly.
    for key in ("year", "level", "nature"):
        if key not in given:
            meta[key] = None
    meta.update(derive(meta))
    return meta


def load_sidecar(path: Path) -> dict[str, dict]:
    """Per-file metadata overrides: a CSV with a `file` column or a JSON {file: {...}} / [{file: ...}]."""
    if path.name.lower().endswith(".meta.json"):  # <file>.meta.json: the fields of that one file
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [dict(data, file=path.name[: -len(".meta.json")])]
    elif path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data if isinstance(data, list) else [dict(v, file=k) for k, v in data.items()]
    else:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
    table = {}
    for row in rows:
        name = row.get("file")
        if not name:
            continue
        table[Path(name).name] = {k: (v if v != "" else None) for k, v in row.items() if k in FIELDS and v not in (None, "")}
    return table


def is_sidecar(path: Path) -> bool:
    """metadata.csv / metadata.json, or <name>.meta.json beside a document."""
    name = path.name.lower()
    return name in ("metadata.csv", "metadata.json") or name.endswith(".meta.json")
