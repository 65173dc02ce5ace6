"""How the Snakemake pretrain rule launches a variant (used by ``workflow/rules/pretrain.smk``).

The launcher of a variant is ``--config launcher=...`` when given (the slurm profile sets
``submitit``), else the variant's own ``launcher`` in params.yaml. With ``submitit`` the rule runs
on the machine where snakemake runs (a local rule) and submits the training as one SLURM job; with
``local`` the rule's job is the training itself.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from rsdino.config import VariantConfig
from rsdino.launch import LAUNCHERS


def pretrain_launcher(variant: VariantConfig, override: str | None = None) -> str:
    """``override`` (``--config launcher=...``) if given, else the variant's launcher."""
    launcher = override or variant.launcher
    if launcher not in LAUNCHERS:
        raise ValueError(f"--config launcher={launcher}: unknown launcher (known: {', '.join(LAUNCHERS)})")
    return launcher


def submits_from_here(variants: Iterable[VariantConfig], override: str | None = None) -> bool:
    """Whether the pretrain rule must run where snakemake runs: some selected variant uses submitit."""
    return any(pretrain_launcher(variant, override) == "submitit" for variant in variants)


def rule_threads(variant: VariantConfig, override: str | None = None) -> int:
    """Cores the rule's own process takes: the variant's CPUs, or 1 for a submitit rule that only waits.

    (A local rule claiming many cores would let snakemake wait for one pretraining job at a time.)
    """
    return 1 if pretrain_launcher(variant, override) == "submitit" else variant.resources.cpus_per_task


def launch_flags(variant: VariantConfig, override: str | None, resources: Any) -> str:
    """The launcher flags of ``rsdino pretrain`` for one variant.

    Args:
        variant: the variant's settings (its ``resources.gpus_per_node``: ``auto`` device, else ``cpu``).
        override: ``--config launcher=...``, or ``None``.
        resources: the rule's Snakemake resources; ``slurm_partition``, ``slurm_account``,
            ``slurm_qos`` and ``slurm_extra`` (the executor plugin's names) go to the submitit job.
    """
    launcher = pretrain_launcher(variant, override)
    # GPUs asked for: CUDA where the job lands on one, else its CPU (rsdino.devices); none asked: CPU.
    flags = ["--device", "auto" if variant.resources.gpus_per_node else "cpu", "--launcher", launcher]
    if launcher == "submitit":
        for key in ("partition", "account", "qos"):
            value = resources.get(f"slurm_{key}")
            if value:
                flags += [f"--slurm-{key}", shlex.quote(str(value))]
        extra = resources.get("slurm_extra")
        if extra:  # the plugin's convention quotes the whole value ("'--constraint=a100'")
            flags.append("--slurm-extra=" + shlex.quote(str(extra).strip("'\"")))
        flags += ["--slurm-folder", "logs/submitit"]
    return " ".join(flags)
