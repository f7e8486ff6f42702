"""Secrets never reach a log line or an error message.

Credentials (a STAC API token, header values from the environment, a password inside a URL) are registered
with :func:`add_secret` where they are read. :func:`redact` removes every registered value from a text, and
by rule also what looks like a credential whatever its source: the password of ``scheme://user:password@host``,
the value of an ``Authorization`` header (``Bearer ...``, ``Basic ...``) and of header or query keys that name a
key, token or signature, in the forms a library prints them (``{'Authorization': '...'}``, ``Authorization:
...``, ``?sig=...``). :class:`RedactingFilter` applies it to every log record, tracebacks included; the command
line puts it on its handlers and passes its one error line through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote

MASK = "***"
_SECRETS: set[str] = set()
_LOCK = threading.Lock()
MIN_SECRET_LENGTH = 4  # shorter values would blank out ordinary words

# header and query names whose values are credentials
_SECRET_NAMES = (r"authorization|proxy-authorization|x-api-key|api[-_]?key|apikey|access[-_]?token|token|"
                 r"x-auth-token|auth[-_]?token|secret|password|passwd|sig|signature|x-amz-security-token|"
                 r"x-amz-signature|cookie|set-cookie")
_PATTERNS = (
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@'\"]*):([^@\s/'\"]+)@"), rf"\1:{MASK}@"),
    # 'Authorization': 'Bearer x' and "X-API-Key": "x" (header dictionaries as Python and JSON print them)
    (re.compile(rf"(?i)(['\"](?:{_SECRET_NAMES})['\"]\s*:\s*)(['\"])(?:(?!\2).)*\2"), rf"\1\2{MASK}\2"),
    # Authorization: Bearer x (a header line) and token=x (a query string or a key=value list)
    (re.compile(rf"(?i)\b((?:{_SECRET_NAMES})\s*[:=]\s*)(?!{re.escape(MASK)})(?:(?:bearer|basic|token)\s+)?"
                r"[^\s&,;'\"}]+"), rf"\1{MASK}"),
    # a bare scheme and credential: Bearer x, Basic x (base64 with a digit or a sign: not an ordinary word)
    (re.compile(r"(?i)\b(bearer)\s+(?!\*\*\*)[A-Za-z0-9._~+/=-]{4,}"), rf"\1 {MASK}"),
    (re.compile(r"\b(Basic)\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{6,}={0,2}"), rf"\1 {MASK}"),
)


def add_secret(value: object) -> None:
    """Register a credential so that :func:`redact` removes it wherever it appears (also URL-quoted)."""
    if not isinstance(value, str):
        return
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _LOCK:
        _SECRETS.add(value)
        _SECRETS.add(quote(value, safe=""))
        for line in value.splitlines():  # a value with a line break may be printed one line at a time
            if len(line.strip()) >= MIN_SECRET_LENGTH:
                _SECRETS.add(line.strip())


def forget_secrets() -> None:
    """Drop every registered value (tests)."""
    with _LOCK:
        _SECRETS.clear()


def redact(text: object) -> str:
    """``text`` with every registered secret and everything that looks like a credential replaced by ``***``."""
    text = str(text)
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)  # a secret that contains another goes first
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Redacts a record's message, arguments and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: keep what can be shown
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> RedactingFilter:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (default: the root logger); returns it."""
    found = RedactingFilter()
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(found)
    return found
