"""Structured logging: JSON lines (or console lines), ids from contextvars, secrets redacted.

`configure(level, format, secrets)` installs one handler on the root logger; every module
logs through `get_logger(__name__)` as `log.info("event.name", key=value, ...)`. Each line
carries `ts`, `level`, `logger`, `event` and the `request_id`/`job_id`/`user_id` of the
current task (trio copies contextvars into each task). Redaction happens twice: by KEY while
building the record (values under keys such as `password` or `authorization`, at any depth)
and by VALUE on the final text (the configured secrets themselves, even inside tracebacks).

Under journald (systemd's `JOURNAL_STREAM` names the very stream we write to), every line
starts with its syslog priority as sd-daemon(3) defines it — `<3>` error, `<4>` warning,
`<6>` info, `<7>` debug — which journald strips and files the line under (units keep the
default `SyslogLevelPrefix=yes`), so `journalctl -p err` finds the errors. Anywhere else the
lines are unchanged.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import io
import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, Final, TextIO

REDACTED: Final = "[REDACTED]"
SECRET_KEY_PARTS: Final = (
    "password",
    "token",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "signature",
)

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
user_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)

_CONTEXT_VARS: Final = (
    ("request_id", request_id_var),
    ("job_id", job_id_var),
    ("user_id", user_id_var),
)


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


_SCALARS: Final = (str, int, float, bool, type(None))


def redact_fields(value: Any) -> Any:
    """A copy of `value` with every entry under a secret-looking key replaced."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict | Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_secret_key(k)
                else (v if type(v) in _SCALARS else redact_fields(v))
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_fields(v) for v in value]
    return value


class ValueRedactor:
    """Replaces each configured secret value (and its JSON-escaped form) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= 4:
                forms.add(secret)
                forms.add(json.dumps(secret)[1:-1])
        # Longest first, so a secret containing another is replaced whole.
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


class StructuredLogger:
    """A thin front for `logging.Logger`: `log.info("event", key=value)`."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        logger = self._logger
        if logger.isEnabledFor(level):
            # makeRecord + handle, not Logger._log: the line never shows the caller's file
            # and line, so the frame walk of findCaller would be pure cost on the hot path.
            record = logger.makeRecord(
                logger.name, level, "", 0, event, (), sys.exc_info() if exc_info else None
            )
            record.fields = fields
            logger.handle(record)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log at ERROR with the current exception's traceback."""
        self._log(logging.ERROR, event, True, fields)


def get_logger(name: str) -> StructuredLogger:
    return StructuredLogger(logging.getLogger(name))


@functools.lru_cache(maxsize=4)
def _second_prefix(second: int) -> str:
    return dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds; the part up to the second is formatted once a second."""
    # Round to the microsecond first, exactly as datetime.fromtimestamp does.
    fraction, whole = math.modf(created)
    micros = round(fraction * 1_000_000)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_second_prefix(int(whole))}.{micros // 1000:03d}+00:00"


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    for name, var in _CONTEXT_VARS:
        value = var.get()
        if value is not None:
            out[name] = value
    fields = getattr(record, "fields", None)
    if fields:
        out.update(redact_fields(fields))
    if record.exc_info and record.exc_info[0] is not None:
        out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return out


# sd-daemon(3) / syslog(3) priorities by logging level: <3> err, <4> warning, <6> info,
# <7> debug (critical is filed as an error too).
_PRIORITIES: Final = ((logging.ERROR, "<3>"), (logging.WARNING, "<4>"), (logging.INFO, "<6>"))


def priority_prefix(levelno: int) -> str:
    """The syslog priority prefix journald reads at the start of a line."""
    for level, prefix in _PRIORITIES:
        if levelno >= level:
            return prefix
    return "<7>"


def is_journal(stream: TextIO, journal_stream: str) -> bool:
    """Whether `stream` is the journal's: `journal_stream` ($JOURNAL_STREAM, "<dev>:<inode>")
    names its file. systemd.exec(5) asks for this comparison, not for the variable alone: a
    child of a service that redirects its output inherits the variable but not the journal."""
    if not journal_stream:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return journal_stream == f"{st.st_dev}:{st.st_ino}"


class JournalFormatter(logging.Formatter):
    """Another formatter's lines, each (tracebacks of console lines included) prefixed with
    the record's syslog priority."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = priority_prefix(record.levelno)
        return prefix + self._inner.format(record).replace("\n", "\n" + prefix)


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: ValueRedactor) -> None:
        super().__init__()
        self._redact = redactor
        # One encoder for every line: json.dumps with options builds a new one per call.
        self._encode = json.JSONEncoder(default=str, ensure_ascii=False).encode

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._encode(_record_fields(record)))


class ConsoleFormatter(logging.Formatter):
    def __init__(self, redactor: ValueRedactor) -> None:
        super().__init__()
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        fields = _record_fields(record)
        head = f"{fields.pop('ts')} {fields.pop('level'):<7} {fields.pop('event')}"
        fields.pop("logger")
        exception = fields.pop("exception", None)
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{head} {tail}".rstrip()
        if exception:
            text += "\n" + exception
        return self._redact(text)


def configure(
    level: str = "info",
    format: str = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    journal_stream: str = "",
) -> None:
    """Send every log record to `stream` (stdout) as JSON or console lines; idempotent.

    `journal_stream` is systemd's $JOURNAL_STREAM (`Settings.systemd.journal_stream`): when
    it names `stream`, each line gets its syslog priority prefix (module docstring).
    """
    stream = stream or sys.stdout
    if format == "auto":
        format = "console" if stream.isatty() else "json"
    redactor = ValueRedactor(secrets)
    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter = (
        ConsoleFormatter(redactor) if format == "console" else JsonFormatter(redactor)
    )
    if is_journal(stream, journal_stream):
        formatter = JournalFormatter(formatter)
    handler.setFormatter(formatter)
    # Lines carry none of these, so LogRecord need not look them up on every call.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that are chatty at INFO stay at WARNING unless we debug.
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in (
        "hypercorn.error",
        "hypercorn.access",
        "asyncio",
        "trio-websocket",
        "quart.app",
        "httpx",
        "httpcore",
    ):
        logging.getLogger(name).setLevel(quiet)
    logging.captureWarnings(True)
