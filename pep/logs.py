"""Logging set-up: the one place that installs the gateway's log format and level.

``REGOGATE_LOG_FORMAT=json`` writes one JSON object per line (python-json-logger) with
``time``, ``level``, ``logger``, ``message`` and any structured fields a record carries;
``text`` (the default) is the classic human line. ``REGOGATE_LOG_LEVEL`` sets the level.

One ``regogate.access`` record per request (see ``access``) carries the request id, trace id,
subject, decision, status and timings. Never log token, key or body bytes: the fields are
chosen here, not copied from the request.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from pep.config import ConfigError

FORMATS = ("text", "json")
ACCESS = logging.getLogger("regogate.access")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", fmt: str = "text", *, stream: Any = None) -> None:
    """Install the root handler (replacing any earlier one of ours)."""
    name = level.upper()
    if name not in logging.getLevelNamesMapping():
        raise ConfigError(f"REGOGATE_LOG_LEVEL {level!r} is not a level"
                          " (DEBUG, INFO, WARNING, ERROR)")
    if fmt not in FORMATS:
        raise ConfigError(f"REGOGATE_LOG_FORMAT {fmt!r} must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("regogate")
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        ))
    else:
        handler.setFormatter(logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "regogate"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name)


def access(fields: dict[str, Any]) -> None:
    """The per-request line. Skipped entirely (no formatting) when INFO is off."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info("%s %s %s request_id=%s subject=%s decision=%s %.1fms",
                    fields["method"], fields["path"], fields["status"], fields["request_id"],
                    fields.get("subject"), fields.get("decision"), fields["latency_ms"],
                    extra=fields)
