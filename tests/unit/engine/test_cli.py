"""`vexport render` / `vexport gpu-info`: what they print, what they write and how they exit."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpu_worker.cli import gpu_info_command, render_command
from tests.fake_gpu import without_driver
from tests.media import MadeVideo, decode_indices, make_garbage, make_video

SUMMARY_FIELDS = [
    "frames",
    "duration",
    "size_bytes",
    "encoder_requested",
    "encoder_used",
    "fallback_code",
    "fallback_reason",
    "wall_s",
    "fps",
    "width",
    "height",
    "codec",
    "output",
]


def test_json_summary_describes_the_output_which_holds_exactly_the_cut_frames(
    cfr25: MadeVideo, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(
        render_command,
        [str(cfr25.path), "-o", str(out), "--segments", "0.5:1,1.2:1.8", "--encoder", "cpu", "--json"],
    )
    assert (result.exit_code, result.stderr) == (0, "")
    summary = json.loads(result.stdout)
    assert list(summary) == SUMMARY_FIELDS
    assert summary | {"wall_s": None, "fps": None} == {
        "frames": 27,
        "duration": 1.08,
        "size_bytes": out.stat().st_size,
        "encoder_requested": "cpu",
        "encoder_used": "libx264",
        "fallback_code": None,
        "fallback_reason": None,
        "wall_s": None,
        "fps": None,
        "width": 320,
        "height": 180,
        "codec": "h264",
        "output": str(out),
    }
    assert summary["wall_s"] > 0
    assert summary["fps"] == round(27 / summary["wall_s"], 2)
    assert decode_indices(out) == (
        cfr25.frames_in(Fraction(1, 2), Fraction(1)) + cfr25.frames_in(Fraction(6, 5), Fraction(9, 5))
    )


@without_driver
def test_summary_line_names_the_encoder_and_why_it_is_not_the_gpu(cfr25: MadeVideo, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(render_command, [str(cfr25.path), "-o", str(out), "--quality", "draft"])
    assert result.exit_code == 0
    pattern = (
        r"rendered 50 frames in \d+\.\d s \(\d+\.\d fps\) with libx264, fell back: no NVIDIA driver "
        rf"→ {re.escape(str(out))} \(\d+\.\d kB\)\n"
    )
    assert re.fullmatch(pattern, result.stdout)


def test_clips_mode_writes_a_zip_with_one_file_per_segment(cfr25: MadeVideo, tmp_path: Path) -> None:
    out = tmp_path / "clips.zip"
    result = CliRunner().invoke(
        render_command,
        [str(cfr25.path), "-o", str(out), "--segments", "0:0.4,1:1.5", "--mode", "clips", "--json"],
    )
    assert result.exit_code == 0
    first, second = cfr25.frames_in(Fraction(0), Fraction(2, 5)), cfr25.frames_in(Fraction(1), Fraction(3, 2))
    assert json.loads(result.stdout)["frames"] == len(first) + len(second) == 10 + 13
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert names == [
            "clip-001_00-00-00.000-00-00-00.400.mp4",
            "clip-002_00-00-01.000-00-00-01.500.mp4",
        ]
        archive.extractall(tmp_path / "unzipped")
    assert decode_indices(tmp_path / "unzipped" / names[0]) == first
    assert decode_indices(tmp_path / "unzipped" / names[1]) == second


@pytest.mark.parametrize(
    ("options", "option", "error"),
    [
        ("--segments 0:1,2", "--segments", "segments[1]: expected START:END in seconds, got '2'"),
        ("--segments 0:x", "--segments", "segments[0].end: must be a number of seconds, e.g. 12.5"),
        ("--segments 1:0.5", "--segments", "segments[0].end: must be after start"),
        ("--segments 1:3", "--segments", "segments[0].end: is past the end of the video (2 s)"),
        ("--mode clips", "--segments", "segments: clips mode needs at least one segment"),
        ("--format webm --codec h264", "--codec", "codec: h264 cannot go in webm (allowed: vp9, av1)"),
        ("--codec av1 --quality lossless", "--quality", "quality: lossless is not available for av1"),
        ("--encoder fast", "--encoder", "'fast' is not one of 'auto', 'gpu', 'cpu'."),
        ("--strict", "--strict", "only applies with --encoder gpu"),
    ],
)
def test_bad_options_exit_2_naming_the_field(
    cfr25: MadeVideo, tmp_path: Path, options: str, option: str, error: str
) -> None:
    args = [str(cfr25.path), "-o", str(tmp_path / "out.mp4"), *options.split()]
    result = CliRunner().invoke(render_command, args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '{option}': {error}"
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_unreadable_input_exits_1_with_the_media_error(tmp_path: Path) -> None:
    source = make_garbage(tmp_path / "garbage.mp4")
    result = CliRunner().invoke(render_command, [str(source), "-o", str(tmp_path / "out.mp4")])
    assert result.exit_code == 1
    assert result.stderr == "Error: the file is not a readable video (corrupt, truncated or unsupported)\n"
    assert list(tmp_path.iterdir()) == [source]


@without_driver
def test_strict_gpu_without_a_gpu_exits_1_saying_why(cfr25: MadeVideo, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        render_command, [str(cfr25.path), "-o", str(tmp_path / "out.mp4"), "--encoder", "gpu", "--strict"]
    )
    assert result.exit_code == 1
    assert result.stderr == "Error: GPU encoding required but unavailable: no NVIDIA driver\n"
    assert list(tmp_path.iterdir()) == []


@without_driver
def test_gpu_info_prints_the_probe_as_json() -> None:
    result = CliRunner().invoke(gpu_info_command, [])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "driver_present": False,
        "driver_version": None,
        "library_version": None,
        "listed_by": None,
        "reason": "no NVIDIA driver",
        "gpus": [],
    }


def test_ctrl_c_cancels_removes_the_partial_output_and_exits_130(tmp_path: Path) -> None:
    source = make_video(tmp_path / "long.mp4", seconds=20, width=640, height=360, gop=50)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    command = "from gpu_worker.cli import render_command; render_command()"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            command,
            str(source.path),
            "-o",
            str(out_dir / "out.mp4"),
            "--quality",
            "high",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = out_dir / ".out.mp4.partial"
    deadline = time.monotonic() + 60
    while not partial.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert partial.exists(), "the render never started writing"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 130
    assert stdout == ""
    assert stderr == "\ncancelling...\ncancelled; no output written\n"
    assert list(out_dir.iterdir()) == []
