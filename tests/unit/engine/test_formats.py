"""Every container/codec pair the contract offers, rendered with two joins and decoded back."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gpu_worker.contract import RenderRequest
from gpu_worker.engine import RenderResult
from tests.media import MadeVideo, atom_order, beep_onsets, decode_output, make_video

SEGMENTS = [("0.2", "0.6"), ("1.0", "1.24"), ("0", "0.12")]
FRAMES = [*range(5, 15), *range(25, 31), 0, 1, 2]


@pytest.mark.parametrize(
    ("fmt", "codec", "decoder", "audio", "container"),
    [
        ("mp4", "h264", "h264", "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
        ("mp4", "hevc", "hevc", "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
        ("mp4", "av1", "libdav1d", "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
        ("webm", "vp9", "vp9", "opus", "matroska,webm"),
        ("webm", "av1", "libdav1d", "opus", "matroska,webm"),
        ("mov", "h264", "h264", "aac", "mov,mp4,m4a,3gp,3g2,mj2"),
        ("mov", "prores", "prores", "pcm_s16le", "mov,mp4,m4a,3gp,3g2,mj2"),
    ],
)
def test_format_and_codec_render_exact_frames_in_sync(
    cfr25: MadeVideo,
    run: Callable[..., RenderResult],
    req: Callable[..., RenderRequest],
    fmt: str,
    codec: str,
    decoder: str,
    audio: str,
    container: str,
) -> None:
    result = run(cfr25, req(SEGMENTS, format=fmt, codec=codec))
    out = decode_output(result.path)
    assert out.container == container
    assert (out.video_codec, out.audio_codec) == (decoder, audio)
    assert out.indices == FRAMES
    assert (out.indices[0], out.indices[-1]) == (5, 2)
    assert (out.width, out.height) == (320, 180)
    assert result.duration == out.video_duration == Fraction(len(FRAMES), 25)
    assert out.times[0] == 0
    assert out.times == sorted(set(out.times))
    assert out.dts_monotonic
    assert abs(out.audio_duration - out.video_duration) <= Fraction(out.audio_frame_size, out.audio_rate)
    assert out.audio_start is not None
    assert abs(out.audio_start) < Fraction(out.audio_frame_size, out.audio_rate)
    if fmt != "webm":
        order = atom_order(result.path)
        assert order.index("moov") < order.index("mdat")


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "h264"), ("webm", "vp9"), ("mov", "prores")])
def test_audio_is_cut_sample_accurately_at_every_join(
    beeps: MadeVideo,
    run: Callable[..., RenderResult],
    req: Callable[..., RenderRequest],
    fmt: str,
    codec: str,
) -> None:
    """Source beeps at 0.4 s and 1.1 s; cut to [0.2, 0.6) + [1.0, 1.24) they start at 0.2 s and 0.5 s."""
    result = run(beeps, req([("0.2", "0.6"), ("1.0", "1.24")], format=fmt, codec=codec))
    assert beep_onsets(result.path) == pytest.approx([0.2, 0.5], abs=0.001)
    out = decode_output(result.path)
    assert out.audio_start is not None
    assert abs(out.audio_start) < Fraction(out.audio_frame_size, out.audio_rate)


def test_aac_from_matroska_is_continuous_without_clicks(
    tmp_path: Path, run: Callable[..., RenderResult], req: Callable[..., RenderRequest]
) -> None:
    """Matroska stamps AAC frames in whole milliseconds (each up to 24 samples off at 48 kHz); the
    samples must still follow each other without gaps or overlaps: a pure 440 Hz tone stays smooth."""
    source = make_video(tmp_path / "tone.mkv", seconds=1.5)
    result = run(source, req([("0.2", "1.32")]))
    with av.open(str(result.path)) as container:
        x = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    edge = 48000 // 50  # the 5 ms fades at the ends of the span bend the wave on purpose
    assert len(x) >= round(1.12 * 48000)
    assert np.abs(np.diff(x[edge:-edge], 2)).max() < 0.01
