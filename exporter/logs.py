"""Structured logging in logfmt or JSON, as the Prometheus exporters log.

Call sites pass fields through ``extra=``; the formatters print them after the message.
Callers never log secrets; third-party libraries (msal logs a token endpoint's answer, which
may echo the request form) go through the same handler at warning level, and every record
is scrubbed of the secrets in use, in every encoding a server may echo them in.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import threading
import urllib.parse

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


THIRD_PARTY = ("msal", "urllib3", "requests")
MIN_SECRET_LENGTH = 6  # shorter "secrets" would mangle every message they happen to occur in

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_URL = re.compile(r"(?i)\b(https?://)([^/\s'\"<>]*@)?([^\s'\"<>?#]*)(\?[^\s'\"<>#]*)?(#[^\s'\"<>]*)?")


def secret_forms(secret: str) -> set[str]:
    """The secret as it may come back: raw, URL-encoded (``%XX``, ``+`` for space, either case), JSON-escaped."""
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1]}
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in forms}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def register_secret(secret: str) -> None:
    """A secret now in use: from here on no log record, message or error carries it."""
    if len(secret) >= MIN_SECRET_LENGTH:
        forms = secret_forms(secret)
        with _secrets_lock:
            _secrets.update(forms)


def scrub(text: str) -> str:
    """Secrets replaced by ``***``; URLs lose user information, query and fragment."""
    with _secrets_lock:
        forms = sorted(_secrets, key=len, reverse=True)
    for form in forms:
        if form in text:
            text = text.replace(form, "***")
    return _URL.sub(lambda m: m.group(1) + m.group(3) + ("?***" if m.group(4) else ""), text)


class ScrubFilter(logging.Filter):
    """Renders each record's message and traceback once, scrubbed, before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
            record.__dict__["err"] = scrub(text)
        for key, value in list(_fields(record).items()):
            if isinstance(value, str):
                record.__dict__[key] = scrub(value)
        return True


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
    handler.addFilter(ScrubFilter())
    logger = logging.getLogger("exporter")
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[level])
    logger.propagate = False
    for name in THIRD_PARTY:  # their records, in our format, scrubbed; never Python's bare stderr fallback
        other = logging.getLogger(name)
        other.handlers[:] = [handler]
        other.setLevel(max(logging.WARNING, LEVELS[level]))
        other.propagate = False
    return logger
