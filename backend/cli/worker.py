"""`vexport worker`: one render worker process (SAQ), drained by SIGTERM or remotely."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from backend.cli.runtime import LOG_FORMAT_OPTION, check_data_dir, event_loop, services, setup_logging
from backend.lib.settings import Settings


@click.command()
@click.option("--concurrency", type=int, default=None, help="Jobs at once (default WORKER_CONCURRENCY or 1).")
@click.option(
    "--encoder",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default=None,
    help="auto: a GPU worker (GPU queue, each job's choice) when NVENC works here, else a CPU worker; "
    "cpu: never touch a GPU (CPU queue); gpu: refuse to start without NVENC "
    "(default VEXPORT_ENCODER or auto).",
)
@click.option(
    "--gpu",
    "gpu_index",
    type=int,
    default=None,
    help="Render on this CUDA device only (default VEXPORT_GPU).",
)
@click.option(
    "--queue",
    "queue_name",
    default=None,
    help="Queue to take jobs from (default: GPU_QUEUE_NAME for a GPU worker, CPU_QUEUE_NAME otherwise).",
)
@click.option(
    "--nvenc-sessions",
    type=click.IntRange(min=1),
    default=None,
    help="GPU renders at once; more jobs wait for a session (default NVENC_SESSIONS or 2).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus /metrics and /health on this port (default METRICS_PORT; unset: none).",
)
@LOG_FORMAT_OPTION
def worker(
    concurrency: int | None,
    encoder: str | None,
    gpu_index: int | None,
    queue_name: str | None,
    nvenc_sessions: int | None,
    metrics_port: int | None,
    log_format: str | None,
) -> None:
    """Run a render worker against REDIS_URL/DATABASE_URL (embedded ones when unset).

    SIGTERM or Ctrl-C drains it, as `vexport workers drain ID` does from anywhere: no new jobs, the
    running ones get DRAIN_GRACE_S to finish (the rest go back to the queue), then it exits 0."""
    from dataclasses import replace

    from gpu_worker.drain import drain
    from gpu_worker.worker import build_worker

    check_data_dir(may_create=False)
    settings = Settings.from_env()
    setup_logging(settings, log_format)
    overrides = {
        "encoder": encoder,
        "gpu_index": gpu_index,
        "worker_queue": queue_name,
        "nvenc_sessions": nvenc_sessions,
        "metrics_port": metrics_port,
    }
    with services(settings) as runtime:
        core = replace(runtime.settings.core, **{k: v for k, v in overrides.items() if v is not None})
        w = build_worker(core, concurrency=concurrency)
        # The handlers below own SIGINT/SIGTERM. SAQ's own (Worker.SIGNALS) would replace them, stop
        # the worker, then remove themselves, leaving `stop` unset and the process running forever.
        w.SIGNALS = []

        async def run() -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            task = asyncio.create_task(w.start())
            stopping = asyncio.create_task(stop.wait())
            # A signal, or the worker stopped by itself (a remote drain, a failed start-up).
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            await drain(w, core.drain_grace_s)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        with event_loop() as runner:
            runner.run(run())
