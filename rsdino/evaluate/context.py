"""What an evaluation job knows besides its settings: the one argument every protocol runner shares.

Every runner of ``rsdino.config.protocols.PROTOCOLS`` is ``run(context, settings, tracker) -> dict``;
``context`` says where the model and the data are, where the job may write, and how to run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EvaluationContext:
    """The inputs of one evaluation job other than its settings and tracker.

    Args:
        model_dir: the exported backbone (``model.safetensors`` + ``model.json``) being evaluated.
        raw_dir: the evaluation dataset's raw folder.
        prepared_dir: its prepared folder (splits, statistics).
        device: where the networks run.
        progress: progress bars on a terminal, log lines in a log file (``rsdino.progress``).
        artifact_dir: where PNGs go (retrieval, analyses), or None.
        cache_dir: root of the feature cache (``rsdino.evaluate.feature_cache``), or None.
        native_size: the dataset's native image size (``datasets.<name>.native_size``), when known.
        dataset_cfg: the dataset's settings (``DatasetConfig``); None reads a scene-classification folder.
        bands: ``(index into the dataset's bands, the model's band names)``
            (``rsdino.evaluate.run.evaluation_bands``), or None to read every band.
        datasets: already opened parts (``{"train": ..., "test": ...}``), read instead of the folders.
    """

    model_dir: Path
    raw_dir: Path | None = None
    prepared_dir: Path | None = None
    device: str = "cpu"
    progress: bool = True
    artifact_dir: Path | None = None
    cache_dir: Path | None = None
    native_size: int | None = None
    dataset_cfg: Any = None
    bands: tuple[list[int], list[str]] | None = None
    datasets: Mapping[str, Any] | None = None

    def open_part(self, settings: Any, part: str) -> Any:
        """Part ``part`` (``train``/``test``) of the evaluation's ``split`` of its dataset.

        Opened through the task registry (``dataset_cfg``), so any labelled task works (scene
        folders, fMoW); without a dataset config, as a scene-classification folder. Its bands are
        those the model was trained on, matched by name (``bands``, ``rsdino.data.bands``).
        """
        from rsdino.data.bands import select_bands_of

        if self.datasets is not None:
            return select_bands_of(self.datasets[part], self.bands)
        from rsdino.data.registry import open_dataset
        from rsdino.data.scene import SceneDataset
        from rsdino.data.splits import DEFAULT_SPLIT, part_of

        split = part_of(getattr(settings, "split", DEFAULT_SPLIT), part)
        dataset = SceneDataset(self.raw_dir, self.prepared_dir, split) if self.dataset_cfg is None else \
            open_dataset(self.dataset_cfg, self.raw_dir, self.prepared_dir, split)
        return select_bands_of(dataset, self.bands)


def cache_name(settings: Any) -> str:
    """The dataset's name in feature-cache keys: ``<dataset>`` or ``<dataset>.<split>`` for a named split."""
    split = getattr(settings, "split", "default")
    return settings.dataset if split == "default" else f"{settings.dataset}.{split}"
