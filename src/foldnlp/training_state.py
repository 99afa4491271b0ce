"""The resumable training state of a fold, saved and loaded without pickle.

A state folder holds everything needed to continue a killed run as if it had never stopped:

    model.safetensors      current weights (not the best ones: those are in fold<k>/model/)
    optimizer.safetensors  the optimizer's per-parameter tensors (AdamW moments and step counts)
    rng.safetensors        torch's CPU (and CUDA) random generator states, of every process of a multi-process
                           launch (each draws its own dropout), process 0's under plain names ("cpu", "cuda0")
    state.json             step, data-order position, best score, early-stopping counter, evaluation history,
                           the training loss summed since the last evaluation, the healing events (skipped
                           steps, reverts, learning-rate scale, batches to skip),
                           optimizer hyper-parameters, scheduler and grad-scaler states, python and numpy RNG
                           states, and the provenance (config and data hashes) of the run it belongs to

Only safetensors and JSON are read back, so loading a state can never execute code.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from foldnlp import artifacts
from foldnlp.errors import InputError

STATE_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")


@dataclass
class LoopPosition:
    """Where the training loop stands, in plain JSON types."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # index of the epoch being trained (0-based)
    batches_done: int = 0  # batches of that epoch this process has consumed
    epoch_rng: dict | None = None  # data-order generator state *before* this epoch's batches were drawn
    loss_avg: float | None = None  # running loss shown in the progress bar
    # Batch losses since the last evaluation, whose mean is that evaluation's train_loss in the history. Saved with
    # the state, so that a resumed run's history is the uninterrupted run's.
    loss_sum: float = 0.0
    loss_batches: int = 0
    since_best: int = 0  # evaluations since the last new best (early stopping)
    best_score: float | None = None
    best_step: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0  # training seconds before this process started (for the history's elapsed_s)
    # Training that heals itself (training_guard.py): what happened, and what it changed for the rest of the run.
    # A revert restores a saved state but keeps these, so they only grow; saved, so a resumed run keeps them too.
    events: list[dict] = field(default_factory=list)  # one per skipped step or revert, as in metrics.json
    nonfinite_steps: int = 0  # steps not taken: non-finite loss or gradient norm (fp16 overflows included)
    reverts: int = 0  # loss spikes sent back to a saved state
    lr_scale: float = 1.0  # every learning rate's factor after the reverts (train.spike_lr_scale per revert)
    skipped_batches: list[list[int]] = field(default_factory=list)  # [epoch, batch index] pairs never trained
    # Processes of the launch that trained it: the global batch is train.batch_size × processes, so batches_done
    # and skipped_batches mean the same batches only in a launch of as many processes.
    processes: int = 1


def save_state(folder: Path, *, model, optimizer, scheduler, scaler, position: LoopPosition, provenance: dict,
               rng_states: list[dict[str, torch.Tensor]] | None = None) -> None:
    """Write the state folder atomically (a kill leaves the previous state or this one, never a mix).

    rng_states: torch_rng_tensors() of every process of the launch, in process order (None: this process's)."""

    def fill(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, optimizer_json = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        generators = {f"{_process_prefix(index)}{name}": value
                      for index, states in enumerate(rng_states or [torch_rng_tensors()])
                      for name, value in states.items()}
        save_file(generators, str(tmp / "rng.safetensors"))
        state = {"position": asdict(position), "optimizer": optimizer_json, "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "python_rng": _python_rng_to_json(random.getstate()), "numpy_rng": _numpy_rng_to_json(),
                 "provenance": provenance}
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")

    artifacts.atomic_write_dir(folder, fill)


def read_state_json(folder: Path) -> dict:
    """state.json of a state folder (InputError when incomplete, e.g. copied by hand)."""
    folder = artifacts.recover_dir(folder)
    missing = [name for name in STATE_FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(f"training state {folder} is incomplete (missing {', '.join(missing)}); "
                         "start the fold again with --overwrite")
    return json.loads((folder / "state.json").read_text(encoding="utf-8"))


def load_state(folder: Path, *, model, optimizer, scheduler, scaler, process_index: int = 0) -> LoopPosition:
    """Restore weights, optimizer, scheduler, scaler and every RNG from the folder; returns the loop position.

    Call after accelerator.prepare: the optimizer then moves the loaded moments to its parameters' device.
    process_index: whose torch generators to restore (this process's, in a launch of as many processes as saved
    the state: LoopPosition.processes); the other states are the same for every process.
    """
    state = read_state_json(folder)
    load_model(model, str(folder / "model.safetensors"), strict=True)
    optimizer.load_state_dict(_join_optimizer_state(load_file(str(folder / "optimizer.safetensors")),
                                                    state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    _set_torch_rng(load_file(str(folder / "rng.safetensors")), _process_prefix(process_index))
    random.setstate(_python_rng_from_json(state["python_rng"]))
    np.random.set_state(_numpy_rng_from_json(state["numpy_rng"]))
    return LoopPosition(**state["position"])


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch optimizer state_dict → (tensors keyed "<param index>.<name>", everything else as JSON)."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


def torch_rng_tensors() -> dict[str, torch.Tensor]:
    """This process's torch generator states: "cpu", and "cuda<i>" for each visible GPU."""
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return tensors


def _process_prefix(index: int) -> str:
    """How rng.safetensors names a process's generators: process 0's plainly (as states of one process always were),
    process i's as "process<i>.cpu", ..."""
    return "" if index == 0 else f"process{index}."


def _set_torch_rng(tensors: dict[str, torch.Tensor], prefix: str) -> None:
    torch.set_rng_state(tensors[f"{prefix}cpu"])
    cuda = [tensors[f"{prefix}cuda{i}"] for i in range(sum(1 for name in tensors if name.startswith(f"{prefix}cuda")))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(saved: list) -> tuple:
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def _numpy_rng_to_json() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), pos, has_gauss, cached]


def _numpy_rng_from_json(saved: list) -> tuple:
    name, keys, pos, has_gauss, cached = saved
    return name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached
