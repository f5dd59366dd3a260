"""Text-to-signature baseline: predict a tile's pixel statistics from its description.

TF-IDF over word unigrams and bigrams of the description is mapped by ridge regression to
the standardised physical signatures (colour, structure, texture) of the described tile;
gallery tiles are ranked by cosine similarity between predicted and measured signatures.
It learns what words imply about pixels, and nothing about layout beyond that.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from planetloc.model.signatures import SignatureScaler

TOKEN_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    words = TOKEN_RE.findall(text.lower())
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


@dataclass
class TfidfVectorizer:
    """Sublinear-tf, smoothed-idf TF-IDF with L2-normalised rows."""

    vocab: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, texts: list[str], min_df: int = 2, max_features: int = 20000) -> TfidfVectorizer:
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(tokenize(text)))
        terms = sorted((t for t, c in df.items() if c >= min_df), key=lambda t: (-df[t], t))[
            :max_features
        ]
        vocab = {t: i for i, t in enumerate(sorted(terms))}
        n = len(texts)
        idf = np.array(
            [math.log((1 + n) / (1 + df[t])) + 1 for t in sorted(terms)], dtype=np.float64
        )
        return cls(vocab=vocab, idf=idf)

    def transform(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.vocab)), dtype=np.float64)
        for row, text in enumerate(texts):
            for term, count in Counter(tokenize(text)).items():
                col = self.vocab.get(term)
                if col is not None:
                    out[row, col] = 1 + math.log(count)
        out *= self.idf
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@dataclass
class TextToSignature:
    vectorizer: TfidfVectorizer
    weights: np.ndarray  # (V, D)
    scaler: SignatureScaler

    @classmethod
    def fit(
        cls, texts: list[str], signatures: dict[str, torch.Tensor], alpha: float = 1.0
    ) -> TextToSignature:
        vectorizer = TfidfVectorizer.fit(texts)
        x = vectorizer.transform(texts)
        scaler = SignatureScaler.fit(signatures)
        y = _concat(scaler.transform(signatures))
        # Dual ridge: with fewer samples than terms, solving the N x N system is cheaper.
        gram = x @ x.T + alpha * np.eye(len(texts))
        weights = x.T @ np.linalg.solve(gram, y)
        return cls(vectorizer=vectorizer, weights=weights, scaler=scaler)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return _unit(self.vectorizer.transform(texts) @ self.weights)

    def encode_tiles(self, signatures: dict[str, torch.Tensor]) -> np.ndarray:
        return _unit(_concat(self.scaler.transform(signatures)))


def _concat(signatures: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([signatures[k] for k in ("color", "struc", "tex")], dim=1).double().numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
