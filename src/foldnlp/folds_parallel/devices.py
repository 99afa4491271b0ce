"""The --devices spec: which slots folds run in, and each slot's process environment.

    0,1,2,3      four slots, one GPU each: four folds at a time, one process per fold
    0+1,2+3      two slots of two GPUs each: two folds at a time, each a DDP run of two processes (torchrun)
    cpu:2        two CPU slots: two folds at a time, one process each (cpu alone is cpu:1)

GPU numbers are those torch would call cuda:0, cuda:1, ... in this process: under a CUDA_VISIBLE_DEVICES already
set (a cluster's scheduler sets it), they index its entries, so a fold never reaches a GPU the job was not given.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

CPU = "cpu"


@dataclass(frozen=True)
class Slot:
    """Where one fold trains at a time: the GPUs it holds (numbered as in this process), or none for a CPU slot."""

    gpus: tuple[int, ...] = ()

    @property
    def processes(self) -> int:
        """Training processes of a fold in this slot: one per GPU (DDP over several), one on CPU."""
        return max(1, len(self.gpus))

    def describe(self) -> str:
        if not self.gpus:
            return CPU
        where = "+".join(f"cuda:{g}" for g in self.gpus)
        return where if len(self.gpus) == 1 else f"{where} (DDP, {len(self.gpus)} processes)"


def parse_devices(text: str) -> list[Slot]:
    """argparse type of --devices: the slots of a spec (see the module's docstring), refused with the usage line."""
    spec = text.strip().lower()
    if spec == CPU or spec.startswith(f"{CPU}:"):
        count = spec[len(CPU) + 1:] or "1"
        if not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: cpu:N needs a whole number of processes N ≥ 1, e.g. cpu:2")
        return [Slot() for _ in range(int(count))]
    slots = []
    for item in spec.split(","):
        numbers = item.split("+")
        if not all(n.strip().isdigit() for n in numbers):
            raise argparse.ArgumentTypeError(f"{text!r}: expected GPU numbers joined by ',' (one fold on each) or "
                                             "'+' (one fold over several, with DDP), e.g. 0,1 or 0+1,2+3; or cpu:N")
        slots.append(Slot(tuple(int(n) for n in numbers)))
    used = [g for slot in slots for g in slot.gpus]
    repeated = sorted({g for g in used if used.count(g) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"{text!r}: GPU {', '.join(map(str, repeated))} named more than once "
                                         "(two folds on one GPU would share its memory)")
    return slots


def threads_per_process(cores: int, processes: int) -> int:
    """CPU threads of each training process: the usable cores shared evenly among the processes that run at once
    (rounded down, at least 1), so that parallel folds do not oversubscribe the cores."""
    return max(1, cores // max(1, processes))


def slot_environment(slot: Slot, threads: int, visible: str | None) -> dict[str, str]:
    """The variables set for a fold's process(es) in `slot`: the GPUs it may see (none for a CPU slot: a CPU fold
    must not land on a GPU) and its thread count (torch's intra-op threads follow OMP_NUM_THREADS; torchrun passes
    a set value on to its workers). visible: this process's CUDA_VISIBLE_DEVICES, which the slot's GPU numbers
    index (None: unset, the numbers are the machine's); the numbers are checked against the GPUs
    torch sees before any fold starts."""
    entries = [e.strip() for e in visible.split(",") if e.strip()] if visible is not None else None
    gpus = [entries[g] if entries is not None else str(g) for g in slot.gpus]
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
