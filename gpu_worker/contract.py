"""The render contract shared by the web API and the worker: presets, timeline, quality table, names.

This module is the single source of truth: the API validates requests with it, the engine renders
from it and both backends read their encoder options from `QUALITY`. It imports nothing heavier
than msgspec so the web side can use it without PyAV.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, Literal

import msgspec

from gpu_worker.fallback import FallbackCode, WaitingCode

EXPORT_TASK = "export_video"
MAX_SEGMENTS = 500
OUTPUT_PER_SOURCE = 4
"""One export renders at most this many times its source's duration: segments may overlap, but
500 full-length copies of a video are a slip or an attack, not an edit."""
MAX_OUTPUT_SECONDS = 12 * 3600
"""The default absolute cap on one export's summed output (the web's MAX_OUTPUT_SECONDS setting)."""

Device = Literal["cpu", "gpu"]
"""Where a backend runs; the one definition (encoders.base re-exports it)."""


class Resolution(StrEnum):
    SOURCE = "source"
    P2160 = "2160p"
    P1440 = "1440p"
    P1080 = "1080p"
    P720 = "720p"
    P480 = "480p"
    P360 = "360p"


class Quality(StrEnum):
    DRAFT = "draft"
    STANDARD = "standard"
    HIGH = "high"
    LOSSLESS = "lossless"


class Format(StrEnum):
    MP4 = "mp4"
    WEBM = "webm"
    MOV = "mov"


class Codec(StrEnum):
    H264 = "h264"
    HEVC = "hevc"
    AV1 = "av1"
    VP9 = "vp9"
    PRORES = "prores"


class Mode(StrEnum):
    SINGLE = "single"
    CLIPS = "clips"


class EncoderChoice(StrEnum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


class ExportStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Phase(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    RENDERING = "rendering"
    PACKAGING = "packaging"
    UPLOADING = "uploading"


# Allowed codecs per container, the first one is the default.
FORMAT_CODECS: Mapping[Format, tuple[Codec, ...]] = {
    Format.MP4: (Codec.H264, Codec.HEVC, Codec.AV1),
    Format.WEBM: (Codec.VP9, Codec.AV1),
    Format.MOV: (Codec.H264, Codec.PRORES),
}

RESOLUTION_HEIGHT: Mapping[Resolution, int] = {
    Resolution.P2160: 2160,
    Resolution.P1440: 1440,
    Resolution.P1080: 1080,
    Resolution.P720: 720,
    Resolution.P480: 480,
    Resolution.P360: 360,
}


TERMINAL_STATUSES: frozenset[ExportStatus] = frozenset(
    {ExportStatus.COMPLETED, ExportStatus.FAILED, ExportStatus.CANCELLED}
)


class ProgressMessage(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One live-progress snapshot: stored in the Redis hash `progress_key(id)` (one field per
    attribute, JSON-encoded values) and published as JSON on `export_channel(id)` and
    `user_channel(user_id)`. `seq` grows by one per message of an export, so a client drops any
    message whose seq is not above the last one it applied. The fields an export row also has
    (status, encoder, fallback, waiting, error, attempt) say what the row says."""

    export_id: str
    user_id: str
    seq: int
    status: ExportStatus
    phase: Phase | None = None
    percent: int = 0
    frames_done: int = 0
    frames_total: int = 0
    fps: float = 0.0
    eta_s: float | None = None
    encoder_used: str | None = None
    fallback_code: FallbackCode | None = None
    fallback_reason: str | None = None
    waiting_code: WaitingCode | None = None
    wait_until: dt.datetime | None = None
    error: str | None = None
    attempt: int = 0


def export_channel(export_id: object) -> str:
    return f"export:{export_id}"


def user_channel(user_id: object) -> str:
    return f"user:{user_id}:exports"


def progress_key(export_id: object) -> str:
    return f"export:{export_id}:progress"


# ---------------------------------------------------------------------------------------------
# Time values: decimal strings or numbers in, exact Fractions inside.


