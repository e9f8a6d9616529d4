"""Structured logging in logfmt or JSON, as the Prometheus exporters log.

Call sites pass fields through ``extra=``; the formatters print them after the message.
Nothing here knows about secrets: callers never log them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return json.dumps(text)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"ts={_timestamp(record)}", f"level={_level(record)}", f"msg={_logfmt_value(record.getMessage())}"]
        parts += [f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items()]
        if record.exc_info:
            parts.append(f"err={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {"ts": _timestamp(record), "level": _level(record), "msg": record.getMessage()}
        data.update(
            {
                key: value if isinstance(value, (int, float, bool)) else str(value)
                for key, value in _fields(record).items()
            }
        )
        if record.exc_info:
            data["err"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> logging.Logger:
    """Configure the ``exporter`` logger to write to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    logger = logging.getLogger("exporter")
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[level])
    logger.propagate = False
    return logger
