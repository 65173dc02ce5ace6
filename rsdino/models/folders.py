"""The layout of a model folder, torch-free (the Snakefile and the settings read it).

A variant's folder holds the teacher backbone (``model.safetensors`` + ``model.json``) and the
student's in ``student/`` (docs/architecture.md); ``rsdino.models.backbones`` writes and reads them.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
#: Which pretrained branch's backbone lives where inside a variant's model folder (``backbone_folder``).
BRANCH_FOLDERS = {"teacher": ".", "student": "student"}


def backbone_folder(model_dir: Path | str, branch: str = "teacher") -> Path:
    """The model folder of ``branch`` (``teacher`` or ``student``) inside a variant's ``model_dir``."""
    if branch not in BRANCH_FOLDERS:
        raise ValueError(f"unknown backbone branch {branch!r} (known: {', '.join(BRANCH_FOLDERS)})")
    return Path(model_dir) / BRANCH_FOLDERS[branch]
