"""Inference and training step time of gating's exported networks relative to the full network, next to FLOPs.

Gated pruning (seed 004) pays off only through export: the static network
has fewer blocks (layer gating) or thinner blocks (channel gating between
the convs, or after them: conv2 computes only the open channels, added into
the shortcut at their places) and no gates. Here a gated ResNet's gates are set to decisions that close a given
share of blocks or channels (chosen at random, as training would leave
them), the technique's own export builds the static network, and the full
network is the same export with every gate open. All are timed on one
synthetic batch, variants interleaved over rounds; medians are printed.
The last two rows are the gated network as it trains (layer gates all open,
then the same share of blocks closed, as polarised gates leave them after an
epoch): what training costs before export.

    python benchmarks/gating_export_speed.py [--model gated_resnet56] [--closed 0.5] [--batch 128] [--size 32]
        [--steps 5] [--rounds 3] [--device cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from greentune.techniques.gating import Gating
from greentune.trainables.models import create_model


def gated(model_name: str, closed: float, seed: int, **gating) -> tuple[Gating, nn.Module]:
    """A gated network whose gates' static decisions close a random ``closed`` share of their units."""
    torch.manual_seed(seed)
    technique = Gating(**gating)
    model = technique.prepare(create_model(model_name), run=None)
    generator = torch.Generator().manual_seed(seed)
    for gate in technique.gates:
        gate.open_rate.copy_((torch.rand(gate.open_rate.shape, generator=generator) >= closed).float())
    return technique, model


def exported(model_name: str, granularity: str, closed: float, seed: int, position: str = "middle") -> tuple[nn.Module, nn.Module]:
    """(full network, exported network) for gates that close a ``closed`` share of their units."""
    technique, model = gated(model_name, closed, seed, granularity=granularity, position=position, depth=1)
    return technique._static(model, force_open=True), technique.export(model)


def gated_layers(model_name: str, closed: float, seed: int) -> nn.Module:
    """The gated network itself, its layer gates fixed so a ``closed`` share of blocks is closed for every input.

    Training with gates costs the gates' own work; a block whose static
    decision is closed skips its branch. Together they are what a training
    step costs once polarisation has unified the decisions.
    """
    technique, model = gated(model_name, closed, seed, granularity="layer", depth=2)
    with torch.no_grad():
        for gate in technique.gates:  # every input decides as the static decision does
            last = gate.logits[-1]
            last.weight.zero_()
            last.bias.fill_(2.0 if bool(gate.open_rate) else -2.0)
    technique.on_epoch_end(SimpleNamespace(model=model, structure_changed=lambda: None))  # where training starts skipping closed blocks
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_seconds(model: nn.Module, inputs: torch.Tensor, steps: int) -> float:
    model.eval()
    with torch.no_grad():
        model(inputs)
        sync(inputs.device)
        start = time.perf_counter()
        for _ in range(steps):
            model(inputs)
        sync(inputs.device)
    return (time.perf_counter() - start) / steps


def train_seconds(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, steps: int) -> float:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()

    step()
    sync(inputs.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(inputs.device)
    return (time.perf_counter() - start) / steps


def inference_flops(model: nn.Module, inputs: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gated_resnet56")
    parser.add_argument("--closed", type=float, default=0.5, help="share of blocks or channels the gates close")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    inputs = torch.randn(args.batch, 3, args.size, args.size, device=device)
    targets = torch.randint(10, (args.batch,), device=device)

    full, _ = exported(args.model, "layer", 0.0, 0)
    variants = {"full": full}
    variants["layer gating"] = exported(args.model, "layer", args.closed, 0)[1]
    for position in ("middle", "after"):
        variants[f"channel {position}"] = exported(args.model, "channel", args.closed, 0, position)[1]
    variants["layer gates, open"] = gated_layers(args.model, 0.0, 0)
    variants["layer gates, closing"] = gated_layers(args.model, args.closed, 0)
    variants = {name: model.to(device) for name, model in variants.items()}
    times = {name: {"inference": [], "train": []} for name in variants}
    for _ in range(args.rounds):
        for name, model in variants.items():
            times[name]["inference"].append(inference_seconds(model, inputs, args.steps))
            times[name]["train"].append(train_seconds(model, inputs, targets, args.steps))
    reference = {kind: statistics.median(times["full"][kind]) for kind in ("inference", "train")}
    full_flops = inference_flops(full, inputs[:1])
    full_params = sum(parameter.numel() for parameter in full.parameters())
    print(f"{args.model}, {args.closed:.0%} of blocks/channels closed, batch {args.batch} at {args.size}px on {device}")
    print(f"{'network':<22}{'FLOPs ratio':>12}{'params ratio':>14}{'inference time':>16}{'train step time':>17}")
    for name, model in variants.items():
        flops = inference_flops(model, inputs[:1]) / full_flops
        params = sum(parameter.numel() for parameter in model.parameters()) / full_params
        inference = statistics.median(times[name]["inference"]) / reference["inference"]
        train = statistics.median(times[name]["train"]) / reference["train"]
        print(f"{name:<22}{flops:>12.3f}{params:>14.3f}{inference:>16.3f}{train:>17.3f}")
    print(f"full network: {reference['inference'] * 1e3:.1f} ms inference, {reference['train'] * 1e3:.1f} ms train step")


if __name__ == "__main__":
    main()
