"""Device ``auto`` at every scale: CUDA when the machine has a GPU, else CPU; resources from params."""

from __future__ import annotations

import pytest

from rsdino import devices
from rsdino.config import load_params
from rsdino.devices import resolve_device


@pytest.mark.parametrize(("gpu", "expected"), [(False, "cpu"), (True, "cuda")])
def test_auto_is_cuda_only_where_there_is_a_gpu(monkeypatch, gpu, expected) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: gpu)
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"


def test_cuda_without_a_gpu_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    with pytest.raises(ValueError, match="no usable CUDA GPU .*--device auto"):
        resolve_device("cuda")


def test_the_full_scale_evaluates_on_the_cpu_of_a_machine_without_a_gpu(monkeypatch) -> None:
    """What the evaluate rule passes as --device for the full scale, resolved where no GPU is."""
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    full = load_params("params.yaml", "full")
    assert full.selected.device == "auto"
    assert resolve_device(full.selected.device) == "cpu"
    # its resources come from params (a GPU cluster's job size), not from the scale's name
    assert full.selected.evaluation_resources.gpus == 1
    mini = load_params("params.yaml", "mini")
    assert mini.selected.evaluation_resources.gpus == 0 and resolve_device(mini.selected.device) == "cpu"


def test_evaluate_command_resolves_auto_to_the_cpu(monkeypatch, tmp_path) -> None:
    """``rsdino evaluate --device auto`` on a machine without a GPU gets as far as the missing model."""
    from rsdino import cli

    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    seen = []
    real = cli._device
    monkeypatch.setattr(cli, "_device", lambda name: seen.append(real(name)) or seen[-1])
    code = cli.main(["evaluate", "--scale", "full", "--evaluation", "eurosat_knn",
                     "--variant", "dinomc_vits16", "--model", str(tmp_path / "m"), "--raw", str(tmp_path),
                     "--data", str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert code == 2 and seen == ["cpu"]
