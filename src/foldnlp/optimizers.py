"""The optimizer of train.optimizer: torch's AdamW, or bitsandbytes' 8-bit AdamW where it can run (CUDA)."""

from __future__ import annotations

import importlib.util

import torch

from foldnlp.config import TrainConfig
from foldnlp.errors import InputError


def check_available(name: str, device: torch.device) -> None:
    """Refuse (InputError) an optimizer this machine cannot run, before any data is read or model loaded.
    adamw_8bit keeps its moments in bitsandbytes' blockwise 8-bit format, whose kernels foldnlp uses on CUDA only."""
    if name != "adamw_8bit":
        return
    if device.type != "cuda":
        raise InputError(f"train.optimizer: adamw_8bit needs a CUDA GPU (bitsandbytes' 8-bit kernels), and this run "
                         f"is on {device.type}: use train.optimizer=adamw")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError("train.optimizer: adamw_8bit needs bitsandbytes, which is not installed: "
                         "`pip install bitsandbytes`, or use train.optimizer=adamw")


def make_optimizer(groups: list[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer of cfg.optimizer over parameter groups (each with its lr and weight_decay, see
    training.param_groups), with train.adam_beta1/adam_beta2/adam_eps."""
    check_available(cfg.optimizer, device)
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    if cfg.optimizer == "adamw_8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(groups, lr=cfg.lr, betas=betas, eps=cfg.adam_eps)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.adam_eps)
