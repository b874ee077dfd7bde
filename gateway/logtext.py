"""Client input made safe for a log line: one line, no control characters, bounded length.

A path like `/x%0a203.0.113.9 "GET /admin" 200` decodes to a newline and would forge a
second log line; every field a client (or a vendor, or the store) controls goes through
`log_text` before it reaches a log call.
"""
from __future__ import annotations

import logging
import re

# C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators some log viewers
# break lines on; the backslash too, so an escaped byte cannot be faked by sending "\x0a" literally.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\\"]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def log_text(value: object, limit: int = 200) -> str:
    """`value` as text fit for one log line: control characters escaped (\\x0a), cut to `limit` characters."""
    text = str(value)[:limit]
    return _UNSAFE.sub(_escape, text)


# Path segments that are secrets or visitor ids: a shared link's secret (it opens the dashboard) and the
# consent id in an operator's privacy request (the log would keep an erased visitor's id).
_SECRET_IN_PATH = re.compile(r"^(/share/|/api/admin/[^/]+/visitors/)[^/]+")


def log_path(path: str) -> str:
    """A request path for a log line: `log_text`, with a shared link's secret and a visitor's id left out."""
    return log_text(_SECRET_IN_PATH.sub(r"\1<redacted>", path))


_LINE_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class OneLineFormatter(logging.Formatter):
    """The last guard: whatever a log call was given (a vendor's error text, an exception message), its
    message stays on one line. Fields that come from clients are escaped earlier, with `log_text`;
    tracebacks (our own code's) keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _LINE_BREAKERS.sub(_escape, record.message)
        return super().formatMessage(record)
