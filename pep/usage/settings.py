"""Usage counter settings."""

from __future__ import annotations

from typing import Literal

from pep.settings_base import Frozen


class UsageSettings(Frozen):
    store: str = "memory"  # or redis://127.0.0.1:6379/0
    on_store_error: Literal["deny", "allow"] = "deny"
