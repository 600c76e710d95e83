"""How much of MiniLM's similarity geometry can a bag of words hold at all?

A linear map from TF-IDF word counts to the teacher's 384-d article vectors, fitted in closed
form (ridge) on the training articles, is a reference for the embedding student of `kdistill
reproduce text` (a bag of hashed words trained by gradient descent). The ridge penalty is
chosen on the validation articles' Spearman correlation; the figure is the test articles'
Spearman correlation of pairwise cosine similarities with the teacher's, the student's own
measure. Two inputs: whole articles, and the first `embedding_words` words (about what the
teacher's 256 tokens read). Same split and the same cached teacher embeddings as the
experiment (`--out` its work folder; the cache is built there if missing, about 10 minutes).
Writes docs/results/text/linear-ceiling.json.

    python benchmarks/text_linear_ceiling.py [--out runs/text-bbc]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from kdistill.experiments import text
from kdistill.files import atomic_write_json
from kdistill.reporting import provenance

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _sims(e: np.ndarray) -> np.ndarray:
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = e @ e.T
    return s[np.triu_indices(len(s), k=1)]


def ceiling(texts: list[str], emb: np.ndarray, train, val, test) -> dict:
    from scipy.stats import spearmanr
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    vec = TfidfVectorizer(sublinear_tf=True, min_df=2).fit([texts[i] for i in train])
    x = vec.transform(texts)
    by_alpha = {}
    for alpha in ALPHAS:
        model = Ridge(alpha=alpha).fit(x[train], emb[train])
        by_alpha[alpha] = {
            part: float(spearmanr(_sims(model.predict(x[idx])), _sims(emb[idx])).statistic)
            for part, idx in (("val", val), ("test", test))}
    best = max(ALPHAS, key=lambda a: by_alpha[a]["val"])
    return {"alpha_chosen_on_val": best, "test_spearman": by_alpha[best]["test"],
            "vocabulary": len(vec.vocabulary_), "by_alpha": by_alpha}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/text-bbc", help="the text experiment's work folder")
    ap.add_argument("--result", default=str(ROOT / "docs/results/text/linear-ceiling.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = text.config_from("bbc-news", out=args.out, progress=False)
    from kdistill.text.minilm import load_encoder

    tokenizer, encoder = load_encoder()
    data = text.prepare(cfg, tokenizer, encoder, Path(args.out), print)
    emb = data.emb.numpy().astype(np.float64)
    window = [" ".join(_WORD.findall(t.lower())[: cfg.embedding_words]) for t in data.texts]
    result = {"whole_articles": ceiling(data.texts, emb, data.train, data.val, data.test),
              f"first_{cfg.embedding_words}_words": ceiling(window, emb, data.train, data.val,
                                                             data.test),
              "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
              "wall_seconds": round(time.perf_counter() - t0, 1),
              "command": "python benchmarks/text_linear_ceiling.py --out " + args.out,
              **provenance()}
    for name in ("whole_articles", f"first_{cfg.embedding_words}_words"):
        r = result[name]
        print(f"{name}: test Spearman {r['test_spearman']:.3f} (alpha "
              f"{r['alpha_chosen_on_val']} chosen on validation)")
    atomic_write_json(Path(args.result), result)
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
