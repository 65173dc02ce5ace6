"""The pretrain rule's launcher flags (``rsdino.launch.workflow``); no cluster needed."""

from __future__ import annotations

import shlex

import pytest

from rsdino.config import ResourceSettings, VariantConfig
from rsdino.launch.workflow import launch_flags, pretrain_launcher, rule_threads, submits_from_here


def _variant(launcher: str = "local", gpus: int = 0) -> VariantConfig:
    return VariantConfig(method="dino", backbone="vit_tiny_patch8", pretrain_data="x", launcher=launcher,
                         resources=ResourceSettings(gpus_per_node=gpus))


def test_the_config_override_beats_the_variant() -> None:
    assert pretrain_launcher(_variant("local")) == "local"
    assert pretrain_launcher(_variant("submitit")) == "submitit"
    assert pretrain_launcher(_variant("submitit"), "local") == "local"
    assert submits_from_here([_variant(), _variant("submitit")]) is True
    assert submits_from_here([_variant(), _variant("submitit")], "local") is False
    with pytest.raises(ValueError, match="launcher=slurm"):
        pretrain_launcher(_variant(), "slurm")


def test_local_flags_pick_the_device() -> None:
    assert launch_flags(_variant(), None, {}) == "--device cpu --launcher local"
    flags = launch_flags(_variant(gpus=4), None, {"slurm_partition": "gpu"})
    assert flags == "--device auto --launcher local"  # CUDA where the job finds a GPU, else CPU


def test_submitit_flags_carry_the_profile_resources() -> None:
    resources = {"slurm_partition": "gpu", "slurm_account": "proj 1",
                 "slurm_extra": "'--constraint=a100 --exclusive'"}  # the plugin's quoting
    argv = shlex.split(launch_flags(_variant(gpus=8), "submitit", resources))
    assert argv == ["--device", "auto", "--launcher", "submitit", "--slurm-partition", "gpu",
                    "--slurm-account", "proj 1", "--slurm-extra=--constraint=a100 --exclusive",
                    "--slurm-folder", "logs/submitit"]


def test_a_submitit_rule_takes_one_core_where_snakemake_runs() -> None:
    variant = VariantConfig(method="dino", backbone="vit_tiny_patch8", pretrain_data="x",
                            resources=ResourceSettings(cpus_per_task=6))
    assert rule_threads(variant) == 6
    assert rule_threads(variant, "submitit") == 1