# The canonical form of seconds, which is also what a seconds string may look like (the JSON
# schema's pattern): a decimal with at most 9 decimal places, optionally over a denominator
# ("12.5", "1.5/3"), or a ratio of whole numbers whose numerator may be longer
# ("1999999999/14"). No sign, exponent or underscore, and bounded digit counts, so parsing is cheap
# ("1e9999999" would build a huge integer).
SECONDS_PATTERN = r"(?:\d{1,9}(?:\.\d{1,9})?(?:/[1-9]\d{0,9})?|\d{10,19}/[1-9]\d{0,9})"
_SECONDS_RE = re.compile(SECONDS_PATTERN, re.ASCII)
# Every accepted value, whatever its input form, is below MAX_SECONDS in size and, as a reduced
# ratio, has a denominator of at most MAX_DENOMINATOR, so `format_seconds` can always write it in
# the pattern above (numerator < MAX_SECONDS * MAX_DENOMINATOR < 10**19) and it reads back exactly.
MAX_SECONDS = 10**9
MAX_DENOMINATOR = 10**10 - 1
_NANOSECONDS = 10**9
_TOO_PRECISE = (
    "more precise than seconds are kept: at most 9 decimal places, "
    f"or a ratio such as 4/3 with a denominator up to {MAX_DENOMINATOR}"
)


def parse_seconds(value: object) -> Fraction:
    """Exact seconds from "12.5", "25/2", 12 or 12.5 (floats via their shortest repr, so 0.1 is 1/10).

    Strings must match `SECONDS_PATTERN`. Whatever the form, the value must be below `MAX_SECONDS`
    in size and no more precise than `format_seconds` can write (1.3333333333333333 and 5e-324
    are refused, not rounded: what is accepted is rendered exactly). Negative numbers parse
    (validation names them); anything else raises ValueError.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    if isinstance(value, Fraction | int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        if abs(value) >= MAX_SECONDS:
            raise ValueError(f"must be less than {MAX_SECONDS} seconds")
        return _kept(Fraction(repr(value)) if isinstance(value, float) else Fraction(value))
    if isinstance(value, str):
        text = value.strip()
        if _SECONDS_RE.fullmatch(text):
            number, _, denominator = text.partition("/")
            parsed = Fraction(number) / int(denominator or 1)
            if parsed >= MAX_SECONDS:
                raise ValueError(f"must be less than {MAX_SECONDS} seconds")
            return _kept(parsed)
    raise ValueError("must be a number of seconds, e.g. 12.5")


def _kept(value: Fraction) -> Fraction:
    if value.denominator > MAX_DENOMINATOR:
        raise ValueError(_TOO_PRECISE)
    return value


def format_seconds(value: Fraction) -> str:
    """The canonical form, which `parse_seconds` reads back to the same value: a decimal when the
    value has one of at most 9 places ("12.5", what the API returns), else the reduced "num/den"."""
    if (value * _NANOSECONDS).denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def dec_hook(type_: type, obj: Any) -> Any:
    """msgspec hook: decode Fraction fields from strings or numbers."""
    if type_ is Fraction:
        return parse_seconds(obj)
    raise NotImplementedError(f"unsupported type {type_!r}")


def enc_hook(obj: Any) -> Any:
    """msgspec hook: encode Fractions as decimal strings."""
    if isinstance(obj, Fraction):
        return format_seconds(obj)
    raise NotImplementedError(f"cannot encode {type(obj)!r}")


# ---------------------------------------------------------------------------------------------
# Request


class ContractError(ValueError):
    """A request that breaks the contract; `field` names the offending field, e.g. 'segments[2].end'."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


Seconds = Annotated[
    Fraction,
    msgspec.Meta(
        extra_json_schema={
            "anyOf": [{"type": "string", "pattern": f"^{SECONDS_PATTERN}$"}, {"type": "number"}],
            "description": (
                "seconds: a decimal string ('12.5'), a ratio ('1001/30000') or a number; at most 9"
                " decimal places (a ratio's denominator up to 9999999999), more precise ones are refused"
            ),
        }
    ),
]


