"""The CIFAR models of the Feather and GraNet papers: shapes, sizes, and sparse training through them."""

from __future__ import annotations

import io

import pytest
import torch

from greentune import techniques
from greentune.techniques.masks import prunable_layers
from greentune.trainables.flops import measure_step
from greentune.trainables.models import create_model

# Parameter counts with 100 classes; ResNet-20 at width 2 has the 1.096 M of Feather's Table 1.
SIZES = {
    ("resnet20", 1.0): 278_324, ("resnet20", 2.0): 1_096_196, ("mobilenet_v1", 1.0): 3_309_476,
    ("vgg19_bn", 1.0): 20_081_188, ("resnet50_cifar", None): 23_705_252,
}


@pytest.mark.parametrize("name, width", sorted(SIZES, key=str))
def test_cifar_models_map_images_to_class_logits(name, width):
    model = create_model(name, num_classes=100, width=width)
    assert sum(parameter.numel() for parameter in model.parameters()) == SIZES[name, width]
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_the_width_multiplier_scales_every_stage():
    narrow, wide = create_model("resnet20"), create_model("resnet20", width=2.0)
    assert [layer.out_channels for layer in prunable_layers(wide)[:-1]] == [
        2 * layer.out_channels for layer in prunable_layers(narrow)[:-1]
    ]


class Run:
    """Just enough of a run for ``prepare`` outside the loop."""

    total_steps, steps_per_epoch, seed, step = 10, 5, 0, 1


def test_feather_on_a_resnet_pickles_and_the_flop_counter_still_sees_every_conv():
    model = create_model("resnet20", num_classes=10)
    technique = techniques.create(["feather"], {"feather": {"sparsity": 0.9, "target_fraction": 0.1}})
    model = technique.prepare(model, Run())
    technique.after_step(Run())  # step 1 is Feather's target step here: the thresholds now give 90% sparsity
    inputs = torch.randn(4, 3, 32, 32)
    _, flops = measure_step(model, lambda: model(inputs).sum(), len(inputs))
    assert set(flops.layers) == set(technique.layers) and len(flops.layers) == 22  # 19 convs, 2 shortcuts, 1 linear
    assert flops.other_forward == 0 and flops.other_backward == 0  # BatchNorm, ReLU and pooling are not counted
    densities = technique.layer_densities(Run())
    expected = sum(float(density.weights) * flops.layers[layer].forward for layer, density in densities.items())
    assert float(flops.inference(densities)) == pytest.approx(expected / 4)
    assert flops.inference(densities) < 0.5 * flops.inference({})
    buffer = io.BytesIO()
    torch.save({"model": model, "technique": technique}, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        torch.testing.assert_close(restored["model"].eval()(inputs), model.eval()(inputs))
