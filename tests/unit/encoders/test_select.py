"""Backend selection for every choice x codec x probe report, with the exact reasons recorded."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from gpu_worker.contract import Codec, EncoderChoice, RenderRequest, Segment
from gpu_worker.encoders.base import VideoTarget
from gpu_worker.encoders.cpu import CpuBackend
from gpu_worker.encoders.nvenc import GpuBackendError, NvencBackend
from gpu_worker.encoders.probe import CodecSupport, GpuInfo, GpuReport
from gpu_worker.encoders.select import GpuUnavailableError, Selection, after_gpu_failure, select_backend
from gpu_worker.engine import render
from gpu_worker.fallback import Fallback, FallbackCode
from tests.fake_gpu import L4, OK, FailingGpuBackend
from tests.media import decode_indices, make_video

ABSENT = "NVENC not present on this GPU (e.g. H100)"
NO_AV1 = "NVENC does not support AV1 on this GPU"
BUSY = "NVENC session limit reached"
NO_DRIVER = "no NVIDIA driver"
NOT_INSTALLED = "PyNvVideoCodec not installed (install the 'gpu' extra)"


def gpu(
    index: int, name: str, nvenc: dict[str, CodecSupport], nvdec: dict[str, CodecSupport] | None = None
) -> GpuInfo:
    return GpuInfo(index=index, name=name, nvenc=nvenc, nvdec=nvdec or {"h264": OK, "hevc": OK, "av1": OK})


H100 = gpu(
    0,
    "NVIDIA H100 80GB HBM3",
    dict.fromkeys(("h264", "hevc", "av1"), CodecSupport(False, ABSENT)),
    {"h264": OK, "hevc": OK, "av1": CodecSupport(False, "NVDEC does not support AV1 on this GPU")},
)
T4 = gpu(0, "Tesla T4", {"h264": OK, "hevc": OK, "av1": CodecSupport(False, NO_AV1)})
FULL = gpu(0, "NVIDIA GeForce RTX 4090", dict.fromkeys(("h264", "hevc", "av1"), CodecSupport(False, BUSY)))

REPORTS = {
    "no-driver": GpuReport(driver_present=False, reason=NO_DRIVER),
    "not-installed": GpuReport(
        driver_present=True, driver_version="570.86", listed_by="nvidia-smi", reason=NOT_INSTALLED, gpus=(L4,)
    ),
    "no-gpu": GpuReport(driver_present=True, driver_version="CUDA 12.8", listed_by="cuda"),
    "h100": GpuReport(driver_present=True, driver_version="570.86", gpus=(H100,)),
    "l4": GpuReport(driver_present=True, driver_version="570.86", gpus=(L4,)),
    "t4": GpuReport(driver_present=True, driver_version="570.86", gpus=(T4,)),
    "sessions-full": GpuReport(driver_present=True, driver_version="570.86", gpus=(FULL,)),
    "h100+l4": GpuReport(
        driver_present=True,
        driver_version="570.86",
        gpus=(H100, GpuInfo(index=1, name="NVIDIA L4", nvenc=L4.nvenc)),
    ),
}
CPU_NAMES = {
    "h264": "libx264",
    "hevc": "libx265",
    "av1": "libsvtav1",
    "vp9": "libvpx-vp9",
    "prores": "prores_ks",
}
NO_VP9, NO_PRORES = "NVENC has no VP9 encoder", "NVENC has no ProRes encoder"


def expected_fallback(reason: str) -> Fallback:
    """NVENC lacking the codec altogether is one code; everything the probe found is another."""
    code = FallbackCode.CODEC_UNSUPPORTED if reason in (NO_VP9, NO_PRORES) else FallbackCode.GPU_UNAVAILABLE
    return Fallback(code, reason)


# (report, codec) -> (encoder_used, the fallback's detail) for auto, and for gpu when not strict.
EXPECTED: dict[tuple[str, str], tuple[str, str | None]] = {
    **{(r, "vp9"): ("libvpx-vp9", NO_VP9) for r in REPORTS},
    **{(r, "prores"): ("prores_ks", NO_PRORES) for r in REPORTS},
    **{("no-driver", c): (CPU_NAMES[c], NO_DRIVER) for c in ("h264", "hevc", "av1")},
    **{("not-installed", c): (CPU_NAMES[c], NOT_INSTALLED) for c in ("h264", "hevc", "av1")},
    **{("no-gpu", c): (CPU_NAMES[c], "no NVIDIA GPU found") for c in ("h264", "hevc", "av1")},
    **{("h100", c): (CPU_NAMES[c], ABSENT) for c in ("h264", "hevc", "av1")},
    **{("l4", c): (f"{c}_nvenc@GPU0", None) for c in ("h264", "hevc", "av1")},
    ("t4", "h264"): ("h264_nvenc@GPU0", None),
    ("t4", "hevc"): ("hevc_nvenc@GPU0", None),
    ("t4", "av1"): ("libsvtav1", NO_AV1),
    **{("sessions-full", c): (CPU_NAMES[c], BUSY) for c in ("h264", "hevc", "av1")},
    **{("h100+l4", c): (f"{c}_nvenc@GPU1", None) for c in ("h264", "hevc", "av1")},
}


@pytest.mark.parametrize("choice", [EncoderChoice.AUTO, EncoderChoice.GPU])
@pytest.mark.parametrize(("report", "codec"), sorted(EXPECTED))
def test_auto_and_gpu_pick_nvenc_or_cpu_with_the_reason(choice: str, report: str, codec: str) -> None:
    used, reason = EXPECTED[report, codec]
    selection = select_backend(choice, codec, REPORTS[report])
    assert (selection.encoder_used, selection.fallback) == (used, reason and expected_fallback(reason))
    assert selection.device == ("gpu" if reason is None else "cpu")
    assert selection.encoder_requested == choice
    assert selection.codec == codec


@pytest.mark.parametrize("report", sorted(REPORTS))
@pytest.mark.parametrize("codec", list(Codec))
def test_cpu_choice_is_cpu_without_a_reason(report: str, codec: Codec) -> None:
    selection = select_backend("cpu", codec, REPORTS[report])
    assert selection == Selection("cpu", codec, "cpu", CPU_NAMES[codec])


@pytest.mark.parametrize(("report", "codec"), sorted(EXPECTED))
def test_strict_gpu_raises_with_the_reason_instead_of_falling_back(report: str, codec: str) -> None:
    used, reason = EXPECTED[report, codec]
    if reason is None:
        selection = select_backend("gpu", codec, REPORTS[report], strict=True)
        assert (selection.device, selection.encoder_used, selection.strict) == ("gpu", used, True)
        return
    with pytest.raises(GpuUnavailableError, match="GPU encoding required but unavailable") as info:
        select_backend("gpu", codec, REPORTS[report], strict=True)
    assert info.value.reason == reason


def test_strict_only_binds_the_gpu_choice() -> None:
    selection = select_backend("auto", "h264", REPORTS["h100"], strict=True)
    assert (selection.device, selection.fallback) == ("cpu", expected_fallback(ABSENT))


def test_gpu_index_limits_the_choice_to_that_gpu() -> None:
    report = REPORTS["h100+l4"]
    assert select_backend("auto", "h264", report, gpu_index=1).encoder_used == "h264_nvenc@GPU1"
    pinned = select_backend("auto", "h264", report, gpu_index=0)
    assert (pinned.encoder_used, pinned.fallback) == ("libx264", expected_fallback(ABSENT))
    missing = select_backend("auto", "h264", report, gpu_index=3)
    assert missing.fallback == expected_fallback("GPU 3 not found (GPUs: 0, 1)")


def test_reasons_of_several_gpus_are_named_per_gpu() -> None:
    report = GpuReport(driver_present=True, gpus=(H100, GpuInfo(index=1, name="RTX 4090", nvenc=FULL.nvenc)))
    reason = f"GPU 0: {ABSENT}; GPU 1: {BUSY}"
    assert select_backend("auto", "hevc", report).fallback == expected_fallback(reason)


def test_mid_render_failure_reruns_on_the_cpu_with_the_reason() -> None:
    selection = select_backend("auto", "hevc", REPORTS["l4"])
    rerun = after_gpu_failure(
        selection, GpuBackendError("NVENC session lost", "nvEncEncodePicture returned error 4")
    )
    reason = "GPU failed mid-render (NVENC session lost); re-rendered on CPU"
    assert rerun == Selection("cpu", "hevc", "auto", "libx265", Fallback(FallbackCode.GPU_FAILED, reason))
    assert isinstance(rerun.backend(), CpuBackend)


def test_mid_render_failure_of_a_strict_gpu_job_raises() -> None:
    selection = select_backend("gpu", "h264", REPORTS["l4"], strict=True)
    with pytest.raises(GpuUnavailableError, match=r"GPU failed mid-render \(GPU out of memory\)"):
        after_gpu_failure(selection, GpuBackendError("GPU out of memory"))
    with pytest.raises(ValueError, match="only a GPU selection"):
        after_gpu_failure(select_backend("cpu", "h264", REPORTS["l4"]), GpuBackendError("x"))


def test_gpu_selection_builds_the_nvenc_backend_with_the_probe_nvdec_results() -> None:
    report = GpuReport(driver_present=True, gpus=(gpu(0, "NVIDIA L4", L4.nvenc, H100.nvdec),))
    backend = select_backend("gpu", "h264", report).backend()
    assert isinstance(backend, NvencBackend)
    assert (backend.name, backend.device, backend.gpu_index) == ("h264_nvenc@GPU0", "gpu", 0)


def test_nvenc_backend_refuses_a_source_nvdec_cannot_decode(tmp_path: Path) -> None:
    import av

    source = make_video(tmp_path / "av1.mp4", seconds=Fraction(1, 5), codec="av1", audio=False)
    backend = NvencBackend("h264", 0, {"av1": (False, "NVDEC does not support AV1 on this GPU")})
    with av.open(str(source.path)) as container, pytest.raises(GpuBackendError) as info:
        backend.open_decoder(container, container.streams.video[0])
    assert info.value.reason == "NVDEC does not support AV1 on this GPU"


def test_nvenc_backend_without_the_library_fails_as_a_gpu_error(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed here")
    import av

    target = VideoTarget("h264", 64, 48, Fraction(25), Fraction(1, 25), "standard")
    with av.open(str(tmp_path / "x.mp4"), "w") as output, pytest.raises(GpuBackendError) as info:
        NvencBackend("h264").open_encoder(output, target)
    assert info.value.reason == NOT_INSTALLED


def test_a_gpu_failure_mid_render_is_rerendered_on_the_cpu(tmp_path: Path) -> None:
    source = make_video(tmp_path / "in.mp4", seconds=2, fps=25)
    request = RenderRequest(segments=[Segment(Fraction(1, 2), Fraction(3, 2))])
    selection = select_backend("auto", "h264", REPORTS["l4"])
    out = tmp_path / "out.mp4"
    with pytest.raises(GpuBackendError) as info:
        render(request, source.path, out, backend=FailingGpuBackend())
    assert not out.exists()
    rerun = after_gpu_failure(selection, info.value)
    result = render(request, source.path, out, backend=rerun.backend())
    assert rerun.fallback == Fallback(
        FallbackCode.GPU_FAILED, "GPU failed mid-render (NVENC session lost); re-rendered on CPU"
    )
    assert result.encoder_used == rerun.encoder_used == "libx264"
    assert decode_indices(out) == source.frames_in(Fraction(1, 2), Fraction(3, 2))
