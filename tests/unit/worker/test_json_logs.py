"""JSON log lines: one object per record, the job's context fields while a job runs (also in the
threads it starts), exceptions kept on the same line."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from gpu_worker.logs import JsonFormatter, RedactTokens, bind_attempt, bind_job
from gpu_worker.settings import WorkerSettings


@pytest.fixture
def json_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the JSON formatter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_a_record_outside_a_job_has_exactly_time_level_logger_and_message() -> None:
    record = logging.LogRecord("a.b", logging.WARNING, __file__, 1, "disk %d%% full", (93,), None)
    record.created = 1764040000.25

    entry = json.loads(JsonFormatter().format(record))

    assert entry == {
        "ts": "2025-11-25T03:06:40.250+00:00",
        "level": "WARNING",
        "logger": "a.b",
        "msg": "disk 93% full",
    }


def test_a_job_s_context_reaches_lines_logged_in_its_render_thread(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger

    async def job() -> None:
        bind_job(export_id="0193-export", worker_id="host:42")
        bind_attempt(2)
        await asyncio.to_thread(logger.info, "frame %d", 7)

    contextvars.copy_context().run(asyncio.run, job())

    (entry,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {k: entry[k] for k in ("msg", "export_id", "worker_id", "attempt")} == {
        "msg": "frame 7",
        "export_id": "0193-export",
        "worker_id": "host:42",
        "attempt": 2,
    }


def test_the_context_of_one_job_stays_out_of_lines_logged_elsewhere() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "idle", None, None)

    def in_job() -> str:
        bind_job(export_id="e", worker_id="w")
        return JsonFormatter().format(record)

    assert "export_id" in json.loads(contextvars.copy_context().run(in_job))
    assert set(json.loads(JsonFormatter().format(record))) == {"ts", "level", "logger", "msg"}


def test_an_exception_is_serialised_into_the_same_line() -> None:
    try:
        raise ValueError("bad segment")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "render failed", None, sys.exc_info())

    text = JsonFormatter().format(record)

    assert "\n" not in text
    entry = json.loads(text)
    assert entry["msg"] == "render failed"
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert entry["exc"].endswith("ValueError: bad segment")


@pytest.mark.parametrize(
    ("raw", "parsed"), [(None, "text"), ("json", "json"), (" JSON ", "json"), ("text", "text")]
)
def test_log_format_comes_from_the_environment(raw: str | None, parsed: str) -> None:
    env = {"SECRET_KEY": "k" * 32} | ({} if raw is None else {"LOG_FORMAT": raw})
    assert WorkerSettings.from_env(env).log_format == parsed


def test_an_unknown_log_format_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of text, json, not 'yaml'"):
        WorkerSettings.from_env({"SECRET_KEY": "k" * 32, "LOG_FORMAT": "yaml"})


def test_an_api_token_in_a_logged_websocket_url_is_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/ws/exports?token=vx_secret123&since=4"),
        None,
    )
    assert RedactTokens().filter(record) is True
    assert (
        record.getMessage() == '127.0.0.1:5000 - "WebSocket /ws/exports?token=[redacted]&since=4" [accepted]'
    )
