"""A pretrained backbone with a task's head, from a local folder (or the bundled default), with dropout and freezing."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers 5 prints a bar on every load

import transformers  # noqa: E402
from transformers import AutoConfig, AutoTokenizer  # noqa: E402

from foldnlp.artifacts import check_safetensors_weights  # noqa: E402
from foldnlp.config import ModelConfig  # noqa: E402
from foldnlp.errors import InputError  # noqa: E402
from foldnlp.pretrained import resolve_model_path  # noqa: E402

transformers.logging.set_verbosity_error()
log = logging.getLogger(__name__)


def load_tokenizer(path: str):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(path))
    if not tokenizer.is_fast:
        raise ValueError(f"{path}: a fast tokenizer is needed for character offsets")
    return tokenizer


def load_model(head_class, path: str, cfg: ModelConfig | None = None, **head_config):
    """The backbone at `path` with the head of `head_class` (a transformers Auto* class chosen by the task, e.g.
    AutoModelForQuestionAnswering). With cfg (training), apply dropout, freezing and gradient checkpointing
    settings; without (inference from a saved checkpoint), load the folder exactly as saved.
    head_config: settings of the head for a fresh one (token classification: num_labels, id2label).
    Only safetensors weights load."""
    folder = resolve_model_path(path)
    check_safetensors_weights(folder)
    config = AutoConfig.from_pretrained(folder, **head_config)
    if cfg is not None and cfg.dropout is not None:
        for name in [k for k in config.to_dict() if k.endswith("dropout") or k.endswith("dropout_prob")]:
            setattr(config, name, cfg.dropout)
    model = head_class.from_pretrained(folder, config=config, use_safetensors=True)
    if cfg is not None and cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg is not None and cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("loaded %s (%s): %.1fM parameters, %.1fM trainable", folder, head_class.__name__,
             sum(p.numel() for p in model.parameters()) / 1e6, trainable / 1e6)
    return model


def enable_gradient_checkpointing(model) -> None:
    """model.gradient_checkpointing: every layer's activations recomputed in the backward pass (transformers'
    activation checkpointing, the successor of gradient_checkpointing_enable). Non-reentrant checkpointing: it
    needs no input that requires a gradient (the word embeddings may be frozen) and works with DDP."""
    if not model.supports_gradient_checkpointing:
        raise InputError(f"model.gradient_checkpointing: {type(model).__name__} does not support it; set it to false")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
