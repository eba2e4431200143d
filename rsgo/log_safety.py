"""What must never reach a log line as it came: control characters from outside (a stack label with a
newline would forge a line of its own) and the parameters of SQL statements (password hashes, token
hashes, session keys, webhook secrets). README "Users, tokens and security".
"""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def escape_controls(text: str) -> str:
    """Every character Python does not call printable (control and format characters, line and
    paragraph separators, and other separators but the space) as its escape: "\\n", "\\x1b", "\\u2028"."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class EscapingFormatter(logging.Formatter):
    """One log record, one line: the message is escaped; a traceback after it keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class _WithoutSqlParameters(logging.Filter):
    """peewee logs each statement with its parameters at DEBUG: keep the statement, drop the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            record.msg, record.args = "%s -- parameters not logged", (record.msg[0],)
        return True


def hide_sql_parameters() -> None:
    """Idempotent: on the ``peewee`` logger itself, so it holds at every level and for every handler."""
    peewee_log = logging.getLogger("peewee")
    if not any(isinstance(f, _WithoutSqlParameters) for f in peewee_log.filters):
        peewee_log.addFilter(_WithoutSqlParameters())


def escaping_handler(stream) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    return handler
