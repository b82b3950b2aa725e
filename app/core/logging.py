"""Logging set-up: the seeds' text format by default, one JSON object per line on request."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

# Set by the request middleware; JSON log lines carry it.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, logger, level, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "logger": record.name,
            "level": record.levelname,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


class _EscapingFormatter(logging.Formatter):
    """Text format with CR/LF escaped, so no client-supplied text can forge a log line."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        message_end = text.find("\nTraceback")
        head, tail = (text, "") if message_end < 0 else (text[:message_end], text[message_end:])
        return head.replace("\r", "\\r").replace("\n", "\\n") + tail


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route the `app` and `uvicorn` loggers to stdout in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter() if fmt == "json" else _EscapingFormatter(TEXT_FORMAT, DATE_FORMAT)
    handler.setFormatter(formatter)
    app_logger = logging.getLogger("app")
    app_logger.handlers[:] = [handler]
    app_logger.setLevel(level.upper())
    app_logger.propagate = False
    # Requests are logged by our middleware (with a request id); uvicorn's access log
    # would say the same thing twice.
    logging.getLogger("uvicorn.access").disabled = True
