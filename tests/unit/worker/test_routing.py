"""Routing's decision table (`choose_queue`), the worker's kind and queue, and the queue settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gpu_worker.encoders.probe import GpuReport
from gpu_worker.fallback import Fallback, FallbackCode, WaitingCode
from gpu_worker.registry import WorkerInfo
from gpu_worker.routing import Route, choose_queue, worker_gpu, worker_queue
from gpu_worker.settings import WorkerSettings
from gpu_worker.store import StoreSettings
from tests.fake_gpu import L4_REPORT, l4_worker

ROOT = Path("/nonexistent/f2-routing")
SETTINGS = WorkerSettings(
    data_dir=ROOT,
    secret_key="s" * 32,
    database_url=None,
    redis_url=None,
    storage=StoreSettings(backend="local", local_root=ROOT / "storage", signing_secret="s" * 32),
    scratch_dir=ROOT / "scratch",
    queue_name="farm",
)
GPU_QUEUE, CPU_QUEUE = "farm-gpu", "farm"


def heartbeat(
    kind: str = "gpu",
    *,
    healthy: bool = True,
    draining: bool = False,
    codecs: tuple[str, ...] = ("h264", "hevc"),
    queues: tuple[str, ...] = (GPU_QUEUE,),
) -> WorkerInfo:
    """A GPU worker on an L4 whose NVENC encodes `codecs`, or a CPU worker."""
    gpu = l4_worker(f"box:{kind}", queues[0], healthy=healthy, draining=draining)
    gpus = [msgspec.structs.replace(g, nvenc_codecs=list(codecs)) for g in gpu.gpus]
    if kind == "cpu":
        return msgspec.structs.replace(gpu, kind="cpu", gpu_index=None, gpus=[], queues=list(queues))
    return msgspec.structs.replace(gpu, gpus=gpus, queues=list(queues))


def route(workers: list[WorkerInfo], codec: str = "h264", encoder: str = "auto") -> Route:
    return choose_queue(workers, codec=codec, encoder=encoder, settings=SETTINGS)


def test_auto_with_no_worker_alive_goes_to_the_cpu_queue_with_the_reason() -> None:
    assert route([]) == Route(
        CPU_QUEUE,
        gpu=False,
        fallback=Fallback(FallbackCode.NO_GPU_WORKER, "no healthy GPU worker with NVENC H.264 is online"),
    )


def test_auto_with_only_a_cpu_worker_goes_to_the_cpu_queue() -> None:
    assert route([heartbeat("cpu", queues=(CPU_QUEUE,))]) == Route(
        CPU_QUEUE,
        gpu=False,
        fallback=Fallback(FallbackCode.NO_GPU_WORKER, "no healthy GPU worker with NVENC H.264 is online"),
    )


def test_auto_goes_to_the_gpu_queue_when_a_healthy_gpu_worker_encodes_the_codec() -> None:
    assert route([heartbeat("cpu", queues=(CPU_QUEUE,)), heartbeat()], codec="hevc") == Route(
        GPU_QUEUE, gpu=True
    )


def test_auto_goes_to_the_cpu_queue_when_the_healthy_gpu_lacks_the_codec() -> None:
    assert route([heartbeat(codecs=("h264", "hevc"))], codec="av1") == Route(
        CPU_QUEUE,
        gpu=False,
        fallback=Fallback(FallbackCode.NO_GPU_WORKER, "no healthy GPU worker with NVENC AV1 is online"),
    )


def test_auto_skips_a_gpu_worker_whose_circuit_is_open() -> None:
    assert route([heartbeat(healthy=False)]).queue == CPU_QUEUE


def test_auto_skips_a_draining_gpu_worker() -> None:
    assert route([heartbeat(draining=True)]).queue == CPU_QUEUE


def test_auto_skips_a_gpu_worker_taking_another_queue() -> None:
    assert route([heartbeat(queues=("special",))]).queue == CPU_QUEUE


def test_auto_for_a_codec_nvenc_never_encodes_says_so() -> None:
    assert route([heartbeat()], codec="vp9") == Route(
        CPU_QUEUE, gpu=False, fallback=Fallback(FallbackCode.CODEC_UNSUPPORTED, "NVENC has no VP9 encoder")
    )


def test_gpu_goes_to_the_gpu_queue_even_with_no_gpu_worker_alive_saying_it_waits_for_one() -> None:
    assert route([], encoder="gpu") == Route(GPU_QUEUE, gpu=True, waiting=WaitingCode.NO_GPU_WORKER)


def test_gpu_with_a_healthy_gpu_worker_alive_does_not_wait_for_one() -> None:
    assert route([heartbeat()], encoder="gpu") == Route(GPU_QUEUE, gpu=True)


def test_cpu_goes_to_the_cpu_queue_even_with_a_healthy_gpu_worker() -> None:
    assert route([heartbeat()], encoder="cpu") == Route(CPU_QUEUE, gpu=False)


@pytest.mark.parametrize(
    ("report", "gpu_index", "expected"),
    [
        (L4_REPORT, None, 0),
        (L4_REPORT, 0, 0),
        (L4_REPORT, 1, None),
        (GpuReport(driver_present=False, reason="no NVIDIA driver"), None, None),
    ],
)
def test_a_worker_renders_on_the_first_gpu_whose_nvenc_worked(
    report: GpuReport, gpu_index: int | None, expected: int | None
) -> None:
    assert worker_gpu(report, gpu_index) == expected


@pytest.mark.parametrize(
    ("core", "gpu", "expected"),
    [({}, 0, GPU_QUEUE), ({}, None, CPU_QUEUE), ({"worker_queue": "special"}, 0, "special")],
)
def test_a_worker_takes_the_queue_of_its_kind_unless_told_otherwise(
    core: dict[str, Any], gpu: int | None, expected: str
) -> None:
    assert worker_queue(replace(SETTINGS, **core), gpu) == expected


def test_queue_names_default_from_queue_name_and_can_be_set_each() -> None:
    env = {"VEXPORT_DATA_DIR": str(ROOT), "SECRET_KEY": "s" * 32, "QUEUE_NAME": "farm"}
    default = WorkerSettings.from_env(env)
    named = WorkerSettings.from_env({**env, "GPU_QUEUE_NAME": "nvenc", "CPU_QUEUE_NAME": "x264"})

    assert (default.gpu_queue_name, default.cpu_queue_name) == ("farm-gpu", "farm")
    assert (named.gpu_queue_name, named.cpu_queue_name) == ("nvenc", "x264")


def test_one_name_for_both_queues_is_refused() -> None:
    env = {"VEXPORT_DATA_DIR": str(ROOT), "SECRET_KEY": "s" * 32, "GPU_QUEUE_NAME": "exports"}

    with pytest.raises(ValueError, match="the GPU and CPU queues must differ"):
        WorkerSettings.from_env(env)
