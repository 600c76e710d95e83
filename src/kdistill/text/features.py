"""Hashed word n-grams: the input of the small text students. No vocabulary to fit or ship,
the same ids on every machine (CRC-32, not Python's salted `hash`), and fast enough that the
student's featurizing is a small part of its latency."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["HashedNgrams"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class HashedNgrams:
    """Word 1..`max_n`-grams of lower-cased text hashed into ids 1..`buckets` (0 pads), the
    first `max_len` of them per text, as an int64 array (N, max_len). `max_words` reads only
    the first that many words: a student meant to match a teacher that truncates its input
    should see about the same window."""

    buckets: int = 2 ** 15
    max_n: int = 2
    max_len: int = 1024
    max_words: int | None = None

    def __post_init__(self) -> None:
        for name in ("buckets", "max_n", "max_len", "max_words"):
            value = getattr(self, name)
            if value is None and name == "max_words":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HashedNgrams.{name} must be an integer >= 1, got {value!r}")

    def ids(self, text: str) -> list[int]:
        words = _WORD.findall(text.lower())[: self.max_words]
        grams = list(words)
        for n in range(2, self.max_n + 1):
            grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        b = self.buckets
        return [zlib.crc32(g.encode()) % b + 1 for g in grams[: self.max_len]]

    def encode(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise ValueError("encode takes a list of texts, got one string")
        out = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.ids(text)
            out[row, : len(ids)] = ids
        return out
