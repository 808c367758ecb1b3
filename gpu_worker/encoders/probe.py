"""Capability probe: what this machine's GPUs can really encode and decode, and why not.

A worker probes once at start (`probe_gpus()` caches per process; `refresh=True` re-probes).
GPUs are listed through NVML (`pynvml`, from nvidia-ml-py) when importable, else `nvidia-smi`,
else the CUDA driver API (libcuda through ctypes), honouring CUDA_VISIBLE_DEVICES so `index` is
the CUDA ordinal PyNvVideoCodec takes (NVML and nvidia-smi count in PCI order: run with
CUDA_DEVICE_ORDER=PCI_BUS_ID when several GPUs are visible). For each GPU and codec it opens a
real NVENC session (256x256 NV12, one frame, EndEncode) and decodes a tiny clip made here with
PyAV through the same NVDEC path the renderer uses; failures become short reasons. Nothing here
raises: a machine without a driver gets a report that says so.
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import msgspec
import numpy as np

from gpu_worker.encoders.nvenc import (
    GpuBackendError,
    NvdecDecoder,
    codec_label,
    import_nvc,
    nvenc_failure_reason,
)

log = logging.getLogger(__name__)

CODECS = ("h264", "hevc", "av1")
_PROBE_SIZE = 256
_SAMPLE_FRAMES = 8
_SMI_TIMEOUT_S = 10.0
_SAMPLE_ENCODERS = {
    "h264": ("libx264", {"preset": "ultrafast"}),
    "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "log-level=none"}),
    "av1": ("libsvtav1", {"preset": "12"}),
}
_NVENC_NOT_PRESENT = "NVENC not present on this GPU (e.g. H100)"


class CodecSupport(msgspec.Struct, frozen=True):
    """Whether one engine (NVENC or NVDEC) handles one codec on one GPU; `reason` when it does not."""

    works: bool
    reason: str | None = None


class GpuInfo(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    name: str
    uuid: str | None = None
    memory_mib: int | None = None
    nvenc: dict[str, CodecSupport] = msgspec.field(default_factory=dict)
    nvdec: dict[str, CodecSupport] = msgspec.field(default_factory=dict)


class GpuReport(msgspec.Struct, frozen=True, kw_only=True):
    """The probe's answer. `reason` is set when no GPU work is possible at all (no driver, library
    missing, ...); per-codec reasons live in each GPU's `nvenc`/`nvdec` maps."""

    driver_present: bool
    driver_version: str | None = None
    library_version: str | None = None
    listed_by: str | None = None
    reason: str | None = None
    gpus: tuple[GpuInfo, ...] = ()

    def nvenc_gpus(self, codec: str) -> list[int]:
        """Indices of the GPUs whose NVENC session for `codec` opened and encoded a frame."""
        if self.reason is not None:
            return []
        return [gpu.index for gpu in self.gpus if (s := gpu.nvenc.get(codec)) is not None and s.works]

    def nvenc_reason(self, codec: str, gpu_index: int | None = None) -> str:
        """Why `codec` cannot be encoded on the GPU(s) considered (all, or only `gpu_index`)."""
        if self.reason is not None:
            return self.reason
        if not self.gpus:
            return "no NVIDIA GPU found"
        gpus = [g for g in self.gpus if gpu_index is None or g.index == gpu_index]
        if not gpus:
            listed = ", ".join(str(g.index) for g in self.gpus)
            return f"GPU {gpu_index} not found (GPUs: {listed})"
        reasons: dict[str, list[int]] = {}
        for gpu in gpus:
            support = gpu.nvenc.get(codec)
            reason = support.reason if support is not None else f"{codec_label(codec)} not probed"
            reasons.setdefault(reason or "unknown", []).append(gpu.index)
        if len(reasons) == 1:
            return next(iter(reasons))
        return "; ".join(f"GPU {','.join(map(str, idx))}: {reason}" for reason, idx in reasons.items())

    def nvdec_support(self, gpu_index: int) -> dict[str, tuple[bool, str | None]]:
        """NVDEC results for one GPU as {codec: (works, reason)}, for `NvencBackend`."""
        for gpu in self.gpus:
            if gpu.index == gpu_index:
                return {codec: (s.works, s.reason) for codec, s in gpu.nvdec.items()}
        return {}

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


