"""Cutting a document's text into paragraphs (the 6D framework's unit of coding).

A paragraph is the text between two paragraph breaks. Every non-blank line of the
input ends up inside exactly one paragraph; offsets point into the original text so
`text[p.start:p.end]` is always the paragraph as the source had it.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from statistics import quantiles

_CN_NUM = "[一二三四五六七八九十百零〇]+"
# Numbered headings of Chinese official documents: 一、 （三） 第十条 第二章 1. (1) ## …
_HEADING_MARK = re.compile(
    rf"^(?:{_CN_NUM}[、.．]"
    rf"|[（(](?:{_CN_NUM}|\d{{1,2}})[）)]"
    rf"|第(?:{_CN_NUM}|\d+)[章节条篇部](?:分)?"
    r"|\d{1,2}(?:[、．。]|\.(?!\d))"
    r"|#{1,6}\s*(?=\S))"
)
_ARTICLE = re.compile(rf"^第(?:{_CN_NUM}|\d+)[章节条篇部]")
_SENTENCE_END = "。！？；!?;"
# A line ending in one of these closes its paragraph even in hard-wrapped PDF text.
_BREAK_AFTER = _SENTENCE_END + "：:」”）)】"
_CJK = r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]"
# Chinese is written without spaces: whitespace touching a CJK character is layout, not text.
_SPACE_BETWEEN_CJK = re.compile(rf"(?<={_CJK})\s+|\s+(?={_CJK})")
_SPACES = re.compile(r"\s+")
_DATE_LINE = re.compile(r"^\s*(?:\d{4}|[〇○零一二三四五六七八九]{4})\s*年[\d一二三四五六七八九十\s]{1,4}月[\d一二三四五六七八九十\s]{1,4}日\s*$")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    is_heading: bool = False


def normalize_text(text: str) -> str:
    """The model's view of a paragraph: NFKC (full-width letters, digits and most punctuation
    become half-width), whitespace collapsed, spaces between CJK characters (a PDF artefact)
    dropped. Training and inference both go through this one function."""
    text = _SPACE_BETWEEN_CJK.sub("", text)  # before NFKC, while '，' still counts as CJK
    text = unicodedata.normalize("NFKC", text)
    return _SPACES.sub(" ", text).strip()


_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def has_visible_text(text: str) -> bool:
    """False for text made only of whitespace, control characters (NUL…) and invisible format
    characters (zero-width space/joiners, BOM, word joiner): nothing a coder could label."""
    return any(not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE for ch in text)


def first_lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate (e.g. from a JSON "\\ud800"), which no encoder or
    tokenizer accepts; None when the text is valid Unicode."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        return exc.start


def is_heading(line: str) -> bool:
    """A numbered section/article heading standing alone, e.g. '一、总体要求', '（三）完善机制。', '第十条'."""
    line = normalize_text(line)
    if line.startswith("#"):
        return bool(re.match(r"^#{1,6}\s*\S", line))
    mark = _HEADING_MARK.match(line)
    if not mark:
        return False
    rest = line[mark.end():].strip().rstrip("。.")
    if _ARTICLE.match(line):
        # '第二章 总则' is a heading; '第十条 医疗机构应当……。' is an article with its text.
        return len(rest) <= 15 and not any(p in rest for p in _SENTENCE_END + "，,")
    return 0 < len(rest) <= 25 and not any(p in rest for p in _SENTENCE_END + "，,")


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every non-blank line, stripped of surrounding whitespace."""
    out, pos = [], 0
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        stripped = body.strip()
        if stripped:
            start = pos + (len(body) - len(body.lstrip()))
            out.append((start, start + len(stripped)))
        pos += len(raw)
    return out


def split_lines(text: str) -> list[Span]:
    """One paragraph per non-blank line (docx, HTML blocks, one-paragraph-per-line text)."""
    return [Span(s, e, is_heading(text[s:e])) for s, e in _lines(text)]


def join_wrapped(text: str, lines: list[tuple[int, int]] | None = None, width: float | None = None) -> list[Span]:
    """Rebuild paragraphs from hard-wrapped lines (PDF extraction): a line continues the
    previous one unless the previous ended a sentence, either is a heading or a bare date
    line, or the previous line is clearly shorter than the text `width` (the last line of a
    paragraph). A line ending in a comma always continues."""
    lines = _lines(text) if lines is None else lines
    if not lines:
        return []
    if width is None:
        lengths = [e - s for s, e in lines]
        width = quantiles(lengths, n=10)[-1] if len(lengths) >= 2 else lengths[0]
    spans: list[Span] = []
    start, end = lines[0]
    line_start = start
    for s, e in lines[1:]:
        prev_line = text[line_start:end]
        line = text[s:e]
        if prev_line[-1] in "，、,":
            cut = False
        else:
            cut = (is_heading(text[start:end]) or _starts_section(line) or _DATE_LINE.match(line)
                   or _DATE_LINE.match(prev_line) or prev_line[-1] in _BREAK_AFTER
                   or len(prev_line) < 0.75 * width)
        if cut:
            spans.append(Span(start, end, is_heading(text[start:end])))
            start = s
        end, line_start = e, s
    spans.append(Span(start, end, is_heading(text[start:end])))
    return spans


def _starts_section(line: str) -> bool:
    return bool(_HEADING_MARK.match(normalize_text(line)))


def split_blocks(text: str) -> list[Span]:
    """Paragraphs separated by blank lines; wrapped lines inside a block are re-joined
    (the blank lines mark paragraphs, so line width is no evidence here)."""
    spans: list[Span] = []
    for block in re.finditer(r"(?:[^\n]*\S[^\n]*(?:\n|$))+", text):
        lines = [(block.start() + s, block.start() + e) for s, e in _lines(block.group())]
        spans.extend(join_wrapped(text, lines, width=0))
    return spans


def segment(text: str, layout: str = "auto") -> list[Span]:
    """Split `text` into paragraph spans.

    layout: 'lines' (every line a paragraph), 'wrapped' (hard-wrapped lines re-joined, as
    from PDFs), 'blocks' (blank-line separated), or 'auto' (blocks when the text uses blank
    lines between paragraphs, else lines).
    """
    if layout == "auto":
        layout = "blocks" if re.search(r"\S[ \t]*\r?\n[ \t]*\r?\n[ \t]*\S", text) else "lines"
    if layout == "lines":
        return split_lines(text)
    if layout == "wrapped":
        return join_wrapped(text)
    if layout == "blocks":
        return split_blocks(text)
    raise ValueError(f"unknown layout {layout!r}")


_SENTENCIZER = None


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans with spaCy's Chinese pipeline (blank 'zh' + sentencizer: offline)."""
    global _SENTENCIZER
    if _SENTENCIZER is None:
        import spacy

        nlp = spacy.blank("zh")
        nlp.add_pipe("sentencizer", config={"punct_chars": list("。！？；!?;")})
        _SENTENCIZER = nlp
    doc = _SENTENCIZER(text)
    out = []
    for sent in doc.sents:
        s, e = sent.start_char, sent.end_char
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out