class Segment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A half-open span [start, end) of source time in seconds."""

    start: Seconds
    end: Seconds

    @property
    def duration(self) -> Fraction:
        return self.end - self.start


class RenderRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to render: the timeline (segments, empty = whole video) and the output presets."""

    segments: list[Segment] = msgspec.field(default_factory=list)
    resolution: Resolution = Resolution.SOURCE
    quality: Quality = Quality.STANDARD
    format: Format = Format.MP4
    codec: Codec | None = None
    mode: Mode = Mode.SINGLE
    encoder: EncoderChoice = EncoderChoice.AUTO

    def __post_init__(self) -> None:
        if self.codec is None:
            self.codec = FORMAT_CODECS[self.format][0]

    @property
    def video_codec(self) -> Codec:
        """The codec to encode: `codec`, which __post_init__ fills with the format's default."""
        assert self.codec is not None, "codec is set in __post_init__"
        return self.codec

    def validate(self, duration: Fraction | None = None, max_output: int | None = None) -> None:
        """Raise ContractError naming the first bad field; with `duration`, also check segment bounds,
        and with `max_output` too, that the summed output stays within `output_limit`."""
        if self.video_codec not in FORMAT_CODECS[self.format]:
            allowed = ", ".join(FORMAT_CODECS[self.format])
            raise ContractError(
                "codec", f"{self.video_codec} cannot go in {self.format} (allowed: {allowed})"
            )
        if (self.video_codec, "cpu", self.quality) not in QUALITY:
            raise ContractError("quality", f"{self.quality} is not available for {self.video_codec}")
        if len(self.segments) > MAX_SEGMENTS:
            raise ContractError("segments", f"at most {MAX_SEGMENTS} segments")
        if self.mode is Mode.CLIPS and not self.segments:
            raise ContractError("segments", "clips mode needs at least one segment")
        for i, seg in enumerate(self.segments):
            if seg.start < 0:
                raise ContractError(f"segments[{i}].start", "must not be negative")
            if seg.end <= seg.start:
                raise ContractError(f"segments[{i}].end", "must be after start")
            if duration is not None and seg.end > duration:
                raise ContractError(
                    f"segments[{i}].end", f"is past the end of the video ({format_seconds(duration)} s)"
                )
        if duration is not None and max_output is not None:
            total = sum((seg.duration for seg in self.spans(duration)), Fraction(0))
            if total > (limit := output_limit(duration, max_output)):
                raise ContractError(
                    "segments",
                    f"the segments add up to {_shown(total)} s of output, more than the {_shown(limit)} s"
                    f" allowed ({OUTPUT_PER_SOURCE} times the video's {_shown(duration)} s, and at most"
                    f" MAX_OUTPUT_SECONDS = {max_output} s)",
                )

    def spans(self, duration: Fraction) -> list[Segment]:
        """The segments to render; the whole video when none were given."""
        return list(self.segments) or [Segment(Fraction(0), duration)]


def output_limit(duration: Fraction, max_output: int) -> Fraction:
    """The most output one export of a `duration`-long source may render, summed over its segments."""
    return min(OUTPUT_PER_SOURCE * duration, Fraction(max_output))


def _shown(seconds: Fraction) -> str:
    """Seconds for a message, to the millisecond."""
    return f"{float(seconds):.3f}".rstrip("0").rstrip(".")


# DESIGN.md calls the segments plus presets a timeline; one type serves both names.
Timeline = RenderRequest

_decoder = msgspec.json.Decoder(RenderRequest, dec_hook=dec_hook)


def decode_request(data: bytes | str | Mapping[str, Any]) -> RenderRequest:
    """Parse JSON bytes or a mapping; raises msgspec.ValidationError for shape errors."""
    if isinstance(data, bytes | str):
        return _decoder.decode(data)
    return msgspec.convert(data, RenderRequest, dec_hook=dec_hook)


# ---------------------------------------------------------------------------------------------
# Geometry


def fit_size(
    src_w: int, src_h: int, resolution: Resolution | str, rotation: int = 0, allow_upscale: bool = False
) -> tuple[int, int]:
    """Encoded (coded) width and height for a source, fitted into the preset box.

    The box (e.g. 1280x720 for 720p) is turned to match the picture as displayed, so a portrait
    phone video (coded landscape, rotated ±90°) fits 720x1280. The result is in the source's coded
    orientation because the engine carries the rotation as a display matrix instead of turning
    pixels. Dimensions are even (4:2:0) and never larger than the source unless allowed.
    """
    turned = abs(rotation) % 180 == 90
    disp_w, disp_h = (src_h, src_w) if turned else (src_w, src_h)
    res = Resolution(resolution)
    box_w, box_h = disp_w, disp_h
    if res is not Resolution.SOURCE:
        short = RESOLUTION_HEIGHT[res]
        long = 2 * round(Fraction(short * 8, 9))  # 16:9, even: 854 for 480p
        box_w, box_h = (short, long) if disp_h > disp_w else (long, short)
    scale = min(Fraction(box_w, disp_w), Fraction(box_h, disp_h))
    if not allow_upscale:
        scale = min(scale, Fraction(1))
        box_w, box_h = min(box_w, disp_w), min(box_h, disp_h)
    out_w, out_h = _even(disp_w * scale, box_w), _even(disp_h * scale, box_h)
    return (out_h, out_w) if turned else (out_w, out_h)


