"""Fully connected networks, written ``n_in:n_h:n_out`` in the papers."""

from __future__ import annotations

from torch import nn

from greentune.techniques.masks import keep_dense

from . import register_model
from .layers import UnitSlopeReLU


@register_model
def mlp(sizes: list[int], dense_output: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them, e.g. ``sizes=[100, 50, 10]``.

    The ReLU has slope 1 at zero so that units grown with zero incoming
    weights can learn; its forward values are ReLU's. ``dense_output`` marks
    the last layer as never masked (``keep_dense``).
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {sizes}")
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), UnitSlopeReLU()]
    if dense_output:
        keep_dense(layers[-2])
    return nn.Sequential(*layers[:-1])


def mlp_weights(sizes: list[int]) -> int:
    """Weights (biases excluded) of the dense MLP with these layer sizes."""
    return sum(fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def equal_width_mlp(inputs: int, outputs: int, hidden_layers: int, weights: int) -> list[int]:
    """The narrowest MLP with ``hidden_layers`` equal hidden layers and at least ``weights`` weights.

    The paper's parameter-equivalent KMNIST network, for the 26,880 active
    weights of 784-256-256-10 at density 0.1:

    >>> equal_width_mlp(784, 10, 2, 26_880)
    [784, 33, 33, 10]
    """
    width = 1
    while mlp_weights([inputs, *[width] * hidden_layers, outputs]) < weights:
        width += 1
    return [inputs, *[width] * hidden_layers, outputs]
