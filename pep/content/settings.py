"""Content inspection settings."""

from __future__ import annotations

from pep.settings_base import Frozen


class ContentSettings(Frozen):
    enabled: bool = True
