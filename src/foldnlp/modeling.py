"""Backbone + task head from a local folder (or the bundled default), with the dropout and freezing settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers 5 prints a bar on every load

import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer  # noqa: E402

from foldnlp.config import ModelConfig  # noqa: E402
from foldnlp.errors import InputError  # noqa: E402
from foldnlp.pretrained import resolve_model_path  # noqa: E402

transformers.logging.set_verbosity_error()
log = logging.getLogger(__name__)

_HEADS = {"qa": AutoModelForQuestionAnswering}
_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
# Pickle formats: unpickling runs arbitrary code, so a downloaded or shared checkpoint in them is never loaded.
_PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def check_safetensors_weights(folder: str) -> None:
    """Refuse a local model folder whose weights exist only in a pickle format."""
    path = Path(folder)
    if not path.is_dir() or any((path / name).is_file() for name in _SAFE_WEIGHTS):
        return  # not a local folder (a hub name) or safe weights present: from_pretrained takes only those
    pickled = sorted(p.name for pattern in _PICKLED_WEIGHTS for p in path.glob(pattern))
    if pickled:
        raise InputError(f"refusing to load pickled weights {path / pickled[0]}: only safetensors are loaded "
                         "(unpickling can run code). Convert once, in a process you trust: "
                         "AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")
    raise InputError(f"{path}: no model.safetensors (or model.safetensors.index.json) in the model folder")


def load_tokenizer(path: str):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(path))
    if not tokenizer.is_fast:
        raise ValueError(f"{path}: a fast tokenizer is needed for character offsets")
    return tokenizer


def load_model(task: str, path: str, cfg: ModelConfig | None = None):
    """The backbone at `path` with the task's head. With cfg (training), apply dropout and freezing settings;
    without (inference from a saved checkpoint), load the folder exactly as saved. Only safetensors weights load."""
    folder = resolve_model_path(path)
    check_safetensors_weights(folder)
    config = AutoConfig.from_pretrained(folder)
    if cfg is not None and cfg.dropout is not None:
        for name in [k for k in config.to_dict() if k.endswith("dropout") or k.endswith("dropout_prob")]:
            setattr(config, name, cfg.dropout)
    model = _HEADS[task].from_pretrained(folder, config=config, use_safetensors=True)
    if cfg is not None and cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("loaded %s (%s head): %.1fM parameters, %.1fM trainable", folder, task,
             sum(p.numel() for p in model.parameters()) / 1e6, trainable / 1e6)
    return model
