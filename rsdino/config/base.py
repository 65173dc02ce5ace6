"""Base settings model and the settings error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from rsdino.errors import UserError


class ParamsError(UserError, ValueError):
    """Invalid settings; the message names the file and the key path of every problem."""


class StrictModel(BaseModel):
    """A settings block that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")
