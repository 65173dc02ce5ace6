"""The backbone catalogue: typed, registered, read-only entries, importable without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rsdino.models.catalog import BACKBONES, BackboneEntry, backbone_entry, register_backbone


def test_every_entry_is_filed_under_its_own_name() -> None:
    assert BACKBONES and all(isinstance(entry, BackboneEntry) and entry.name == name
                             for name, entry in BACKBONES.items())
    assert {entry.family for entry in BACKBONES.values()} <= {"vit", "cnn", "swin"}
    assert all((entry.patch_size is None) == (entry.family == "cnn") for entry in BACKBONES.values())


def test_entries_cannot_be_changed_in_place() -> None:
    entry = backbone_entry("vit_tiny_patch8")
    with pytest.raises(AttributeError):
        entry.timm_name = "resnet18"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.kwargs["depth"] = 12  # type: ignore[index]
    assert dict(entry.kwargs) == {"patch_size": 8, "depth": 4}


def test_unknown_name_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'vit_huge'; known: vit_tiny_patch8, "):
        backbone_entry("vit_huge")


def test_a_name_is_registered_once_and_the_family_is_checked() -> None:
    before = dict(BACKBONES)
    with pytest.raises(ValueError, match="'resnet50' is registered twice"):
        register_backbone("resnet50", "resnet50", family="cnn", patch_size=None)
    with pytest.raises(ValueError, match="unknown family 'mlp'"):
        register_backbone("mlp_tiny", "mlp_mixer_s16_224", family="mlp", patch_size=16)  # type: ignore[arg-type]
    assert BACKBONES == before


def test_the_catalogue_does_not_import_torch() -> None:
    code = "import sys, rsdino.models.catalog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
