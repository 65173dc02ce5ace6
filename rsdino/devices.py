"""Which torch device a step runs on: ``auto`` is CUDA when this machine has a GPU, else the CPU.

``params.yaml`` says ``device: auto`` (or ``cpu`` / ``cuda``) for a scale's evaluations and the rules
pass it through as ``--device``; the step resolves it where it runs (a SLURM node, a laptop), so a
scale's name never decides the device: the full scale evaluates on the CPU of a machine without a
GPU instead of failing with "Found no NVIDIA driver" after pretraining.
"""

from __future__ import annotations

#: What ``--device`` accepts besides an explicit torch device string such as ``cuda:1``.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when ``cuda_available()``, else ``cpu``; any other name is returned as is.

    Raises:
        ValueError: ``cuda`` (or ``cuda:N``) asked for on a machine without a usable GPU, naming the
            way out (``device: auto`` or ``cpu``).
    """
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name.startswith("cuda") and not cuda_available():
        raise ValueError(f"--device {name}: this machine has no usable CUDA GPU "
                         "(use --device auto or cpu; in params.yaml, the scale's device: auto)")
    return name
