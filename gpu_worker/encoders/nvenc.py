"""GPU backend: NVDEC decode, scale on the GPU, NVENC encode, through PyNvVideoCodec 2.2.x.

PyNvVideoCodec raises RuntimeError at import on a machine without the NVIDIA driver, so it is
imported inside functions only; importing this module is safe anywhere.

Demux stays with PyAV: the decoder reads the container the pipeline opened through the hardened
`open_source` (protocol and demuxer allow-lists, limits), seeks it by presentation time exactly as
the CPU path does, runs H.264/HEVC packets through FFmpeg's `*_mp4toannexb` bitstream filter
(NVDEC's parser wants Annex-B) and hands each packet to NVDEC by pointer, with its pts attached,
so decoded frames come back with the same timestamps the CPU decoder would give them.
PyNvVideoCodec's own demuxer would reopen the file by path with a second FFmpeg, outside those
checks, and number frames its own way.

Frames stay in GPU memory from NVDEC to NVENC. PyNvVideoCodec has no scaler, so a size or bit
depth change runs on torch (DLPack), else CuPy, else the decoder writes to host memory and PyAV's
reformatter scales before NVENC reads from CPU memory; `NvencBackend.scale_path` says which ran.

Any PyNvVideoCodec failure while rendering becomes `GpuBackendError(reason)` with a short reason
("NVENC session limit reached", "NVENC session lost: ..."), so the job can re-render on the CPU
and record why.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from typing import TYPE_CHECKING, Any, Literal

import av
import av.bitstream
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from gpu_worker.contract import EncoderPreset, encoder_preset
from gpu_worker.encoders.base import DecodedFrame, Device, VideoTarget
from gpu_worker.engine.source import demux_from

if TYPE_CHECKING:
    from av.container import InputContainer, OutputContainer
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)

ScalePath = Literal["none", "torch", "cupy", "host"]

# PyAV decoder name -> (PyNvVideoCodec cudaVideoCodec member, bitstream filter to Annex-B).
NVDEC_CODECS: Mapping[str, tuple[str, str | None]] = {
    "h264": ("H264", "h264_mp4toannexb"),
    "hevc": ("HEVC", "hevc_mp4toannexb"),
    "av1": ("AV1", None),
    "vp9": ("VP9", None),
    "vp8": ("VP8", None),
    "mpeg2video": ("MPEG2", None),
}
_NVENC_CODECS = ("h264", "hevc", "av1")
_MAX_B_FRAMES = 3
_GOP_SECONDS = 2
# NV_ENC_PIC_TYPE_I and NV_ENC_PIC_TYPE_IDR in the 'picture_type' of Encode()'s output.
_KEY_PICTURES = (2, 3)


class GpuBackendError(RuntimeError):
    """The GPU path failed; `reason` is short and user-facing, the message adds the library's text."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        detail = _first_line(detail) if detail else None
        super().__init__(f"{reason} ({detail})" if detail and detail not in reason else reason)
        self.reason = reason
        self.detail = detail


def import_nvc() -> Any:
    """Import PyNvVideoCodec, turning its import-time failures into `GpuBackendError`."""
    try:
        import PyNvVideoCodec as nvc
    except ModuleNotFoundError as exc:
        raise GpuBackendError("PyNvVideoCodec not installed (install the 'gpu' extra)") from exc
    except Exception as exc:
        raise GpuBackendError(import_failure_reason(str(exc)), str(exc)) from exc
    return nvc


def import_failure_reason(text: str) -> str:
    """Short reason for PyNvVideoCodec's import error (it loads libnvidia-encode and checks its API)."""
    if "too old" in text:
        return "driver too old: PyNvVideoCodec 2.2 needs NVENC API 12.1 or newer (driver 530+)"
    if "libnvidia-encode" in text or "libcuda" in text or "cannot open shared object" in text:
        return "no NVIDIA driver (libnvidia-encode.so.1 not loadable)"
    return f"PyNvVideoCodec failed to load: {_first_line(text)}"


