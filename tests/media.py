"""Test media factory: tiny videos whose every frame carries its own index, readable after encoding.

Each frame shows its index as a 4x4 grid of large black/white cells (bit 0 top-left, row-major),
which survives lossy encoding (CRF 28+) and downscaling to a quarter of the size, so a test can
decode an output and tell exactly which source frames it holds. `make_video` returns the exact
presentation times it wrote, so expectations are computed, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID = 4
BITS = GRID * GRID
BEEP_S = 0.05

_VIDEO_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
_ENCODER_OPTIONS = {
    "libx264": {"preset": "veryfast", "crf": "18"},
    "libx265": {"preset": "ultrafast", "crf": "18", "x265-params": "log-level=error"},
    "libvpx-vp9": {"crf": "20", "b": "0", "cpu-used": "8", "deadline": "realtime"},
    "libsvtav1": {"preset": "12", "crf": "20"},
}
_AUDIO_BY_SUFFIX = {".webm": ("libopus", "flt"), ".avi": ("pcm_s16le", "s16")}


@dataclass(frozen=True, slots=True)
class MadeVideo:
    """What was written: frame presentation times in seconds (frame i has index i), sizes, audio."""

    path: Path
    frame_times: tuple[Fraction, ...]
    width: int
    height: int
    fps: Fraction
    audio_rate: int | None
    seconds: Fraction

    def frames_in(self, start: Fraction, end: Fraction) -> list[int]:
        """Indices of the frames whose presentation time t satisfies start <= t < end."""
        return [i for i, t in enumerate(self.frame_times) if start <= t < end]


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """An RGB picture of `index` as a grid of black/white cells on mid grey."""
    img = np.full((height, width, 3), 128, dtype=np.uint8)
    for bit in range(BITS):
        row, col = divmod(bit, GRID)
        y0, y1 = row * height // GRID, (row + 1) * height // GRID
        x0, x1 = col * width // GRID, (col + 1) * width // GRID
        img[y0:y1, x0:x1] = 255 if (index >> bit) & 1 else 0
    return img


def read_frame_index(frame: av.VideoFrame) -> int:
    """The index burned into a decoded frame by `pattern` (any size, any pixel format)."""
    luma = frame.to_ndarray(format="gray").astype(np.float32)
    height, width = luma.shape
    index = 0
    for bit in range(BITS):
        row, col = divmod(bit, GRID)
        y0, y1 = row * height // GRID, (row + 1) * height // GRID
        x0, x1 = col * width // GRID, (col + 1) * width // GRID
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        if luma[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean() > 128:
            index |= 1 << bit
    return index


def vfr_times(count: int, fps: Fraction) -> list[Fraction]:
    """Irregular frame times: gaps cycle through 1, 2 and 3 nominal frame durations."""
    times, t = [], Fraction(0)
    for i in range(count):
        times.append(t)
        t += (1 + i % 3) / fps
    return times


def make_video(
    path: Path,
    *,
    seconds: float | Fraction = 2,
    fps: int | Fraction = 25,
    width: int = 320,
    height: int = 180,
    codec: str = "h264",
    audio: bool = True,
    audio_rate: int = 48000,
    vfr: bool = False,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
    audio_only_first_s: float | Fraction = 0.0,
    gop: int = 25,
    beeps: tuple[float, ...] = (),
    bt709: bool = False,
) -> MadeVideo:
    """Write a test video; the container follows the suffix (.mp4 .mov .mkv .webm .ts .avi).

    `rotation` is written as a display matrix (counter-clockwise degrees, as PyAV reads it back);
    `vfr` spaces frames irregularly; `audio_only_first_s` delays the first video frame so the file
    starts with audio only. Audio is a stereo 440 Hz tone covering the whole `seconds`, or, when
    `beeps` are given, silence with a 50 ms 1 kHz beep starting at each of those times (to check
    where audio lands after a cut, see `beep_onsets`). `bt709` tags the video BT.709 (matrix,
    primaries, transfer); a `pix_fmt` of 'yuvj420p' also tags it full range.
    """
    path = Path(path)
    fps = Fraction(fps)
    total = Fraction(seconds)
    lead = Fraction(audio_only_first_s)
    time_base = Fraction(1, 90000) if vfr else 1 / fps
    if vfr:
        times = [lead + t for t in vfr_times(int(total * fps), fps) if lead + t < total]
    else:
        times = [lead + i / fps for i in range(int((total - lead) * fps))]

    with av.open(str(path), "w") as out:
        encoder = _VIDEO_ENCODERS[codec]
        options = {**_ENCODER_OPTIONS[encoder], "g": str(gop)}
        video = out.add_stream(encoder, rate=fps, options=options)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.time_base = time_base
        if bt709:
            ctx = video.codec_context
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709
        if pix_fmt.startswith("yuvj"):
            video.codec_context.color_range = 2  # full (JPEG) range
        if rotation:
            video.set_display_rotation(rotation)
        sound = _add_audio(out, path.suffix, audio_rate) if audio else None
        tone = _Tone(beeps)
        samples_done = 0
        for index, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(pattern(index, width, height), format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts, frame.time_base = int(t / time_base), time_base
            out.mux(video.encode(frame))
            if sound is not None:
                samples_done = tone.write(out, sound, samples_done, int(t * sound.sample_rate))
        out.mux(video.encode())
        if sound is not None:
            tone.write(out, sound, samples_done, int(total * sound.sample_rate))
            out.mux(sound.encode())
    rate = sound.sample_rate if audio and sound is not None else None
    return MadeVideo(path, tuple(times), width, height, fps, rate, total)


def _add_audio(out: av.container.OutputContainer, suffix: str, rate: int) -> av.AudioStream:
    encoder, fmt = _AUDIO_BY_SUFFIX.get(suffix, ("aac", "fltp"))
    if encoder == "libopus":
        rate = 48000
    stream = out.add_stream(encoder, rate=rate, layout="stereo")
    stream.format = fmt
    return stream


@dataclass(frozen=True, slots=True)
class _Tone:
    beeps: tuple[float, ...]

    def samples(self, t: np.ndarray) -> np.ndarray:
        if not self.beeps:
            return 0.3 * np.sin(2 * np.pi * 440 * t)
        on = np.zeros_like(t, dtype=bool)
        for start in self.beeps:
            on |= (t >= start) & (t < start + BEEP_S)
        return np.where(on, 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0)

    def write(self, out: av.container.OutputContainer, stream: av.AudioStream, start: int, stop: int) -> int:
        """Encode samples [start, stop) in encoder-sized frames; returns the new sample position."""
        rate = stream.sample_rate
        size = stream.codec_context.frame_size or 1024
        while start + size <= stop:
            wave = self.samples(np.arange(start, start + size) / rate).astype(np.float32)
            frame = _audio_frame(np.stack([wave, wave]), stream.format.name)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(stream.encode(frame))
            start += size
        return start


def _audio_frame(planar: np.ndarray, fmt: str) -> av.AudioFrame:
    if fmt == "fltp":
        return av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
    if fmt == "flt":
        return av.AudioFrame.from_ndarray(planar.T.reshape(1, -1), format="flt", layout="stereo")
    pcm = (planar.T.reshape(1, -1) * 32767).astype(np.int16)
    return av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")


def make_garbage(path: Path, size: int = 64 * 1024) -> Path:
    """Random bytes with a video suffix: must be rejected quickly."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def make_truncated(path: Path, *, keep_index: bool = False) -> Path:
    """A 2 s MP4 cut at 60 %.

    By default the index (moov) is at the end and is lost, so the file cannot be opened; with
    `keep_index` the index comes first and only the tail of the media data is missing.
    """
    path = Path(path)
    made = make_video(path.with_name(f"whole-{path.name}"), seconds=2)
    options = {"movflags": "+faststart"} if keep_index else {}
    with av.open(str(made.path)) as source, av.open(str(path), "w", options=options) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    made.path.unlink()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    return path


