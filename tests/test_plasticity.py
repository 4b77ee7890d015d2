"""The pruning-plasticity tool: one-shot pruning at epoch t, optional regeneration, a fixed mask afterwards."""

from __future__ import annotations

import pytest
import torch

from greentune.trainables.plasticity import main, pruning_plasticity

CONFIG = {
    "task": "teacher_student",
    "task_options": {"n_train": 200, "n_test": 100},
    "model": "wide",
    "train": {"batch_size": 20, "steps": 200, "schedule": "cosine", "lr": 0.05},
}  # 10 steps per epoch


def test_pruning_at_a_rate_then_continuing_keeps_the_mask_and_the_lr_of_that_epoch(tmp_path):
    result = pruning_plasticity(CONFIG, epoch=3, rate=0.5, regenerate=False, continue_epochs=2, directory=tmp_path)
    assert result["sparsity_before"] == 0.0
    assert result["sparsity_after"] == pytest.approx(0.5, abs=1e-3)
    assert result["lr"] == pytest.approx(0.5 * 0.05 * (1 + torch.cos(torch.tensor(torch.pi * 29 / 200)).item()))
    assert result["plasticity"] == result["quality_after"] - result["quality_before"]


def test_regeneration_restores_each_layers_count_and_the_checkpoint_at_t_is_shared(tmp_path):
    plain = pruning_plasticity(CONFIG, epoch=2, rate=0.9, regenerate=False, continue_epochs=1, directory=tmp_path)
    regrown = pruning_plasticity(CONFIG, epoch=2, rate=0.9, regenerate=True, continue_epochs=1, directory=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert regrown["quality_before"] == plain["quality_before"]
    assert plain["sparsity_after"] == pytest.approx(0.9, abs=1e-3)
    assert regrown["sparsity_after"] == pytest.approx(regrown["sparsity_before"])


def test_a_sparse_pretraining_keeps_its_zeros_and_loses_a_fraction_of_the_rest(tmp_path):
    config = {**CONFIG, "techniques": ["gmp"], "gmp": {"final_sparsity": 0.8, "end_fraction": 0.1, "interval": 5}}
    result = pruning_plasticity(config, epoch=3, rate=0.5, regenerate=False, continue_epochs=1, directory=tmp_path)
    assert result["sparsity_before"] == pytest.approx(0.8, abs=1e-3)
    assert result["sparsity_after"] == pytest.approx(0.9, abs=1e-3)  # 0.8 + 0.5 * 0.2: old zeros stay


def test_the_command_line_prints_one_row_per_grid_point(capsys):
    assert main(["--epochs", "1", "--rates", "0.5", "--continue-epochs", "0.5"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("quality: test_loss (lower is better)")
    assert len(rows) == 4 and rows[2].split()[2] == "False" and rows[3].split()[2] == "True"


def test_a_bad_rate_is_a_one_line_error(capsys):
    assert main(["--epochs", "1", "--rates", "1.0"]) == 2
    assert "pruning rate must be in [0, 1)" in capsys.readouterr().err
