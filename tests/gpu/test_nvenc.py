"""NVDEC/NVENC on a real NVIDIA GPU; skipped where the probe finds no working NVDEC.

On H100/H200 (no NVENC) this checks decoding and that `auto` falls back to the CPU with the
probe's reason; on GPUs with NVENC it also renders through NVENC and decodes the output with PyAV.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from gpu_worker.contract import RenderRequest, Resolution, Segment
from gpu_worker.encoders.nvenc import NvdecDecoder
from gpu_worker.encoders.probe import CodecSupport, GpuReport, probe_gpus
from gpu_worker.encoders.select import select_backend
from gpu_worker.engine import render
from gpu_worker.fallback import Fallback, FallbackCode
from tests.media import MadeVideo, decode_indices, make_video

pytestmark = pytest.mark.gpu
F = Fraction
ABSENT = "NVENC not present on this GPU (e.g. H100)"


@pytest.fixture(scope="module")
def report() -> GpuReport:
    report = probe_gpus(refresh=True)
    if not any(gpu.nvdec.get("h264", CodecSupport(False)).works for gpu in report.gpus):
        pytest.skip(f"no working NVDEC here: {report.reason or report.to_json().decode()}")
    return report


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """2 s of 25 fps H.264 with B-frames, 1280x720, one keyframe a second, AAC audio."""
    return make_video(tmp_path_factory.mktemp("gpu") / "clip.mp4", seconds=2, fps=25, width=1280, height=720)


def test_nvdec_decodes_every_frame_with_its_time(report: GpuReport, clip: MadeVideo) -> None:
    with av.open(str(clip.path)) as container:
        decoder = NvdecDecoder(container, container.streams.video[0], report.gpus[0].index)
        times = [frame.time for frame in decoder.frames(F(0), None)]
        assert times == list(clip.frame_times)
        segment = [frame.time for frame in decoder.frames(F("0.5"), F("1.3"))]
    assert segment == [clip.frame_times[i] for i in clip.frames_in(F("0.5"), F("1.3"))]


def test_without_nvenc_auto_falls_back_to_the_cpu_with_the_probe_reason(report: GpuReport) -> None:
    if report.nvenc_gpus("h264"):
        pytest.skip("this GPU has NVENC")
    assert {gpu.nvenc["h264"].reason for gpu in report.gpus} == {ABSENT}
    selection = select_backend("auto", "h264", report)
    assert (selection.device, selection.encoder_used) == ("cpu", "libx264")
    assert selection.fallback == Fallback(FallbackCode.GPU_UNAVAILABLE, ABSENT)


@pytest.mark.parametrize(
    ("codec", "resolution"),
    [
        ("h264", Resolution.SOURCE),
        ("h264", Resolution.P360),
        ("hevc", Resolution.P360),
        ("av1", Resolution.SOURCE),
    ],
)
def test_nvenc_render_decodes_back_to_the_segment_frames(
    report: GpuReport, clip: MadeVideo, tmp_path: Path, codec: str, resolution: Resolution
) -> None:
    if not report.nvenc_gpus(codec):
        pytest.skip(f"no NVENC for {codec}: {report.nvenc_reason(codec)}")
    selection = select_backend("gpu", codec, report, strict=True)
    backend = selection.backend()
    request = RenderRequest(segments=[Segment(F("0.4"), F("1.6"))], codec=codec, resolution=resolution)
    out = tmp_path / f"out-{codec}.mp4"
    result = render(request, clip.path, out, backend=backend)
    assert result.encoder_used == f"{codec}_nvenc@GPU{selection.gpu_index}"
    assert decode_indices(out) == clip.frames_in(F("0.4"), F("1.6"))
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.codec_context.codec.canonical_name == codec
        expected = (1280, 720) if resolution is Resolution.SOURCE else (640, 360)
        assert (video.codec_context.width, video.codec_context.height) == expected
    assert backend.scale_path in ("none", "torch", "cupy", "host")
