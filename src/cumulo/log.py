"""Structured logs: named events with the service, slot, role and instance bound.

Use ``get_logger(service=..., slot=..., role=..., instance=...)`` and log events by name
(``log.info("instance.started", pid=123)``). Output is one line per event: key=value for a
terminal, JSON lines when ``CUMULO_LOG_FORMAT=json`` (what services write to their log files).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_configured = False


def configure(level: str | None = None, fmt: str | None = None, stream: Any = None) -> None:
    """Configure structlog once for this process (idempotent)."""
    global _configured
    level_name = (level or os.environ.get("CUMULO_LOG_LEVEL", "info")).upper()
    fmt = fmt or os.environ.get("CUMULO_LOG_FORMAT", "console")
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level_name, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(**bound: Any) -> Any:
    """A logger with the given fields bound (None values are left out)."""
    if not _configured:
        configure()
    return structlog.get_logger().bind(**{k: v for k, v in bound.items() if v is not None})