def _even(value: Fraction, limit: int) -> int:
    """Nearest even integer to `value`, but not above `limit` (at least 2)."""
    return max(2, min(2 * round(value / 2), limit - limit % 2))


# ---------------------------------------------------------------------------------------------
# Quality table


@dataclass(frozen=True, slots=True)
class EncoderPreset:
    """How one (codec, device, quality) is encoded.

    For the CPU, `encoder` is the FFmpeg encoder name and `options` its AVOptions. For the GPU,
    `options` are PyNvVideoCodec `CreateEncoder` keys (GPU.md §1) and `encoder` is the name the
    export records. `pix_fmt_10bit` is used for 10-bit sources when the encoder supports it.
    """

    encoder: str
    options: Mapping[str, str]
    pix_fmt: str = "yuv420p"
    pix_fmt_10bit: str | None = None


def _x264(preset: str, crf: str) -> EncoderPreset:
    # H.264 stays 8-bit: High 10 barely plays in browsers.
    return EncoderPreset("libx264", {"preset": preset, "crf": crf})


def _x265(preset: str, crf: str) -> EncoderPreset:
    # No "tag" here: libx265 has no such option. CpuEncoder tags HEVC in MP4/MOV 'hvc1' itself.
    return EncoderPreset(
        "libx265",
        {"preset": preset, "crf": crf, "x265-params": "log-level=error"},
        pix_fmt_10bit="yuv420p10le",
    )


def _svtav1(preset: str, crf: str) -> EncoderPreset:
    return EncoderPreset("libsvtav1", {"preset": preset, "crf": crf}, pix_fmt_10bit="yuv420p10le")


def _vp9(crf: str, cpu_used: str) -> EncoderPreset:
    # The wheel's libvpx is 8-bit only.
    return EncoderPreset(
        "libvpx-vp9", {"crf": crf, "b": "0", "cpu-used": cpu_used, "row-mt": "1", "deadline": "good"}
    )


def _prores(profile: str, pix_fmt: str = "yuv422p10le") -> EncoderPreset:
    return EncoderPreset("prores_ks", {"profile": profile, "vendor": "apl0"}, pix_fmt, pix_fmt)


def _nvenc(codec: str, preset: str, extra: Mapping[str, str]) -> EncoderPreset:
    options = {"codec": codec, "preset": preset, "tuning_info": "high_quality", **extra}
    return EncoderPreset(f"{codec}_nvenc", options, "nv12", "p010")


_NV_DRAFT = {"rc": "vbr", "cq": "30"}
_NV_STANDARD = {"rc": "vbr", "cq": "25"}
_NV_HIGH = {"rc": "vbr", "cq": "19", "multipass": "qres", "lookahead": "20"}
_NV_LOSSLESS = {"tuning_info": "lossless", "rc": "constqp", "qp": "0"}

