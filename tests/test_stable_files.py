"""Weight files are byte-reproducible: same tensors and metadata, same bytes."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, safe_open

from rsdino.stable_files import save_safetensors, save_torch

METADATA = {name: f"value of {name}" for name in ("method", "variant", "backbone", "format", "bands", "seed")}


def test_repeated_writes_give_the_same_bytes(tmp_path):
    # safetensors alone orders its metadata by a per-call hash map: 6 keys, 10 writes, 10 different files
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int64)}
    for i in range(10):
        save_safetensors(tensors, tmp_path / f"{i}.safetensors", metadata=METADATA)
        save_torch({"model": tensors, "step": 3, "history": {"loss": [1.0, 0.5]}}, tmp_path / f"{i}.pt")
    for suffix in (".safetensors", ".pt"):
        assert len({(tmp_path / f"{i}{suffix}").read_bytes() for i in range(10)}) == 1, suffix


def test_the_files_read_back_with_their_metadata(tmp_path):
    tensors = {"w": torch.randn(3, 5), "b": torch.zeros(5)}
    save_safetensors(tensors, tmp_path / "m.safetensors", metadata=METADATA)
    loaded = load_file(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    with safe_open(tmp_path / "m.safetensors", "pt") as handle:
        assert handle.metadata() == METADATA
    save_torch({"w": tensors["w"]}, tmp_path / "s.pt")
    assert torch.equal(torch.load(tmp_path / "s.pt", weights_only=True)["w"], tensors["w"])
    assert not list(tmp_path.glob(".*"))  # no temporary file left
