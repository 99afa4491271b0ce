"""A pretrained encoder with a pooled head: the model of document classification and regression.

    input_ids, attention_mask (B, T) ─▶ backbone ─▶ hidden (B, T, H) ─▶ pool (CLS or mean over real tokens) (B, H)
    ─▶ [dropout ─▶ Linear(H, hidden) ─▶ activation] ─▶ dropout ─▶ Linear(·, n_outputs) ─▶ logits (B, n_outputs)

Saved as a Hugging Face folder of the backbone (model.safetensors, config.json: any encoder loads it) plus the
head's weights (head.safetensors) and shape (head.json).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

from foldnlp import modeling
from foldnlp.errors import InputError

HEAD_WEIGHTS, HEAD_CONFIG = "head.safetensors", "head.json"
HEAD_PREFIX = "head."  # parameter names of the fresh head (trained at train.head_lr)
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class HeadShape:
    n_outputs: int  # classes, labels or targets
    pooling: str  # "cls" | "mean"
    hidden: int  # 0: linear head
    activation: str
    dropout: float


class DocumentModel(nn.Module):
    def __init__(self, backbone, shape: HeadShape):
        super().__init__()
        self.backbone, self.shape = backbone, shape
        width = backbone.config.hidden_size
        layers: list[nn.Module] = []
        if shape.hidden:
            layers += [nn.Dropout(shape.dropout), nn.Linear(width, shape.hidden), _ACTIVATIONS[shape.activation]()]
            width = shape.hidden
        layers += [nn.Dropout(shape.dropout), nn.Linear(width, shape.n_outputs)]
        self.head = nn.Sequential(*layers)

    def forward(self, input_ids, attention_mask) -> dict[str, torch.Tensor]:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.shape.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return {"logits": self.head(pooled)}

    def save_pretrained(self, folder, safe_serialization: bool = True) -> None:
        """The backbone as a Hugging Face folder, the head beside it (safetensors only)."""
        folder = Path(folder)
        self.backbone.save_pretrained(folder, safe_serialization=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}, folder / HEAD_WEIGHTS)
        (folder / HEAD_CONFIG).write_text(json.dumps(asdict(self.shape), indent=1), encoding="utf-8")


def new_model(path: str, shape: HeadShape, model_cfg) -> DocumentModel:
    """The pretrained backbone at `path` (dropout and freezing from model_cfg) with a freshly initialised head."""
    return DocumentModel(_backbone(path, model_cfg), shape)


def load_trained(folder: str) -> DocumentModel:
    """A checkpoint saved by DocumentModel.save_pretrained, exactly as saved."""
    folder_path = Path(folder)
    for name in (HEAD_WEIGHTS, HEAD_CONFIG):
        if not (folder_path / name).is_file():
            raise InputError(f"checkpoint {folder} has no {name}: it was not written by a document task; retrain the "
                             "fold with --overwrite")
    shape = HeadShape(**json.loads((folder_path / HEAD_CONFIG).read_text(encoding="utf-8")))
    model = DocumentModel(_backbone(folder, None), shape)
    model.head.load_state_dict(load_file(folder_path / HEAD_WEIGHTS))
    return model


def _backbone(path: str, model_cfg):
    backbone = modeling.load_model(AutoModel, path, model_cfg)
    # The head pools hidden states itself: a pooler (absent from multilingual-e5-small, so freshly initialised)
    # would be weights that get no gradient, which distributed training rejects.
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    return backbone
