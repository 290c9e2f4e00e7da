"""Evidence for predicted labels: leave-one-word-out occlusion over jieba words.

For each predicted label, the words whose removal lowers that label's probability the most.
It needs one extra forward pass per word (batched), which is affordable on CPU for the
paragraphs an analyst asks about, and it explains the model actually used — no attention
heuristics."""
from __future__ import annotations

import re

import numpy as np

_WORDLIKE = re.compile(r"[\w\u4e00-\u9fff]")


def explain_occlusion(tagger, texts: list[str], probs: np.ndarray, titles: list | None = None, top_k: int = 3,
                      max_words: int = 80) -> list[dict]:
    """`titles`: each paragraph's document title, kept fixed while its words are removed."""
    import jieba

    jieba.setLogLevel(60)
    results = []
    for i, (text, p) in enumerate(zip(texts, probs)):
        chosen = np.flatnonzero(p >= tagger.thresholds)
        words = list(jieba.cut(text))
        candidates = [k for k, w in enumerate(words) if _WORDLIKE.search(w)][:max_words]
        if not len(chosen) or not candidates:
            results.append({})
            continue
        variants = ["".join(words[:k] + words[k + 1:]) for k in candidates]
        drops = p[chosen][None, :] - tagger.predict_proba(variants, None if titles is None else [titles[i]] * len(variants))[:, chosen]
        evidence = {}
        for col, label_index in enumerate(chosen):
            order = np.argsort(-drops[:, col])[:top_k]
            evidence[tagger.label_ids[label_index]] = [
                {"word": words[candidates[i]], "drop": round(float(drops[i, col]), 4)} for i in order if drops[i, col] > 0]
        results.append(evidence)
    return results