def nvenc_failure_reason(codec: str, text: str) -> str:
    """Map PyNvVideoCodec's encoder error text (SDK call + NVENCSTATUS) to a short human reason."""
    code = _status_code(text)
    lowered = text.lower()
    if code == 10 or "out of memory" in lowered or "nv_enc_err_out_of_memory" in lowered:
        return "NVENC session limit reached"
    if code in (1, 2) or "no capable devices" in lowered or "unsupported device" in lowered:
        return "NVENC not present on this GPU (e.g. H100)"
    if code == 15 or "does not support this nvencodeapi version" in lowered or "upgrade driver" in lowered:
        return "driver too old for PyNvVideoCodec's NVENC API"
    if code in (8, 12) or "not supported" in lowered or "invalid codec" in lowered:
        return f"NVENC does not support {codec_label(codec)} on this GPU"
    return f"NVENC failed: {_first_line(text)}"


def nvenc_runtime_reason(text: str) -> str:
    """Reason for an error from Encode/EndEncode, i.e. after the session was open."""
    code = _status_code(text)
    lowered = text.lower()
    if code == 10 or "out of memory" in lowered:
        return "GPU out of memory"
    # NV_ENC_ERR_INVALID_ENCODERDEVICE, _INVALID_DEVICE, _DEVICE_NOT_EXIST; CUDA's device/context loss
    if code in (3, 4, 5) or "context is destroyed" in lowered or "device lost" in lowered:
        return "NVENC session lost"
    return f"NVENC failed: {_first_line(text)}"


def nvdec_failure_reason(codec: str, text: str) -> str:
    """Map a decoder error (creation or Decode) to a short human reason."""
    lowered = text.lower()
    if "libnvcuvid" in lowered:
        return "NVDEC library missing (libnvcuvid.so.1; Docker needs driver capability 'video')"
    if "codec not supported" in lowered:
        return f"NVDEC does not support {codec_label(codec)} on this GPU"
    if "resolution not supported" in lowered or "mbcount not supported" in lowered:
        return f"NVDEC cannot decode this {codec_label(codec)} size on this GPU"
    if "out of memory" in lowered:
        return "GPU out of memory"
    return f"NVDEC failed: {_first_line(text)}"


def codec_label(codec: str) -> str:
    return {"h264": "H.264", "hevc": "HEVC", "av1": "AV1", "vp9": "VP9", "prores": "ProRes"}.get(codec, codec)


def _status_code(text: str) -> int | None:
    match = re.search(r"(?:returned error|error code|error)\s*:?\s*(\d+)|\((\d+)\)", text, re.IGNORECASE)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line[:limit]


# ---------------------------------------------------------------------------------------------
# Decode


@dataclass(frozen=True, slots=True)
class GpuPicture:
    """The payload of a GPU-decoded frame: PyNvVideoCodec's DecodedFrame (NV12, or P016 when deeper
    than 8 bits) in device or host memory. The decoder owns the buffer: it is valid until the next
    frame is requested from `frames()`."""

    frame: Any
    width: int
    height: int
    bit_depth: int
    on_device: bool


def stream_codec(stream: VideoStream) -> str:
    """The stream's codec ('av1'), not the decoder PyAV picked for it ('libdav1d')."""
    return stream.codec_context.codec.canonical_name


def source_bit_depth(stream: VideoStream) -> int:
    fmt = stream.codec_context.format
    return max(c.bits for c in fmt.components) if fmt is not None else 8


def iter_decoder_packets(source: InputContainer, stream: VideoStream, start: Fraction) -> Iterator[av.Packet]:
    """Packets for NVDEC from a keyframe at or before `start`: Annex-B for H.264/HEVC, the AV1
    sequence header (from the container's av1C) in front of the first packet, pts always set."""
    name = stream_codec(stream)
    _, bsf_name = NVDEC_CODECS[name]
    bsf = av.bitstream.BitStreamFilterContext(bsf_name, stream) if bsf_name else None
    prefix = bytes(stream.codec_context.extradata or b"")[4:] if name == "av1" else b""
    last_pts: int | None = None
    for packet in chain(_demux_from(source, stream, start), [None]):
        for out in ([packet] if packet is not None else []) if bsf is None else bsf.filter(packet):
            if prefix:
                stamped = av.Packet(prefix + bytes(out))
                stamped.pts, stamped.dts, stamped.time_base = out.pts, out.dts, out.time_base
                out, prefix = stamped, b""
            if out.pts is None:
                out.pts = out.dts if out.dts is not None else (last_pts + 1 if last_pts is not None else 0)
            last_pts = out.pts
            yield out