@dataclass(frozen=True, slots=True)
class _Listed:
    name: str
    uuid: str | None
    memory_mib: int | None


@dataclass(frozen=True, slots=True)
class _Listing:
    method: str
    driver_version: str | None
    gpus: list[_Listed]


_lock = threading.Lock()
_cached: GpuReport | None = None


def probe_gpus(refresh: bool = False) -> GpuReport:
    """The machine's GPU report, probed once per process (again with `refresh=True`); never raises."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            try:
                _cached = _probe()
            except Exception as exc:  # the probe must never take the worker down
                log.exception("GPU probe failed")
                _cached = GpuReport(driver_present=False, reason=f"GPU probe failed: {exc}")
            log.info("GPU probe: %s", _cached.to_json().decode())
        return _cached


def _probe() -> GpuReport:
    listing = _list_gpus()
    if listing is None:
        return GpuReport(driver_present=False, reason="no NVIDIA driver")
    base = {"driver_present": True, "driver_version": listing.driver_version, "listed_by": listing.method}
    if not listing.gpus:
        return GpuReport(**base, reason="no NVIDIA GPU visible (check CUDA_VISIBLE_DEVICES)")
    listed = tuple(
        GpuInfo(index=i, name=g.name, uuid=g.uuid, memory_mib=g.memory_mib)
        for i, g in enumerate(listing.gpus)
    )
    try:
        nvc = import_nvc()
    except GpuBackendError as exc:
        return GpuReport(**base, reason=exc.reason, gpus=listed)
    gpus = tuple(
        msgspec.structs.replace(gpu, nvenc=_probe_nvenc(nvc, gpu.index), nvdec=_probe_nvdec(gpu.index))
        for gpu in listed
    )
    return GpuReport(**base, library_version=getattr(nvc, "__version__", None), gpus=gpus)


# ---------------------------------------------------------------------------------------------
# Listing


def _list_gpus() -> _Listing | None:
    for lister in (_list_nvml, _list_nvidia_smi, _list_cuda):
        try:
            listing = lister()
        except Exception as exc:
            log.warning("GPU listing via %s failed: %s", lister.__name__, exc)
            continue
        if listing is not None:
            return _Listing(listing.method, listing.driver_version, _visible(listing.gpus))
    return None


def _list_nvml() -> _Listing | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
            gpus.append(
                _Listed(
                    _text(pynvml.nvmlDeviceGetName(handle)), _text(pynvml.nvmlDeviceGetUUID(handle)), memory
                )
            )
        return _Listing("nvml", _text(pynvml.nvmlSystemGetDriverVersion()), gpus)
    finally:
        pynvml.nvmlShutdown()


def _list_nvidia_smi() -> _Listing | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = "--query-gpu=index,name,driver_version,memory.total,uuid"
    result = subprocess.run(  # noqa: S603 - fixed arguments, resolved executable
        [exe, query, "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=_SMI_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:  # e.g. "couldn't communicate with the NVIDIA driver"
        log.warning("nvidia-smi failed: %s", (result.stderr or result.stdout).strip()[:200])
        return None
    gpus, driver = [], None
    for line in result.stdout.strip().splitlines():
        _, name, driver, memory, uuid = (part.strip() for part in line.split(","))
        gpus.append(_Listed(name, uuid, int(memory) if memory.isdigit() else None))
    return _Listing("nvidia-smi", driver, gpus)


def _list_cuda() -> _Listing | None:
    """The CUDA driver API (what PyNvVideoCodec uses); it already applies CUDA_VISIBLE_DEVICES."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int()
    cuda.cuDriverGetVersion(ctypes.byref(version))
    driver = f"CUDA {version.value // 1000}.{version.value % 1000 // 10}"
    if cuda.cuInit(0) != 0:  # e.g. CUDA_ERROR_NO_DEVICE
        return _Listing("cuda", driver, [])
    count = ctypes.c_int()
    cuda.cuDeviceGetCount(ctypes.byref(count))
    gpus = []
    for ordinal in range(count.value):
        device, name, memory = ctypes.c_int(), ctypes.create_string_buffer(256), ctypes.c_size_t()
        cuda.cuDeviceGet(ctypes.byref(device), ordinal)
        cuda.cuDeviceGetName(name, len(name), device)
        cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device)
        gpus.append(_Listed(name.value.decode(errors="replace"), None, memory.value // 2**20))
    return _Listing("cuda", driver, gpus)


def _visible(gpus: list[_Listed]) -> list[_Listed]:
    """Apply CUDA_VISIBLE_DEVICES (indices or UUID prefixes; CUDA stops at the first bad entry)."""
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return gpus
    chosen: list[_Listed] = []
    for token in (t.strip() for t in spec.split(",")):
        if token.isdigit() and int(token) < len(gpus):
            chosen.append(gpus[int(token)])
            continue
        match = [g for g in gpus if token and g.uuid and g.uuid.startswith(token)]
        if not match:
            break
        chosen.append(match[0])
    return chosen


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------------------------
# Per-codec checks


def _probe_nvenc(nvc: Any, gpu_index: int) -> dict[str, CodecSupport]:
    results: dict[str, CodecSupport] = {}
    for codec in CODECS:
        try:
            _encode_one_frame(nvc, gpu_index, codec)
            results[codec] = CodecSupport(True)
        except Exception as exc:
            results[codec] = CodecSupport(False, nvenc_failure_reason(codec, str(exc)))
    # When no codec opened at all the cause is the GPU, not the codec (the error codes differ).
    if not any(s.works for s in results.values()) and any(
        s.reason == _NVENC_NOT_PRESENT for s in results.values()
    ):
        results = dict.fromkeys(CODECS, CodecSupport(False, _NVENC_NOT_PRESENT))
    return results


def _encode_one_frame(nvc: Any, gpu_index: int, codec: str) -> None:
    options = {"codec": codec, "gpu_id": str(gpu_index), "preset": "P1", "fps": "30", "gop": "30", "bf": "0"}
    if codec == "av1":
        options["use_ivf_container"] = "0"
    encoder = nvc.CreateEncoder(_PROBE_SIZE, _PROBE_SIZE, "NV12", True, **options)
    try:
        frame = np.full(_PROBE_SIZE * _PROBE_SIZE * 3 // 2, 128, dtype=np.uint8)
        packets = [*encoder.Encode(frame), *encoder.EndEncode()]
    finally:
        del encoder  # closes the session now: consumer GPUs allow only a few at a time
    if not any(len(p["data"]) for p in packets):
        raise RuntimeError("NVENC returned no bitstream for a test frame")


def _probe_nvdec(gpu_index: int) -> dict[str, CodecSupport]:
    results: dict[str, CodecSupport] = {}
    for codec in CODECS:
        sample = sample_clip(codec)
        if sample is None:
            results[codec] = CodecSupport(
                False, f"not probed: PyAV cannot make a {codec_label(codec)} test clip"
            )
            continue
        try:
            decoded = count_nvdec_frames(sample, gpu_index)
        except GpuBackendError as exc:
            results[codec] = CodecSupport(False, exc.reason)
            continue
        except Exception as exc:
            results[codec] = CodecSupport(False, f"NVDEC failed: {exc}")
            continue
        ok = decoded == _SAMPLE_FRAMES
        results[codec] = CodecSupport(
            ok, None if ok else f"NVDEC decoded {decoded} of {_SAMPLE_FRAMES} test frames"
        )
    return results


def count_nvdec_frames(clip: bytes, gpu_index: int) -> int:
    """Decode an in-memory clip with the renderer's NVDEC path; the number of frames it gave."""
    with av.open(io.BytesIO(clip)) as container:
        decoder = NvdecDecoder(container, container.streams.video[0], gpu_index)
        return sum(1 for _ in decoder.frames(Fraction(0), None))


@functools.cache
def sample_clip(codec: str) -> bytes | None:
    """A tiny MP4 (256x256, 8 frames) made with PyAV's software encoder; None if it has none."""
    name, options = _SAMPLE_ENCODERS[codec]
    try:
        av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        return None
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream(name, rate=25, options=options)
        stream.width = stream.height = _PROBE_SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(_SAMPLE_FRAMES):
            rgb = np.full((_PROBE_SIZE, _PROBE_SIZE, 3), 30 * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buffer.getvalue()
