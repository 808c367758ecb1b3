"""Cancellation stops quickly and cleans up; progress is throttled and reaches the total."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_worker.contract import Phase, ProgressReport, RenderRequest
from gpu_worker.encoders.cpu import CpuBackend
from gpu_worker.engine import RenderCancelled, RenderResult, render
from gpu_worker.engine.progress import MIN_INTERVAL_S, ProgressMeter
from tests.media import MadeVideo, make_video
from tests.paced_render import PacedCpuBackend


@pytest.fixture(scope="module")
def long_source(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """Long enough (8 s at 25 fps, high quality) that a render is still running when cancelled."""
    return make_video(tmp_path_factory.mktemp("long") / "long.mp4", seconds=8, gop=50)


@pytest.mark.parametrize("mode", ["single", "clips"])
def test_cancel_stops_within_two_seconds_and_removes_all_output(
    long_source: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path, mode: str
) -> None:
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def on_progress(report: ProgressReport) -> None:
        if report.frames_done >= 10 and not cancel.is_set():
            cancelled_at.append(time.monotonic())
            cancel.set()

    request = req([("0", "4"), ("4", "8")], mode=mode, quality="high")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RenderCancelled):
        render(
            request,
            long_source.path,
            out_dir / "out.bin",
            backend=PacedCpuBackend(),  # a render on an idle machine outran the first progress report
            progress=on_progress,
            cancel=cancel,
        )
    assert time.monotonic() - cancelled_at[0] < 2
    assert list(out_dir.iterdir()) == []


def test_cancel_before_start_renders_nothing(
    cfr25: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RenderCancelled):
        render(req(), cfr25.path, tmp_path / "out.mp4", backend=CpuBackend(), cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_progress_is_throttled_and_ends_at_the_total(
    long_source: MadeVideo, run: Callable[..., RenderResult], req: Callable[..., RenderRequest]
) -> None:
    reports: list[tuple[float, ProgressReport]] = []
    result = run(
        long_source, req(quality="standard"), progress=lambda r: reports.append((time.monotonic(), r))
    )
    assert len(reports) >= 2
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(reports[:-1])]
    assert all(gap >= MIN_INTERVAL_S for gap in gaps)
    done = [r.frames_done for _, r in reports]
    assert done == sorted(done)
    last = reports[-1][1]
    assert (last.phase, last.frames_done, last.frames_total) == (Phase.RENDERING, 200, 200)
    assert result.frames == 200
    assert last.eta_s == 0


def test_progress_meter_calls_back_at_most_four_times_a_second() -> None:
    reports: list[ProgressReport] = []
    meter = ProgressMeter(reports.append, frames_total=10**9)
    started = time.monotonic()
    while time.monotonic() - started < 0.6:
        meter.advance()
    assert 2 <= len(reports) <= 4 * 0.6 + 1
    assert reports[0].frames_done == 1
