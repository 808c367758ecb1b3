"""Log output for every `vexport` process: plain text for a terminal, or one JSON object per line.

JSON lines are what a farm's log shipper (Loki, Elasticsearch, CloudWatch) indexes without a
parser: `ts`, `level`, `logger`, `msg`, and the job's `export_id`, `worker_id` and `attempt`
while a render runs, so one export's lines can be followed across workers and retries. Those three
come from context variables: SAQ's `before_process` binds the export and the worker in the task
that runs the job (its threads inherit them through `asyncio.to_thread`), and the export task adds
the attempt once its claim knows it. An exception is serialised into `exc` as its formatted
traceback, so a multi-line trace stays one line of output.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

export_id_var: ContextVar[str | None] = ContextVar("export_id", default=None)
worker_id_var: ContextVar[str | None] = ContextVar("worker_id", default=None)
attempt_var: ContextVar[int | None] = ContextVar("attempt", default=None)


def parse_log_format(value: str) -> LogFormat:
    """LOG_FORMAT / --log-format: `text` for a terminal, `json` (one object per line) for a farm."""
    for known in LOG_FORMATS:
        if value.strip().lower() == known:
            return known
    raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}")


def bind_job(*, export_id: str | None, worker_id: str) -> None:
    """Tag the current task's log lines (and those of tasks and threads it starts) with the job."""
    export_id_var.set(export_id)
    worker_id_var.set(worker_id)
    attempt_var.set(None)


def bind_attempt(attempt: int) -> None:
    attempt_var.set(attempt)


async def bind_job_context(ctx: dict[str, Any]) -> None:
    """SAQ `before_process`: it runs in the task that then starts the job, which inherits these."""
    job = ctx["job"]
    bind_job(export_id=(job.kwargs or {}).get("export_id"), worker_id=ctx["worker"].id)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the job's context fields appear only while they are set."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, var in (
            ("export_id", export_id_var),
            ("worker_id", worker_id_var),
            ("attempt", attempt_var),
        ):
            value = var.get()
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Blank API tokens in URLs: uvicorn logs a websocket handshake with its query string, and
    `/ws/exports?token=vx_…` would otherwise put a working credential into the farm's logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_IN_QUERY.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


QUIET_LIBRARIES = ("saq", "alembic")
"""Libraries whose INFO lines are for their own developers, not an operator: SAQ logs three lines
per job, cron jobs included (five a minute on an idle server; the export task logs its own claim and
outcome), and Alembic seven plugin lines before every migration. Their warnings still show; DEBUG
shows everything."""


def _not_saq_stop_notice(record: logging.LogRecord) -> bool:
    """SAQ's stop warns that "some tasks did not finish within the shutdown grace period" whenever
    its grace period is 0, which gpu_worker.drain chooses on purpose (its upkeep loops sleep for a
    minute): on every clean stop, not only when a job was cut short (which the export task logs)."""
    return not str(record.msg).startswith("Some tasks did not finish within the shutdown grace period")


def configure_logging(log_format: LogFormat, *, debug: bool = False) -> None:
    """Send every logger's records to stderr in `log_format`, replacing handlers set up earlier."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler], force=True)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("saq").addFilter(_not_saq_stop_notice)
