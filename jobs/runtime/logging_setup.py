"""Process logging: text or JSON lines, tagged with the run id, with every known secret scrubbed
from every record before it is written."""

from __future__ import annotations

import json
import logging
import sys
import time

_SECRETS: list[str] = []


def register_secret(value: str | None) -> None:
    """Scrub this value from every log line from now on (API keys, S3 keys, HMAC keys)."""
    if value and len(value) >= 4 and value not in _SECRETS:
        _SECRETS.append(value)


def scrub(text: str) -> str:
    for s in _SECRETS:
        text = text.replace(s, "***")
    return text


class _ScrubbingFilter(logging.Filter):
    def __init__(self, run_id: str | None):
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        record.run_id = self.run_id or "-"
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(fmt: str = "text", level: str = "INFO", run_id: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ScrubbingFilter(run_id))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(run_id)s] %(message)s"))
    root = logging.getLogger("qbatch")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
