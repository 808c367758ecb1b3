"""Source media shared by the engine tests (written once per session, tiny) and a render helper."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from gpu_worker.contract import RenderRequest, decode_request
from gpu_worker.encoders.cpu import CpuBackend
from gpu_worker.engine import RenderResult, render
from tests.media import MadeVideo, make_video

Render = Callable[..., RenderResult]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cfr25(media_dir: Path) -> MadeVideo:
    """2 s, 25 fps, 320x180, H.264 with B-frames and a keyframe every second, AAC stereo."""
    return make_video(media_dir / "cfr25.mp4", seconds=2, fps=25)


@pytest.fixture(scope="session")
def beeps(media_dir: Path) -> MadeVideo:
    """Like cfr25 but the audio is silence with beeps starting at 0.4 s and 1.1 s."""
    return make_video(media_dir / "beeps.mp4", seconds=2, fps=25, beeps=(0.4, 1.1))


@pytest.fixture(scope="session")
def ntsc(media_dir: Path) -> MadeVideo:
    return make_video(media_dir / "ntsc.mov", seconds=2, fps=Fraction(30000, 1001), gop=30)


@pytest.fixture(scope="session")
def fps60(media_dir: Path) -> MadeVideo:
    return make_video(media_dir / "fps60.mp4", seconds=1, fps=60, gop=60, audio_rate=44100)


@pytest.fixture(scope="session")
def vfr(media_dir: Path) -> MadeVideo:
    return make_video(media_dir / "vfr.mp4", seconds=2, fps=30, vfr=True)


@pytest.fixture(scope="session")
def rotated(media_dir: Path) -> MadeVideo:
    """640x360 coded, shown turned 90° (portrait), like a phone video."""
    return make_video(media_dir / "rotated.mp4", seconds=1, width=640, height=360, rotation=90)


@pytest.fixture(scope="session")
def silent(media_dir: Path) -> MadeVideo:
    return make_video(media_dir / "silent.mp4", seconds=1, audio=False)


@pytest.fixture(scope="session")
def ten_bit(media_dir: Path) -> MadeVideo:
    return make_video(media_dir / "ten_bit.mp4", seconds=1, codec="hevc", pix_fmt="yuv420p10le")


@pytest.fixture(scope="session")
def odd(media_dir: Path) -> MadeVideo:
    return make_video(media_dir / "odd.webm", seconds=1, width=321, height=181, codec="vp9")


@pytest.fixture(scope="session")
def late_video(media_dir: Path) -> MadeVideo:
    """Audio from 0 s, video only from 1 s."""
    return make_video(media_dir / "late_video.mp4", seconds=2, audio_only_first_s=1)


@pytest.fixture(scope="session")
def req() -> Callable[..., RenderRequest]:
    """Build a request from (start, end) decimal strings and preset options; draft unless given."""

    def _req(segments: list[tuple[str, str]] | None = None, **options: str) -> RenderRequest:
        spans = [{"start": s, "end": e} for s, e in segments or []]
        return decode_request({"segments": spans, "quality": "draft", **options})

    return _req


@pytest.fixture
def run(tmp_path: Path) -> Render:
    """Render with the CPU backend into tmp_path; the output name follows the request's format."""

    def _run(source: MadeVideo, req: RenderRequest, **kwargs: object) -> RenderResult:
        suffix = "zip" if req.mode == "clips" else str(req.format)
        return render(req, source.path, tmp_path / f"out.{suffix}", backend=CpuBackend(), **kwargs)

    return _run
