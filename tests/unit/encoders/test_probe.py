"""The capability probe on a machine without the NVIDIA driver, its reasons, and its NVDEC feed."""

from __future__ import annotations

import ctypes
import io
import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import msgspec
import pytest

from gpu_worker.encoders import probe as probe_module
from gpu_worker.encoders.nvenc import (
    import_failure_reason,
    iter_decoder_packets,
    nvdec_failure_reason,
    nvenc_failure_reason,
    nvenc_runtime_reason,
)
from gpu_worker.encoders.probe import CodecSupport, GpuInfo, GpuReport, probe_gpus, sample_clip
from gpu_worker.gpu_info import gpu_info_json
from tests.media import make_video


def _has_driver() -> bool:
    if shutil.which("nvidia-smi"):
        return True
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


no_driver = pytest.mark.skipif(_has_driver(), reason="this machine has an NVIDIA driver")


@no_driver
def test_probe_without_a_driver_reports_why_and_does_not_raise() -> None:
    report = probe_gpus(refresh=True)
    assert report == GpuReport(driver_present=False, reason="no NVIDIA driver")
    assert report.nvenc_gpus("h264") == []
    assert report.nvenc_reason("hevc") == "no NVIDIA driver"


def test_probe_is_cached_per_process_until_refreshed() -> None:
    first = probe_gpus()
    assert probe_gpus() is first
    again = probe_gpus(refresh=True)
    assert again is not first
    assert again == first


@no_driver
def test_gpu_info_json_is_the_report() -> None:
    data = json.loads(gpu_info_json())
    assert data == {
        "driver_present": False,
        "driver_version": None,
        "library_version": None,
        "listed_by": None,
        "reason": "no NVIDIA driver",
        "gpus": [],
    }


def test_report_round_trips_through_json() -> None:
    report = GpuReport(
        driver_present=True,
        driver_version="570.86.15",
        library_version="2.2.4",
        listed_by="nvml",
        gpus=(
            GpuInfo(
                index=0,
                name="NVIDIA H100 80GB HBM3",
                uuid="GPU-1234",
                memory_mib=81559,
                nvenc={"h264": CodecSupport(False, "NVENC not present on this GPU (e.g. H100)")},
                nvdec={"h264": CodecSupport(True)},
            ),
        ),
    )
    assert msgspec.json.decode(report.to_json(), type=GpuReport) == report
    assert report.nvdec_support(0) == {"h264": (True, None)}
    assert report.nvdec_support(1) == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "Driver version is too old",
            "driver too old: PyNvVideoCodec 2.2 needs NVENC API 12.1 or newer (driver 530+)",
        ),
        (
            "libnvidia-encode.so.1: cannot open shared object file\n\n=== TROUBLESHOOTING STEPS ===",
            "no NVIDIA driver (libnvidia-encode.so.1 not loadable)",
        ),
        ("Something else\nmore", "PyNvVideoCodec failed to load: Something else"),
    ],
)
def test_import_failures_get_short_reasons(text: str, reason: str) -> None:
    assert import_failure_reason(text) == reason


ABSENT = "NVENC not present on this GPU (e.g. H100)"
LIMIT = "NVENC session limit reached"
OPEN = "m_nvenc.nvEncOpenEncodeSessionEx(&encodeSessionExParams, &hEncoder)"
CAPS = "m_nvenc.nvEncGetEncodeCaps(hEncoder, encodeGUID, &capsParam, &v)"
OLD = "Current Driver Version does not support this NvEncodeAPI version, please upgrade driver"