QUALITY: Mapping[tuple[Codec, Device, Quality], EncoderPreset] = {
    (Codec.H264, "cpu", Quality.DRAFT): _x264("veryfast", "28"),
    (Codec.H264, "cpu", Quality.STANDARD): _x264("medium", "23"),
    (Codec.H264, "cpu", Quality.HIGH): _x264("slow", "18"),
    (Codec.H264, "cpu", Quality.LOSSLESS): EncoderPreset("libx264", {"preset": "medium", "qp": "0"}),
    (Codec.HEVC, "cpu", Quality.DRAFT): _x265("veryfast", "30"),
    (Codec.HEVC, "cpu", Quality.STANDARD): _x265("medium", "26"),
    (Codec.HEVC, "cpu", Quality.HIGH): _x265("slow", "21"),
    (Codec.HEVC, "cpu", Quality.LOSSLESS): EncoderPreset(
        "libx265",
        {"preset": "medium", "x265-params": "lossless=1:log-level=error"},
        pix_fmt_10bit="yuv420p10le",
    ),
    (Codec.AV1, "cpu", Quality.DRAFT): _svtav1("10", "40"),
    (Codec.AV1, "cpu", Quality.STANDARD): _svtav1("8", "32"),
    (Codec.AV1, "cpu", Quality.HIGH): _svtav1("5", "26"),
    (Codec.VP9, "cpu", Quality.DRAFT): _vp9("40", "5"),
    (Codec.VP9, "cpu", Quality.STANDARD): _vp9("31", "2"),
    (Codec.VP9, "cpu", Quality.HIGH): _vp9("24", "1"),
    (Codec.VP9, "cpu", Quality.LOSSLESS): EncoderPreset(
        "libvpx-vp9", {"lossless": "1", "cpu-used": "2", "row-mt": "1", "deadline": "good"}
    ),
    (Codec.PRORES, "cpu", Quality.DRAFT): _prores("lt"),
    (Codec.PRORES, "cpu", Quality.STANDARD): _prores("standard"),
    (Codec.PRORES, "cpu", Quality.HIGH): _prores("hq"),
    (Codec.PRORES, "cpu", Quality.LOSSLESS): _prores("4444xq", "yuv444p10le"),
    (Codec.H264, "gpu", Quality.DRAFT): _nvenc("h264", "P2", _NV_DRAFT),
    (Codec.H264, "gpu", Quality.STANDARD): _nvenc("h264", "P4", _NV_STANDARD),
    (Codec.H264, "gpu", Quality.HIGH): _nvenc("h264", "P6", _NV_HIGH),
    (Codec.H264, "gpu", Quality.LOSSLESS): _nvenc("h264", "P4", _NV_LOSSLESS),
    (Codec.HEVC, "gpu", Quality.DRAFT): _nvenc("hevc", "P2", _NV_DRAFT),
    (Codec.HEVC, "gpu", Quality.STANDARD): _nvenc("hevc", "P4", _NV_STANDARD),
    (Codec.HEVC, "gpu", Quality.HIGH): _nvenc("hevc", "P6", _NV_HIGH),
    (Codec.HEVC, "gpu", Quality.LOSSLESS): _nvenc("hevc", "P4", _NV_LOSSLESS),
    (Codec.AV1, "gpu", Quality.DRAFT): _nvenc("av1", "P2", _NV_DRAFT),
    (Codec.AV1, "gpu", Quality.STANDARD): _nvenc("av1", "P4", _NV_STANDARD),
    (Codec.AV1, "gpu", Quality.HIGH): _nvenc("av1", "P6", _NV_HIGH),
}


def encoder_preset(codec: Codec | str, device: Device, quality: Quality | str) -> EncoderPreset:
    """The table entry; KeyError when the combination is not offered (e.g. lossless AV1)."""
    return QUALITY[(Codec(codec), device, Quality(quality))]


# ---------------------------------------------------------------------------------------------
# Audio


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """The audio encoder for a container: FFmpeg encoder, sample format, bit rate (0 = PCM)."""

    encoder: str
    sample_format: str
    bit_rate: int
    fixed_rate: int | None = None


def audio_spec(format: Format | str, codec: Codec | str) -> AudioSpec:
    """AAC for mp4/mov, PCM beside ProRes (editing workflows), Opus (48 kHz only) for webm."""
    fmt, vc = Format(format), Codec(codec)
    if fmt is Format.WEBM:
        return AudioSpec("libopus", "flt", 128_000, fixed_rate=48_000)
    if vc is Codec.PRORES:
        return AudioSpec("pcm_s16le", "s16", 0)
    return AudioSpec("aac", "fltp", 192_000)


# ---------------------------------------------------------------------------------------------
# Progress


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """One throttled progress update from the engine."""

    phase: Phase
    frames_done: int
    frames_total: int
    fps: float
    eta_s: float | None

    @property
    def percent(self) -> float:
        return 100.0 * self.frames_done / self.frames_total if self.frames_total else 0.0
