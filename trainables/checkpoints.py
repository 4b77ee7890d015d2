"""Where a checkpoint's tensors land, and the global random states it carries.

A checkpoint holds two kinds of tensors. Those a run keeps on its device
(weights, optimizer state, masks, the data) were saved there and must land
on the device of the run that loads it, which may be another GPU index or
the CPU. Random states are CPU byte tensors whatever the device, since
``Generator.set_state`` and ``torch.set_rng_state`` take nothing else; a
technique's own CPU generator (static sparse training's topology stream) is
restored through ``set_state`` inside ``torch.load``, and a technique's
deliberate host-side tensors (ASL+'s r) are meant to stay on the host. So
what was saved on the CPU stays there, and the rest goes to the device.

The CUDA generator (dropout, gates' Bernoulli and Gumbel draws on the
device) is saved next to the CPU's, so a resumed GPU trial draws what the
uninterrupted one would have.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.serialization import default_restore_location


def restore_location(device: torch.device) -> Callable:
    """A ``torch.load`` ``map_location``: a storage saved on the CPU stays there, any other goes to ``device``."""
    target = str(device)

    def place(storage, location: str):
        return storage if location == "cpu" else default_restore_location(storage, target)

    return place


def rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    """The global generators' states: the CPU's, and the device's own where it is a GPU."""
    states = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda_rng"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states: dict, device: torch.device) -> None:
    """Set the global generators from a checkpoint's ``rng_states`` (a CUDA one only where both runs use CUDA)."""
    torch.set_rng_state(states["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in states:
        torch.cuda.set_rng_state(states["cuda_rng"], device)