@pytest.mark.parametrize(
    ("codec", "text", "reason"),
    [
        ("h264", f"{OPEN} returned error 10", LIMIT),
        ("hevc", "OpenEncodeSessionEx failed: out of memory (10)", LIMIT),
        ("h264", "OpenEncodeSessionEx failed: unsupported device (2)", ABSENT),
        ("h264", "No capable devices found", ABSENT),
        ("av1", f"{CAPS} returned error 8", "NVENC does not support AV1 on this GPU"),
        ("hevc", OLD, "driver too old for PyNvVideoCodec's NVENC API"),
        ("h264", "weird failure\ndetails", "NVENC failed: weird failure"),
    ],
)
def test_nvenc_errors_map_to_short_reasons(codec: str, text: str, reason: str) -> None:
    assert nvenc_failure_reason(codec, text) == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nvEncEncodePicture returned error 10", "GPU out of memory"),
        ("nvEncEncodePicture returned error 4", "NVENC session lost"),
        ("nvEncLockBitstream returned error 20", "NVENC failed: nvEncLockBitstream returned error 20"),
    ],
)
def test_mid_render_nvenc_errors_map_to_short_reasons(text: str, reason: str) -> None:
    assert nvenc_runtime_reason(text) == reason


def test_nvdec_errors_map_to_short_reasons() -> None:
    assert (
        nvdec_failure_reason("av1", "Codec not supported on this GPU")
        == "NVDEC does not support AV1 on this GPU"
    )
    assert nvdec_failure_reason("h264", "Could not dynamically load libnvcuvid.so.1").startswith(
        "NVDEC library missing"
    )


def test_reason_lookup_names_missing_gpus_and_unprobed_codecs() -> None:
    report = GpuReport(driver_present=True, gpus=(GpuInfo(index=0, name="GPU"),))
    assert report.nvenc_reason("h264") == "H.264 not probed"
    assert report.nvenc_reason("h264", gpu_index=2) == "GPU 2 not found (GPUs: 0)"
    assert GpuReport(driver_present=True).nvenc_reason("av1") == "no NVIDIA GPU found"


def test_cuda_visible_devices_picks_and_renumbers_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [probe_module._Listed(f"GPU{i}", f"GPU-{i}aaaa", 1024) for i in range(3)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-0a")
    assert [g.name for g in probe_module._visible(listed)] == ["GPU2", "GPU0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")  # CUDA stops at the first bad entry
    assert [g.name for g in probe_module._visible(listed)] == ["GPU1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert probe_module._visible(listed) == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert probe_module._visible(listed) == listed


@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_probe_clips_feed_nvdec_complete_annexb_packets(codec: str) -> None:
    """The probe's clip through the renderer's NVDEC packet feed decodes to all 8 frames (here on
    PyAV's software decoder, from the raw packets alone, as NVDEC's parser would get them)."""
    clip = sample_clip(codec)
    assert clip is not None
    with av.open(io.BytesIO(clip)) as container:
        stream = container.streams.video[0]
        packets = list(iter_decoder_packets(container, stream, Fraction(0)))
        assert all(p.pts is not None for p in packets)
        if codec in ("h264", "hevc"):
            assert all(bytes(p)[:4] == b"\0\0\0\1" or bytes(p)[:3] == b"\0\0\1" for p in packets)
        decoder = av.CodecContext.create(stream.codec_context.codec.name, "r")  # no extradata
        frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    assert len(frames) == 8
    assert sorted(f.pts for f in frames) == [f.pts for f in frames]


def test_packet_feed_seeks_to_a_keyframe_at_or_before_start(tmp_path: Path) -> None:
    made = make_video(tmp_path / "in.mkv", seconds=3, fps=25, gop=25, audio=False)
    with av.open(str(made.path)) as container:
        stream = container.streams.video[0]
        packets = iter_decoder_packets(container, stream, Fraction(2))
        first = next(packets)
        assert first.pts is not None
        assert first.pts * stream.time_base <= 2
        assert first.is_keyframe


def test_importing_the_gpu_modules_loads_no_gpu_library_and_no_web_stack() -> None:
    modules = ", ".join(
        f"gpu_worker.{m}" for m in ("encoders.nvenc", "encoders.probe", "encoders.select", "gpu_info")
    )
    banned = ("PyNvVideoCodec", "litestar", "backend", "torch", "cupy")
    code = (
        f"import sys\nimport {modules}\n"
        f"print(','.join(m for m in sys.modules if m.split('.')[0] in {banned!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
