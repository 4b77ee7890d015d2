"""The shared form of a network (safetensors + a JSON architecture): rebuilt from trusted classes only, outputs unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from greentune.layout import SHARED_ARCHITECTURE_FILE
from greentune.trainables.models import MODELS
from greentune.trainables.models.torchvision_models import torchvision_model
from greentune.trainables.shared_model import load_shared_model, save_shared_model


class OwnBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, inputs):
        return self.linear(inputs).relu()


@pytest.mark.parametrize("name", ["gated_resnet8", "wrn28_1", "mobilenet_v1", "tv:resnet18"])
def test_image_models_round_trip_with_the_same_outputs(name, tmp_path):
    torch.manual_seed(0)
    model = (torchvision_model("resnet18", num_classes=10) if name == "tv:resnet18" else MODELS.create(name)).eval()
    save_shared_model(model, tmp_path)
    again = load_shared_model(tmp_path)
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(inputs), model(inputs))


def test_a_class_outside_torch_and_greentune_is_refused_unless_trusted(tmp_path):
    save_shared_model(OwnBlock(), tmp_path)
    with pytest.raises(ValueError, match=f"names {__name__}:OwnBlock, outside torch.nn."):
        load_shared_model(tmp_path)
    assert isinstance(load_shared_model(tmp_path, trust=[f"{__name__}."]), OwnBlock)


def test_a_file_cannot_name_something_to_call(tmp_path):
    save_shared_model(nn.Linear(2, 2), tmp_path)
    architecture = json.loads((tmp_path / SHARED_ARCHITECTURE_FILE).read_text())
    architecture["root"]["class"] = "torch.nn.modules.linear:os.system"  # torch.nn's module imports os
    (tmp_path / SHARED_ARCHITECTURE_FILE).write_text(json.dumps(architecture))
    with pytest.raises(ValueError, match="which is not a torch.nn.Module class"):
        load_shared_model(tmp_path)


def test_a_network_holding_a_function_has_no_shared_form(tmp_path):
    model = nn.Linear(2, 2)
    model.activation = torch.tanh
    with pytest.raises(ValueError, match="attribute 'activation' is a builtin_function_or_method"):
        save_shared_model(model, tmp_path)
