"""run_render: the backend it picks, the encoder fields it records, and the CPU re-run after a GPU failure."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from gpu_worker.contract import RenderRequest
from gpu_worker.encoders.base import Backend
from gpu_worker.encoders.select import GpuUnavailableError, Selection
from gpu_worker.engine.run import run_render
from gpu_worker.fallback import Fallback, FallbackCode
from tests.fake_gpu import L4_REPORT, SESSION_LOST, FailingGpuBackend, without_driver
from tests.media import MadeVideo, decode_indices


def test_cpu_choice_renders_with_libx264_and_no_reason(
    cfr25: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    outcome = run_render(req([("0.5", "1.5")]), cfr25.path, out, choice="cpu")
    assert (outcome.encoder_requested, outcome.encoder_used, outcome.fallback) == (
        "cpu",
        "libx264",
        None,
    )
    assert outcome.result.path == out
    assert outcome.result.frames == 25
    assert decode_indices(out) == cfr25.frames_in(Fraction(1, 2), Fraction(3, 2))


@without_driver
def test_auto_without_a_driver_falls_back_to_the_cpu_and_says_why(
    cfr25: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    outcome = run_render(req([("0", "0.4")]), cfr25.path, tmp_path / "out.mp4", choice="auto")
    assert (outcome.encoder_requested, outcome.encoder_used, outcome.fallback) == (
        "auto",
        "libx264",
        Fallback(FallbackCode.GPU_UNAVAILABLE, "no NVIDIA driver"),
    )
    assert outcome.result.frames == 10


def test_gpu_failing_mid_render_is_rerendered_on_the_cpu_from_the_start(
    cfr25: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    built: list[str] = []

    def build(selection: Selection) -> Backend:
        built.append(selection.encoder_used)
        return FailingGpuBackend() if selection.device == "gpu" else selection.backend()

    out = tmp_path / "out.mp4"
    request = req([("0.2", "1.8")])
    outcome = run_render(request, cfr25.path, out, choice="auto", report=L4_REPORT, build_backend=build)
    assert built == ["h264_nvenc@GPU0", "libx264"]
    assert (outcome.encoder_requested, outcome.encoder_used, outcome.fallback) == (
        "auto",
        "libx264",
        Fallback(FallbackCode.GPU_FAILED, f"GPU failed mid-render ({SESSION_LOST}); re-rendered on CPU"),
    )
    assert outcome.result.encoder_used == "libx264"
    assert decode_indices(out) == cfr25.frames_in(Fraction(1, 5), Fraction(9, 5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@without_driver
def test_strict_gpu_without_a_gpu_raises_and_writes_nothing(
    cfr25: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    with pytest.raises(GpuUnavailableError) as info:
        run_render(req(), cfr25.path, tmp_path / "out.mp4", choice="gpu", strict=True)
    assert str(info.value) == "GPU encoding required but unavailable: no NVIDIA driver"
    assert list(tmp_path.iterdir()) == []


def test_strict_gpu_failing_mid_render_raises_instead_of_falling_back(
    cfr25: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    with pytest.raises(GpuUnavailableError, match=rf"GPU failed mid-render \({SESSION_LOST}\)"):
        run_render(
            req(),
            cfr25.path,
            tmp_path / "out.mp4",
            choice="gpu",
            strict=True,
            report=L4_REPORT,
            build_backend=lambda _: FailingGpuBackend(),
        )
    assert list(tmp_path.iterdir()) == []
