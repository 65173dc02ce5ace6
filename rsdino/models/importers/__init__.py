"""Import published checkpoints into rsdino model folders (``rsdino import-weights``).

``safe_load`` reads a ``.pth`` with torch's safe unpickler and an explicit allow-list; a reader per
format (``readers.READERS``) maps its key layout to timm's; ``folder.import_weights`` matches the
weights to a catalogue backbone and writes the same model folder pretraining writes.

This module stays torch-free (the settings validator reads ``FORMATS``).
"""

from __future__ import annotations

#: The checkpoint formats ``rsdino import-weights --format`` and ``weights.format`` accept
#: (the keys of ``rsdino.models.importers.readers.READERS``).
FORMATS: tuple[str, ...] = ("dino", "dino_backbone", "dino_mc", "satdino", "dinov2")
