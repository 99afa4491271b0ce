"""The processes of one launch, and foldnlp's rule for them.

`torchrun` and `accelerate launch` start N copies of a command, over one machine or several; each is told its rank
(0 .. N-1 over every machine) in the environment. The rule, for training and inference alike:

- every process computes: training steps on its part of each global batch (batching.process_parts, the gradients
  averaged by DDP), and its share of every prediction (inference.predict deals its batches out and gathers the
  outputs back in window order, so every process holds all of them and takes the same decisions from them);
- process 0 alone writes (checkpoints, metrics, out-of-fold and test outputs, configs, training states), talks to
  wandb, draws progress and logs at INFO; the others log warnings only, and wait for it (wait()) where they read
  what it wrote.

A plain `python train_fold.py` is a launch of one process, for which all of this is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch and accelerate are imported where used: progress and the CLIs' logging read launch_rank() before --help.


@dataclass(frozen=True)
class Processes:
    """This process among the `count` processes of a launch."""

    index: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process is the one that writes, logs and tracks."""
        return self.index == 0

    def deal(self, items: list) -> list:
        """This process's share of items, dealt round-robin (process i takes items i, i + count, ...)."""
        return items[self.index :: self.count]

    def gather(self, mine) -> list:
        """Every process's `mine` (any picklable object), in process order, on every process."""
        if self.count == 1:
            return [mine]
        from accelerate.utils import gather_object

        return gather_object([mine])

    def wait(self) -> None:
        """A barrier: returns once every process has reached it (after process 0 wrote what the others read)."""
        if self.count > 1:
            _state().wait_for_everyone()


SINGLE = Processes()


def of_launch() -> Processes:
    """This process of the launch it was started by: SINGLE when no launcher started several (WORLD_SIZE, set by
    torchrun and accelerate launch, absent or 1), without importing accelerate, which the Kaggle kernel's inference
    does without. Otherwise it starts the process group on first use (accelerate's PartialState reads what the
    launcher set: gloo on CPUs, NCCL on GPUs) and gives each process of a machine its own GPU (see device())."""
    if _launch_size() == 1:
        return SINGLE
    state = _state()
    return Processes(state.process_index, state.num_processes)


def device() -> torch.device:
    """This process's device: its own GPU (cuda:<local rank>) in a launch of several, the GPU when there is one,
    else the CPU."""
    if _launch_size() == 1:
        import torch

        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return _state().device


def _state():
    """accelerate's PartialState, made as make_accelerator's Accelerator makes it (the CPU when there is no GPU)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _launch_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launch_rank() -> int:
    """This process's rank as the launcher set it (0 without a launcher): readable before any process group
    exists, for what is decided first (logging, progress)."""
    return int(os.environ.get("RANK", "0"))