def _demux_from(source: InputContainer, stream: VideoStream, start: Fraction) -> Iterator[av.Packet]:
    """Demux from the keyframe at or before `start`: the seek the CPU decoder uses (engine.source)."""
    return demux_from(source, stream, start)


def _always_device(width: int, height: int, bit_depth: int) -> bool:
    return True


class NvdecDecoder:
    """Decodes one video stream with NVDEC; a fresh NVDEC session per `frames()` call (per segment),
    so frames buffered from an earlier segment can never leak into the next."""

    def __init__(
        self,
        source: InputContainer,
        stream: VideoStream,
        gpu_index: int = 0,
        device_frames: Callable[[int, int, int], bool] = _always_device,
    ) -> None:
        name = stream_codec(stream)
        if name not in NVDEC_CODECS:
            raise GpuBackendError(f"NVDEC path does not decode {name}")
        fmt = stream.codec_context.format
        if fmt is None or not ("420" in fmt.name or fmt.name in ("nv12", "p010le", "p016le")):
            raise GpuBackendError(
                f"NVDEC path handles 4:2:0 sources only (source is {fmt.name if fmt else 'unknown'})"
            )
        self._source = source
        self._stream = stream
        self._gpu = gpu_index
        self._codec = name
        self._device_frames = device_frames
        self.width = stream.codec_context.width
        self.height = stream.codec_context.height
        self.bit_depth = source_bit_depth(stream)

    def frames(self, start: Fraction, end: Fraction | None) -> Iterator[DecodedFrame]:
        """Frames with start <= time < end, in presentation order, each stamped with its pts time."""
        nvc = import_nvc()
        on_device = self._device_frames(self.width, self.height, self.bit_depth)
        decoder = self._open(nvc, on_device)
        time_base = self._stream.time_base or Fraction(1, 90000)
        packets: Iterator[av.Packet | None] = chain(
            iter_decoder_packets(self._source, self._stream, start), [None]
        )
        for packet in packets:
            for frame in self._decode(nvc, decoder, packet):
                time = Fraction(int(frame.timestamp)) * time_base
                if end is not None and time >= end:
                    return
                if time >= start:
                    yield DecodedFrame(
                        time, GpuPicture(frame, self.width, self.height, self.bit_depth, on_device)
                    )

    def close(self) -> None:
        """Sessions live only inside `frames()`; nothing is held between calls."""

    def _open(self, nvc: Any, on_device: bool) -> Any:
        member, _ = NVDEC_CODECS[self._codec]
        try:
            return nvc.CreateDecoder(
                gpuid=self._gpu,
                codec=getattr(nvc.cudaVideoCodec, member),
                usedevicememory=on_device,
                outputColorType=nvc.OutputColorType.NATIVE,
            )
        except Exception as exc:
            raise GpuBackendError(nvdec_failure_reason(self._codec, str(exc)), str(exc)) from exc

    def _decode(self, nvc: Any, decoder: Any, packet: av.Packet | None) -> list[Any]:
        data = nvc.PacketData()
        if packet is None:
            data.bsl = 0  # an empty packet flushes the decoder
        else:
            data.bsl_data, data.bsl, data.pts = packet.buffer_ptr, packet.size, packet.pts
        try:
            return list(decoder.Decode(data))
        except Exception as exc:
            raise GpuBackendError(nvdec_failure_reason(self._codec, str(exc)), str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# Scale / convert


class _DlpackInput:
    """What NVENC's Encode reads a CUDA array through: it calls `.cuda()` and then `__dlpack__`
    with its stream positionally; recent torch/CuPy take `stream` by keyword only."""

    def __init__(self, array: Any) -> None:
        self._array = array

    def cuda(self) -> _DlpackInput:
        return self

    def __dlpack__(self, stream: int | None = None) -> Any:
        return self._array.__dlpack__(stream=stream)

    def __dlpack_device__(self) -> Any:
        return self._array.__dlpack_device__()


class _TorchScaler:
    """NV12/P016 planes as one (1.5H, W) tensor via DLPack; bilinear with antialias, in 16-bit space."""

    kind: ScalePath = "torch"

    def __init__(self) -> None:
        import torch
        import torch.nn.functional as functional

        self._torch = torch
        self._interpolate = functional.interpolate

    def __call__(self, picture: GpuPicture, width: int, height: int, ten_bit: bool) -> Any:
        torch = self._torch
        w, h = picture.width, picture.height
        src = torch.from_dlpack(picture.frame)
        _check_shape(tuple(src.shape), w, h)
        if picture.bit_depth > 8:  # uint16 has few kernels: reinterpret as int16, widen, unsign
            plane = src.view(torch.int16).to(torch.int32).bitwise_and_(0xFFFF).to(torch.float32)
        else:
            plane = src.to(torch.float32).mul_(256.0)
        y = plane[:h][None, None]
        uv = plane[h:].reshape(h // 2, w // 2, 2).permute(2, 0, 1)[None]
        if (w, h) != (width, height):
            y = self._interpolate(y, size=(height, width), mode="bilinear", antialias=True)
            uv = self._interpolate(uv, size=(height // 2, width // 2), mode="bilinear", antialias=True)
        out = torch.cat((y.reshape(height, width), uv[0].permute(1, 2, 0).reshape(height // 2, width)))
        if ten_bit:  # P010: 10 bits in the top of 16; int16 carries the same bit pattern
            out = out.div_(64.0).round_().clamp_(0, 1023).to(torch.int32).mul_(64).to(torch.int16)
        else:
            out = out.div_(256.0).round_().clamp_(0, 255).to(torch.uint8)
        return _DlpackInput(out.contiguous())


class _CupyScaler:
    """The same on CuPy: linear zoom, with a Gaussian prefilter when shrinking (no aliasing)."""

    kind: ScalePath = "cupy"

    def __init__(self) -> None:
        import cupy
        import cupyx.scipy.ndimage as ndimage

        self._cp = cupy
        self._ndimage = ndimage

    def __call__(self, picture: GpuPicture, width: int, height: int, ten_bit: bool) -> Any:
        cp = self._cp
        w, h = picture.width, picture.height
        src = cp.from_dlpack(picture.frame)
        _check_shape(tuple(src.shape), w, h)
        plane = src.astype(cp.float32)
        if picture.bit_depth <= 8:
            plane *= 256.0
        y = plane[:h]
        uv = plane[h:].reshape(h // 2, w // 2, 2)
        if (w, h) != (width, height):
            y = self._resize(y, (height, width))
            uv = self._resize(uv, (height // 2, width // 2, 2))
        out = cp.concatenate((y, uv.reshape(height // 2, width)))
        if ten_bit:
            out = (cp.clip(cp.rint(out / 64.0), 0, 1023) * 64).astype(cp.uint16)
        else:
            out = cp.clip(cp.rint(out / 256.0), 0, 255).astype(cp.uint8)
        return _DlpackInput(cp.ascontiguousarray(out))

    def _resize(self, array: Any, shape: tuple[int, ...]) -> Any:
        zoom = tuple(new / old for new, old in zip(shape, array.shape, strict=True))
        if any(z < 1 for z in zoom):
            sigma = tuple(max(0.0, (1 / z - 1) / 2) for z in zoom)
            array = self._ndimage.gaussian_filter(array, sigma=sigma, mode="nearest")
        return self._ndimage.zoom(array, zoom, order=1, mode="nearest", grid_mode=True)


class _HostScaler:
    """Host frames (decoder in host-memory mode) through PyAV's swscale; NVENC reads CPU memory."""

    kind: ScalePath = "host"

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, picture: GpuPicture, width: int, height: int, ten_bit: bool) -> np.ndarray:
        if picture.on_device:
            raise GpuBackendError("cannot scale on the GPU: neither torch nor CuPy is installed")
        w, h = picture.width, picture.height
        bytes_per_sample = 2 if picture.bit_depth > 8 else 1
        size = w * h * 3 // 2 * bytes_per_sample
        pointer = ctypes.cast(picture.frame.GetPtrToPlane(0), ctypes.POINTER(ctypes.c_uint8))
        raw = np.ctypeslib.as_array(pointer, shape=(size,))
        frame = planes_to_frame(raw, w, h, "p010le" if bytes_per_sample == 2 else "nv12")
        shrinking = width < w or height < h
        out = self._reformatter.reformat(
            frame,
            width,
            height,
            "p010le" if ten_bit else "nv12",
            interpolation=Interpolation.AREA if shrinking else Interpolation.BICUBIC,
        )
        return frame_to_planes(out)


def planes_to_frame(raw: np.ndarray, width: int, height: int, fmt: str) -> av.VideoFrame:
    """A PyAV frame from packed semi-planar bytes (Y rows then interleaved UV rows, no padding)."""
    frame = av.VideoFrame(width, height, fmt)
    row = raw.size * 2 // (height * 3)
    rows = (raw[: row * height].reshape(height, row), raw[row * height :].reshape(height // 2, row))
    for plane, data in zip(frame.planes, rows, strict=True):
        view = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        view[:, :row] = data
    return frame


def frame_to_planes(frame: av.VideoFrame) -> np.ndarray:
    """Packed semi-planar bytes (what NVENC's CPU input wants) from an nv12/p010le PyAV frame."""
    row = frame.width * (2 if frame.format.name == "p010le" else 1)
    parts = [
        np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)[:, :row]
        for plane in frame.planes
    ]
    return np.ascontiguousarray(np.concatenate(parts)).reshape(-1)


def _check_shape(shape: tuple[int, ...], width: int, height: int) -> None:
    if shape != (height * 3 // 2, width):
        raise GpuBackendError(
            "unexpected NVDEC frame layout", f"shape {shape}, expected {(height * 3 // 2, width)}"
        )


Scaler = _TorchScaler | _CupyScaler | _HostScaler


def pick_scaler() -> Scaler:
    """torch if it imports with CUDA, else CuPy, else the host path."""
    if importlib.util.find_spec("torch") is not None:
        try:
            scaler = _TorchScaler()
            if scaler._torch.cuda.is_available():
                return scaler
        except Exception as exc:  # a broken or CPU-only torch must not stop the GPU path
            log.warning("torch unusable for GPU scaling: %s", exc)
    if importlib.util.find_spec("cupy") is not None:
        try:
            return _CupyScaler()
        except Exception as exc:
            log.warning("CuPy unusable for GPU scaling: %s", exc)
    return _HostScaler()


# ---------------------------------------------------------------------------------------------
# Encode and mux


class PacketWriter:
    """Muxes NVENC output. pts is NVENC's echo of the input timestamp; dts of the k-th packet (decode
    order) is the k-th input pts delayed by the B-frame depth, so it is monotonic and never above
    pts, also for variable frame rates; before the first input it steps back one frame at a time."""

    def __init__(
        self, output: OutputContainer, stream: Any, time_base: Fraction, frame_ticks: int, b_frames: int
    ) -> None:
        self._output = output
        self._stream = stream
        self._time_base = time_base
        self._ticks = max(1, frame_ticks)
        self._delay = b_frames
        self._inputs: deque[int] = deque()
        self._written = 0

    def note_input(self, pts: int) -> None:
        self._inputs.append(pts)

    def write(self, packets: list[dict[str, Any]]) -> None:
        for item in packets:
            data = bytes(item["data"])
            if not data:
                continue
            if self._written < self._delay:
                first = self._inputs[0]
                dts = first - (self._delay - self._written) * self._ticks
            else:
                dts = self._inputs.popleft()
            packet = av.Packet(data)
            packet.stream = self._stream
            packet.time_base = self._time_base
            packet.pts = int(item["timestamp"])
            packet.dts = dts
            packet.is_keyframe = int(item["picture_type"]) in _KEY_PICTURES
            self._output.mux(packet)
            self._written += 1


def gpu_preset(target: VideoTarget) -> EncoderPreset:
    """The contract's NVENC entry for the target, or `GpuBackendError` when there is none."""
    if target.codec not in _NVENC_CODECS:
        raise GpuBackendError(f"NVENC has no {codec_label(target.codec)} encoder")
    try:
        return encoder_preset(target.codec, "gpu", target.quality)
    except KeyError as exc:
        raise GpuBackendError(f"NVENC has no {target.quality} mode for {codec_label(target.codec)}") from exc


def nvenc_options(
    target: VideoTarget, preset: EncoderPreset, gpu_index: int, max_b_frames: int
) -> dict[str, str]:
    """CreateEncoder keys: the contract's quality preset plus rate, GOP and B-frames for this job."""
    gop = max(1, round(target.frame_rate * _GOP_SECONDS))
    fps = target.frame_rate
    options = {
        **preset.options,
        "gpu_id": str(gpu_index),
        # PyNvVideoCodec parses fps as a decimal with at most two places (29.97 for 30000/1001).
        "fps": str(fps.numerator) if fps.denominator == 1 else f"{float(fps):.2f}",
        "gop": str(gop),
        "idrperiod": str(gop),
        "bf": str(min(_MAX_B_FRAMES, max_b_frames)),
    }
    if target.codec == "av1":
        options["use_ivf_container"] = "0"  # raw OBUs for the MP4 muxer, not IVF frames
    return options


class NvencEncoder:
    """One NVENC session feeding one output stream; the session is opened in the constructor so a
    missing NVENC or a full session table fails before any frame is decoded."""

    device: Device = "gpu"

    def __init__(self, output: OutputContainer, target: VideoTarget, gpu_index: int, scaler: Scaler) -> None:
        preset = gpu_preset(target)
        if target.rotation:
            # PyAV 18.1 writes a stream's display matrix only when it has a codec context, and a
            # stream for pre-encoded packets (add_mux_stream) has none: the rotation would be lost.
            raise GpuBackendError("rotated source: PyAV cannot tag NVENC output with its rotation")
        nvc = import_nvc()
        self.name = f"{target.codec}_nvenc@GPU{gpu_index}"
        self.scale_path: ScalePath | None = None
        self._nvc = nvc
        self._target = target
        self._scaler = scaler
        self.ten_bit = target.ten_bit and preset.pix_fmt_10bit is not None
        options = nvenc_options(target, preset, gpu_index, _max_b_frames(nvc, gpu_index, target.codec))
        self._session = self._create(options, cpu_input=scaler.kind == "host")
        self.b_frames = int(self._session.GetNumBFrames())
        # Known gaps (CpuEncoder handles both): a stream for pre-encoded packets has no codec
        # context, so HEVC in MP4 keeps FFmpeg's default 'hev1' tag (Apple players want 'hvc1')
        # and the target's colour range/tags are not written (NVENC's VUI is left unspecified).
        stream = output.add_mux_stream(
            target.codec,
            rate=target.frame_rate,
            width=target.width,
            height=target.height,
            time_base=target.time_base,
        )
        frame_ticks = round(1 / (target.frame_rate * target.time_base))
        self._writer = PacketWriter(output, stream, target.time_base, frame_ticks, self.b_frames)

    def encode(self, frame: DecodedFrame, pts: int) -> None:
        if pts < 0:
            raise ValueError("NVENC timestamps must not be negative")
        data = self._prepare(frame.payload)
        params = self._nvc.NV_ENC_PIC_PARAMS()
        params.inputTimeStamp = pts
        self._writer.note_input(pts)
        try:
            packets = self._session.Encode(data, params)
        except Exception as exc:
            raise GpuBackendError(nvenc_runtime_reason(str(exc)), str(exc)) from exc
        self._writer.write(packets)

    def flush(self) -> None:
        try:
            packets = self._session.EndEncode()
        except Exception as exc:
            raise GpuBackendError(nvenc_runtime_reason(str(exc)), str(exc)) from exc
        self._writer.write(packets)

    def close(self) -> None:
        self._session = None  # the pybind destructor ends the NVENC session

    def _create(self, options: dict[str, str], cpu_input: bool) -> Any:
        target = self._target
        fmt = "P010" if self.ten_bit else "NV12"
        try:
            return self._nvc.CreateEncoder(target.width, target.height, fmt, cpu_input, **options)
        except self._nvc.PyNvVCExceptionUnsupported as exc:
            if fmt != "P010":
                raise GpuBackendError(nvenc_failure_reason(target.codec, str(exc)), str(exc)) from exc
            log.warning(
                "NVENC rejects 10-bit %s on GPU (%s); encoding 8-bit", target.codec, _first_line(str(exc))
            )
            self.ten_bit = False
            return self._create(options, cpu_input)
        except Exception as exc:
            raise GpuBackendError(nvenc_failure_reason(target.codec, str(exc)), str(exc)) from exc

    def _prepare(self, picture: GpuPicture) -> Any:
        target = self._target
        same_size = (picture.width, picture.height) == (target.width, target.height)
        same_depth = (picture.bit_depth > 8) == self.ten_bit
        path: ScalePath = "none" if same_size and same_depth and picture.on_device else self._scaler.kind
        if self.scale_path is None:
            self.scale_path = path
            log.info(
                "%s: %dx%d %d-bit -> %dx%d %s, scale path %s",
                self.name, picture.width, picture.height, picture.bit_depth,
                target.width, target.height, "P010" if self.ten_bit else "NV12", path,
            )  # fmt: skip
        if path == "none":
            return picture.frame
        return self._scaler(picture, target.width, target.height, self.ten_bit)


def _max_b_frames(nvc: Any, gpu_index: int, codec: str) -> int:
    """The GPU's B-frame limit for the codec (0 for HEVC before Turing); 0 if caps are unreadable."""
    try:
        caps = nvc.GetEncoderCaps(gpuid=gpu_index, codec=codec)
        return int(caps.get("num_max_bframes", 0))
    except Exception as exc:
        log.warning("GetEncoderCaps(%s) failed, encoding without B-frames: %s", codec, _first_line(str(exc)))
        return 0


# ---------------------------------------------------------------------------------------------
# Backend


class NvencBackend:
    """NVDEC + NVENC on one GPU. `decode_support` (from the probe) lets a source codec NVDEC cannot
    handle fail at open with the probe's reason instead of mid-render."""

    device: Device = "gpu"

    def __init__(
        self,
        codec: str,
        gpu_index: int = 0,
        decode_support: Mapping[str, tuple[bool, str | None]] | None = None,
    ) -> None:
        self.codec = codec
        self.gpu_index = gpu_index
        self.name = f"{codec}_nvenc@GPU{gpu_index}"
        self._decode_support = dict(decode_support or {})
        self._scaler: Scaler | None = None
        self._target: VideoTarget | None = None
        self._encoder: NvencEncoder | None = None

    @property
    def scale_path(self) -> ScalePath | None:
        """How the last encoder got frames to the target size: none, torch, cupy or host."""
        return self._encoder.scale_path if self._encoder is not None else None

    def open_decoder(self, source: InputContainer, stream: VideoStream) -> NvdecDecoder:
        works, reason = self._decode_support.get(stream_codec(stream), (True, None))
        if not works:
            raise GpuBackendError(reason or f"NVDEC cannot decode {stream_codec(stream)}")
        return NvdecDecoder(source, stream, self.gpu_index, self._device_frames)

    def open_encoder(self, output: OutputContainer, target: VideoTarget) -> NvencEncoder:
        if target.codec != self.codec:
            raise ValueError(f"backend selected for {self.codec}, asked to encode {target.codec}")
        self._target = target
        self._encoder = NvencEncoder(output, target, self.gpu_index, self._get_scaler())
        return self._encoder

    def _get_scaler(self) -> Scaler:
        if self._scaler is None:
            self._scaler = pick_scaler()
        return self._scaler

    def _device_frames(self, width: int, height: int, bit_depth: int) -> bool:
        """Decode to GPU memory unless a conversion is needed and only the host path can do it."""
        target = self._target
        if target is None:
            return True
        ten_bit = self._encoder.ten_bit if self._encoder is not None else target.ten_bit
        unchanged = (width, height) == (target.width, target.height) and (bit_depth > 8) == ten_bit
        return unchanged or self._get_scaler().kind != "host"
