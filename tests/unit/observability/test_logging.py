from __future__ import annotations

import datetime as dt
import io
import json
import logging

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
