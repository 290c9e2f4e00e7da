"""TF-IDF over character n-grams + one logistic regression per label: the baseline every
fine-tuned model must beat, trained on the same split and saved the same way."""
from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


class TfidfBaseline:
    def __init__(self, ngram_range=(1, 3), min_df: int = 2, C: float = 4.0, seed: int = 0):
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=ngram_range, min_df=min_df,
                                          sublinear_tf=True)
        self.C, self.seed = C, seed
        self.models: list[LogisticRegression | float] = []

    def fit(self, texts: list[str], y: np.ndarray) -> "TfidfBaseline":
        x = self.vectorizer.fit_transform(texts)
        self.models = []
        for j in range(y.shape[1]):
            positives = y[:, j].mean()
            if positives in (0.0, 1.0):
                self.models.append(float(positives))  # a label never (or always) seen: constant
                continue
            clf = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000, random_state=self.seed)
            self.models.append(clf.fit(x, y[:, j]))
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        x = self.vectorizer.transform(texts)
        cols = [np.full(x.shape[0], m) if isinstance(m, float) else m.predict_proba(x)[:, 1] for m in self.models]
        return np.stack(cols, axis=1).astype(np.float32)