def make_corrupt(path: Path, *, flips: int = 20) -> Path:
    """A 2 s MP4 whose media data has `flips` random bytes overwritten (index intact)."""
    path = Path(path)
    make_video(path, seconds=2)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(3)
    for at in rng.integers(len(data) // 10, len(data) * 8 // 10, flips):
        data[at] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    return path


def decode_indices(path: Path) -> list[int]:
    """Every decoded frame's burned-in index, in presentation order."""
    with av.open(str(path)) as container:
        return [read_frame_index(f) for f in container.decode(video=0)]


@dataclass(frozen=True, slots=True)
class Decoded:
    """An output file as a test sees it after decoding every frame and sample."""

    container: str
    indices: list[int]
    times: list[Fraction]
    video_codec: str
    width: int
    height: int
    pix_fmt: str
    rotation: int
    video_duration: Fraction
    dts_monotonic: bool
    audio_codec: str | None
    audio_rate: int | None
    audio_samples: int
    audio_start: Fraction | None
    audio_frame_size: int

    @property
    def audio_duration(self) -> Fraction:
        return Fraction(self.audio_samples, self.audio_rate) if self.audio_rate else Fraction(0)


def decode_output(path: Path) -> Decoded:
    """Decode a whole output: burned-in indices, frame times, stream facts and the audio length."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        indices, times, rotation, pix_fmt, last_duration = [], [], 0, "", Fraction(0)
        for frame in container.decode(video):
            indices.append(read_frame_index(frame))
            times.append(Fraction(frame.pts) * video.time_base)
            rotation, pix_fmt = frame.rotation, frame.format.name
            last_duration = Fraction(frame.duration or 0) * video.time_base
        if not last_duration and len(times) > 1:
            last_duration = times[-1] - times[-2]
        audio = container.streams.audio[0] if container.streams.audio else None
        samples, audio_start = 0, None
        if audio is not None:
            # A fresh read, not seek(0): after a seek, Matroska/Opus frames come back stamped one
            # packet late.
            with av.open(str(path)) as again:
                stream = again.streams.audio[0]
                for frame in again.decode(stream):
                    if audio_start is None and frame.pts is not None:
                        audio_start = Fraction(frame.pts) * stream.time_base
                    samples += frame.samples
        last_pts: dict[int, int] = {}
        monotonic = True
        for packet in container.demux():
            if packet.dts is None:
                continue
            if packet.stream.index in last_pts and packet.dts <= last_pts[packet.stream.index]:
                monotonic = False
            last_pts[packet.stream.index] = packet.dts
        return Decoded(
            container=container.format.name,
            indices=indices,
            times=times,
            video_codec=video.codec_context.name,
            width=video.codec_context.width,
            height=video.codec_context.height,
            pix_fmt=pix_fmt,
            rotation=rotation,
            video_duration=(times[-1] + last_duration - times[0]) if times else Fraction(0),
            dts_monotonic=monotonic,
            audio_codec=audio.codec_context.name if audio else None,
            audio_rate=audio.codec_context.sample_rate if audio else None,
            audio_samples=samples,
            audio_start=audio_start,
            audio_frame_size=(audio.codec_context.frame_size or 1024) if audio else 0,
        )


def atom_order(path: Path) -> list[str]:
    """Top-level MP4/MOV box types in file order (to check that moov comes before mdat)."""
    order, data = [], Path(path).read_bytes()
    at = 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        order.append(kind)
        if size < 8:
            break
        at += size
    return order


def beep_onsets(path: Path) -> list[float]:
    """Output presentation times (seconds) where a beep starts: the first channel rising from silence.

    Times count from the output's time zero, not from its first decoded sample, so audio that
    starts late or early shows up as shifted onsets. The first decoded frame's pts is the anchor:
    decoders drop the encoder's priming samples (AAC's edit list, Opus's pre-skip) and stamp the
    first frame they return with its presentation time, whereas the first packet's pts (-1024
    samples for AAC in MP4, about -6.5 ms for Opus in WebM) is before the audible start.
    """
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        frames = list(container.decode(stream))
    first = frames[0].pts if frames and frames[0].pts is not None else 0
    origin = float(first * frames[0].time_base) if frames else 0.0
    loud = np.abs(np.concatenate([_first_channel(frame) for frame in frames])) > 0.1
    onsets, last_loud = [], -rate
    for i in np.flatnonzero(loud):
        if i - last_loud > rate // 50:
            onsets.append(origin + float(i / rate))
        last_loud = i
    return onsets


def _first_channel(frame: av.AudioFrame) -> np.ndarray:
    data = frame.to_ndarray()
    channel = data[0] if frame.format.is_planar else data[0][:: len(frame.layout.channels)]
    return channel.astype(np.float32) / (32768.0 if data.dtype == np.int16 else 1.0)
