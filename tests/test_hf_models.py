"""A Hugging Face model as teacher and as student through kdistill.train: dict batches of token
ids, `ModelOutput` returns, features of named encoder layers. The models are built locally from
a config with random weights: no hub, no download."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from kdistill.distill import methods  # noqa: E402
from kdistill.distill.cache import cached_teacher_logits, with_index  # noqa: E402
from kdistill.distill.trainer import TrainConfig, evaluate, train  # noqa: E402

QUIET = {"log": lambda s: None}


def bert(hidden: int, layers: int, seed: int):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=16, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


class Tokens(torch.utils.data.Dataset):
    """Sequences of 8 token ids; the label is the first token's id mod 3 (learnable)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 40, (n, 8), generator=g)
        self.mask = torch.ones(n, 8, dtype=torch.long)
        self.mask[n // 2:, 6:] = 0  # some padding
        self.labels = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i],
                "labels": self.labels[i]}


def cfg(epochs):
    return TrainConfig(epochs=epochs, batch_size=32, optimizer="adamw", lr=3e-3, seed=0,
                       progress=False, device="cpu", schedule="constant")


@pytest.fixture(scope="module")
def task():
    train_set, test_set = Tokens(384, 0), Tokens(192, 1)
    loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True)
    test = torch.utils.data.DataLoader(test_set, batch_size=64)
    teacher = train(bert(32, 2, 0), loader, cfg(12), eval_sets={"test": test}, **QUIET)
    return train_set, loader, test, teacher


def test_hf_teacher_learns_from_dict_batches(task):
    _, _, _, teacher = task
    assert teacher.final["test_accuracy"] > 0.9  # chance is 1/3


def test_hf_student_distils_online_with_features_of_named_layers(task):
    _, loader, test, teacher = task
    fitnets = methods.get("fitnets", student_layer="bert.encoder.layer.0",
                          teacher_layer="bert.encoder.layer.1", hint_weight=1.0,
                          hard_weight=1.0)
    student = train(bert(16, 1, 1), loader, cfg(12), teacher=teacher.model, method=fitnets,
                    eval_sets={"test": test}, **QUIET)
    assert isinstance(student.method.regressor, torch.nn.Linear)  # token features (N, L, D)
    assert student.history[-1]["train_hint"] < student.history[0]["train_hint"]
    assert student.final["test_accuracy"] > 0.8
    dkd = train(bert(16, 1, 1), loader, cfg(12), teacher=teacher.model, method="dkd",
                eval_sets={"test": test}, **QUIET)
    assert dkd.final["test_accuracy"] > 0.8


def test_hf_teacher_cache_and_unlabelled_transfer(task, tmp_path):
    train_set, _, test, teacher = task
    cache = cached_teacher_logits(teacher.model, train_set, tmp_path / "cache", batch_size=64)
    want = evaluate(teacher.model, torch.utils.data.DataLoader(train_set, batch_size=64))
    agree = (cache.logits.argmax(1) == train_set.labels).float().mean()
    assert abs(float(agree) - want["accuracy"]) < 1e-6

    class Unlabelled(torch.utils.data.Dataset):
        def __len__(self):
            return len(train_set)

        def __getitem__(self, i):
            item = dict(train_set[i])
            del item["labels"]
            return item

    loader = torch.utils.data.DataLoader(with_index(Unlabelled()), batch_size=32, shuffle=True)
    student = train(bert(16, 1, 2), loader, cfg(12), teacher_logits=cache.logits,
                    method=methods.get("kd", temperature=2.0, hard_weight=0.0),
                    eval_sets={"test": test}, **QUIET)
    assert set(k for k in student.final if k.startswith("train_")) == {"train_loss",
                                                                        "train_soft"}
    assert student.final["test_accuracy"] > 0.8
