"""TF-IDF over character n-grams + one balanced logistic regression per label: the baseline
every fine-tuned model must beat, and the second member of the default ensemble.

A scikit-learn Pipeline (vectoriser -> OneVsRestClassifier), so it pickles, clones and
cross-validates like any other estimator."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline


def make_tfidf(ngram_range=(1, 3), min_df: int = 2, C: float = 4.0, seed: int = 0) -> Pipeline:
    return Pipeline([
        ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=ngram_range, min_df=min_df, sublinear_tf=True)),
        ("clf", OneVsRestClassifier(LogisticRegression(C=C, class_weight="balanced", max_iter=2000,
                                                       random_state=seed))),
    ])


def fit_tfidf(texts: list[str], y: np.ndarray, seed: int = 0) -> Pipeline:
    with warnings.catch_warnings():
        # A label with no positive example in these rows becomes a constant predictor: that
        # is reported by the data check, not as a scikit-learn warning per label.
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        # An n-gram seen in one paragraph only is noise, unless one paragraph is all there is.
        return make_tfidf(min_df=2 if len(texts) >= 20 else 1, seed=seed).fit(texts, (y > 0).astype(int))


class TfidfBaseline:
    """The pre-Pipeline baseline, kept so model directories written by policytag 0.1 still load."""

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        x = self.vectorizer.transform(texts)
        cols = [np.full(x.shape[0], m) if isinstance(m, float) else m.predict_proba(x)[:, 1] for m in self.models]
        return np.stack(cols, axis=1).astype(np.float32)
