"""Every container/codec pair the contract offers, rendered with two joins and decoded back."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest

from gpu_worker.contract import RenderRequest
from gpu_worker.engine import RenderResult
from tests.media import MadeVideo, atom_order, beep_onsets, decode_output

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
