"""Settings of ``extraction:``: the limits an archive must stay within before anything is unpacked."""

from __future__ import annotations

from pydantic import Field

from rsdino.config.base import StrictModel
from rsdino.data.extract import ExtractionLimits


class ExtractionSettings(StrictModel):
    """Limits checked on an archive's member list (``rsdino.data.extract``) before extraction.

    ``max_total_gb``: the sum of the members' sizes (10^9 bytes); ``max_members``: files and folders;
    ``max_ratio``: unpacked bytes over archive bytes (whole archive, and each zip member over its
    compressed size). A zip bomb of zeros reaches about 1000; image archives stay below 20.
    """

    max_total_gb: float = Field(default=ExtractionLimits.max_total_gb, gt=0)
    max_members: int = Field(default=ExtractionLimits.max_members, gt=0)
    max_ratio: float = Field(default=ExtractionLimits.max_ratio, gt=1)
