from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumiku.observability import logging as logs

SECRET = "s3cr3t-value-123"
QUOTED_SECRET = 'quote"d-secret'


@pytest.fixture
def output() -> io.StringIO:
    stream = io.StringIO()
    logs.configure("debug", "json", [SECRET, QUOTED_SECRET], stream=stream)
    yield stream
    logs.configure("warning", "json", stream=io.StringIO())


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_the_standard_fields_and_context_ids(output: io.StringIO) -> None:
    token = logs.request_id_var.set("req-1")
    try:
        logs.get_logger("lumiku.x").info("thing.happened", count=3)
    finally:
        logs.request_id_var.reset(token)
    (line,) = lines(output)
    assert line["event"] == "thing.happened"
    assert line["level"] == "info"
    assert line["logger"] == "lumiku.x"
    assert line["request_id"] == "req-1"
    assert line["count"] == 3
    assert str(line["ts"]).endswith("+00:00")


@pytest.mark.parametrize(
    "key", ["password", "new_password", "Authorization", "api_key", "token", "cookie", "signature"]
)
def test_values_under_secret_keys_are_redacted_at_any_depth(output: io.StringIO, key: str) -> None:
    logs.get_logger("t").info(
        "e", body={"outer": [{key: "hunter2-visible"}]}, **{key: "top-level-x"}
    )
    text = output.getvalue()
    assert "hunter2-visible" not in text
    assert "top-level-x" not in text
    assert logs.REDACTED in text


def test_configured_secret_values_are_redacted_even_inside_exceptions(output: io.StringIO) -> None:
    log = logs.get_logger("t")
    try:
        raise RuntimeError(f"failed with {SECRET} and {QUOTED_SECRET}")
    except RuntimeError:
        log.exception("boom", note=f"the secret {SECRET} again")
    text = output.getvalue()
    assert "s3cr3t-value-123" not in text
    assert "quote" not in text  # the JSON-escaped form of the secret is caught too
    assert "failed with [REDACTED] and [REDACTED]" in text
    assert "RuntimeError" in text  # the traceback itself is kept


def test_console_format_is_one_readable_line(output: io.StringIO) -> None:
    stream = io.StringIO()
    logs.configure("info", "console", ["s3cr3t-value-123"], stream=stream)
    logs.get_logger("t").info("user.login", user="ana", password="pw-x", note="s3cr3t-value-123")
    text = stream.getvalue()
    assert "user.login" in text
    assert "user=ana" in text
    assert "pw-x" not in text
    assert "s3cr3t-value-123" not in text
    assert len(text.splitlines()) == 1


def test_level_filters_records(output: io.StringIO) -> None:
    logs.configure("warning", "json", stream=output)
    log = logs.get_logger("t")
    log.info("dropped")
    log.warning("kept")
    assert [line["event"] for line in lines(output)] == ["kept"]


def test_configure_replaces_the_previous_handler(output: io.StringIO) -> None:
    logs.configure("info", "json", stream=output)
    assert len(logging.getLogger().handlers) == 1


@given(
    st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False)
    | st.integers(0, 4_102_444_800).map(lambda s: s + 0.9999996)  # rounds up to the next second
)
def test_cached_timestamp_equals_isoformat(created: float) -> None:
    expected = dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")
    assert logs._timestamp(created) == expected


# --- journald ---------------------------------------------------------------------------


def journal_id(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def log_every_level(log_format: str, journal_stream: str, path: Path) -> list[str]:
    with path.open("w", encoding="utf-8") as stream:
        logs.configure("debug", log_format, stream=stream, journal_stream=journal_stream)
        log = logs.get_logger("test.journal")
        log.debug("level.debug")
        log.info("level.info")
        log.warning("level.warning")
        log.error("level.error")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("level.exception")
        logging.getLogger("test.journal").critical("level.critical")
        logs.configure("warning", "json", stream=io.StringIO())
    return path.read_text(encoding="utf-8").splitlines()


def test_lines_to_the_journal_start_with_their_syslog_priority(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    path.touch()
    found = log_every_level("json", journal_id(path), path)
    assert [line[:3] for line in found] == ["<7>", "<6>", "<4>", "<3>", "<3>", "<3>"]
    events = [json.loads(line[3:])["event"] for line in found]
    assert events == [
        "level.debug",
        "level.info",
        "level.warning",
        "level.error",
        "level.exception",
        "level.critical",
    ]


def test_console_lines_to_the_journal_prefix_every_traceback_line(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    path.touch()
    found = log_every_level("console", journal_id(path), path)
    assert len(found) > 6  # the traceback spans lines, each filed at the error's priority
    assert all(line.startswith(("<7>", "<6>", "<4>", "<3>")) for line in found)
    assert next(line for line in found if "Traceback" in line).startswith("<3>")


@pytest.mark.parametrize("journal_stream", ["", "1:2", "not-a-stream"])
def test_lines_are_unchanged_unless_the_journal_is_our_stream(
    tmp_path: Path, journal_stream: str
) -> None:
    # A JOURNAL_STREAM that names another file (the variable is inherited by children whose
    # output goes elsewhere) changes nothing.
    found = log_every_level("json", journal_stream, tmp_path / "out")
    assert [json.loads(line)["level"] for line in found] == [
        "debug",
        "info",
        "warning",
        "error",
        "error",
        "critical",
    ]


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
        (logging.CRITICAL, "<3>"),
    ],
)
def test_priority_prefix(level: int, prefix: str) -> None:
    assert logs.priority_prefix(level) == prefix
