"""Render benchmark: our engine (CPU backend) against the ffmpeg CLI, same input, same settings.

Both sides run as subprocesses, one after the other, so wall time and peak RSS (from wait4) are
measured the same way. Encoder options come from the contract's quality table, so both sides
encode identically; the cuts are frame-exact on both (ours by design, ffmpeg via trim/atrim +
concat, or output -ss/-to in clips mode), and the table shows both frame counts to prove it.

    uv run python bench/render.py [--quick] [--json PATH]

Cases: (a) 1080p H.264 -> 720p H.264 `standard`, three cuts joined; (b) the same to VP9/Opus
webm; (c) five clips (ours: a ZIP; ffmpeg: five files from one process). Then case (a) on a
source ten times longer (six with --quick), for our peak RSS against input length.
Sources (testsrc2 + sine) and outputs go to bench/out/ (gitignored); sources are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from gpu_worker.contract import Codec, Format, Quality, Resolution, audio_spec, encoder_preset, fit_size

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SOURCE_SIZE = (1920, 1080)
SOURCE_FPS = 30
RESOLUTION = Resolution.P720
QUALITY = Quality.STANDARD

Cut = tuple[Fraction, Fraction]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    format: Format
    codec: Codec
    clips: bool


CASES = (
    Case("a: 3 cuts -> 720p h264/aac mp4", Format.MP4, Codec.H264, clips=False),
    Case("b: 3 cuts -> 720p vp9/opus webm", Format.WEBM, Codec.VP9, clips=False),
    Case("c: 5 clips -> 720p h264/aac", Format.MP4, Codec.H264, clips=True),
)


@dataclass(frozen=True, slots=True)
class Run:
    """One side of one case: wall time, peak RSS of the process tree, output frames and bytes."""

    wall_s: float
    peak_rss_mib: float
    frames: int
    size_bytes: int

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s


# ---------------------------------------------------------------------------------------------
# Setup


def ensure_ffmpeg() -> str:
    """The ffmpeg CLI, installed from Debian when missing (the bench runs as root)."""
    if shutil.which("ffmpeg") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "ffmpeg"], check=True, env=env, stdout=subprocess.DEVNULL)
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    return ffmpeg


def make_source(ffmpeg: str, seconds: int) -> Path:
    """A 1080p30 H.264 + stereo AAC test file (2 s GOP, like a camera or phone export)."""
    path = OUT / f"source-{seconds}s.mp4"
    if path.exists():
        return path
    width, height = SOURCE_SIZE
    partial = path.with_suffix(".partial.mp4")
    command = [*_ffmpeg_head(ffmpeg), "-f", "lavfi", "-i"]
    command += [f"testsrc2=size={width}x{height}:rate={SOURCE_FPS}", "-f", "lavfi", "-i"]
    command += ["sine=frequency=440:sample_rate=48000", "-t", str(seconds), "-c:v", "libx264"]
    command += ["-preset", "veryfast", "-g", str(2 * SOURCE_FPS), "-pix_fmt", "yuv420p"]
    command += ["-c:a", "aac", "-ac", "2", "-b:a", "192k", str(partial)]
    subprocess.run(command, check=True)
    partial.rename(path)
    return path


def joined_cuts(seconds: int) -> list[Cut]:
    """Three cuts of 15 % each, starting off the keyframes (frame-exactness is part of the work)."""
    d = Fraction(seconds)
    return [(d * f + off, d * f + off + d * Fraction(15, 100)) for f, off in _starts((10, 45, 75))]


def clip_cuts(seconds: int) -> list[Cut]:
    """Five clips of 8 % each, spread over the source."""
    d = Fraction(seconds)
    return [(d * f + off, d * f + off + d * Fraction(8, 100)) for f, off in _starts((5, 24, 43, 62, 81))]


def _starts(percents: tuple[int, ...]) -> list[tuple[Fraction, Fraction]]:
    offsets = (Fraction(351, 1000), Fraction(517, 1000), Fraction(211, 1000))
    return [(Fraction(p, 100), offsets[i % len(offsets)]) for i, p in enumerate(percents)]


def seconds_text(value: Fraction) -> str:
    return f"{float(value):.3f}"


# ---------------------------------------------------------------------------------------------
# The two sides


def ours_command(case: Case, source: Path, output: Path, cuts: list[Cut]) -> list[str]:
    segments = ",".join(f"{seconds_text(s)}:{seconds_text(e)}" for s, e in cuts)
    return [
        sys.executable,
        "-m",
        "backend",
        "render",
        str(source),
        "-o",
        str(output),
        "--segments",
        segments,
        "--mode",
        "clips" if case.clips else "single",
        "--resolution",
        str(RESOLUTION),
        "--quality",
        str(QUALITY),
        "--format",
        str(case.format),
        "--codec",
        str(case.codec),
        "--encoder",
        "cpu",
        "--json",
    ]


def encode_options(case: Case) -> list[str]:
    """ffmpeg CLI options for the contract's video and audio encoders (what our engine uses)."""
    preset = encoder_preset(case.codec, "cpu", QUALITY)
    video = ["-c:v", preset.encoder, "-pix_fmt", preset.pix_fmt]
    for key, value in preset.options.items():
        video += ["-b:v" if key == "b" else f"-{key}:v", value]
    spec = audio_spec(case.format, case.codec)
    audio = ["-c:a", spec.encoder, "-b:a", str(spec.bit_rate)]
    if spec.fixed_rate:
        audio += ["-ar", str(spec.fixed_rate)]
    container = ["-movflags", "+faststart"] if case.format is Format.MP4 else []
    return video + audio + container


def ffmpeg_joined_command(ffmpeg: str, case: Case, source: Path, output: Path, cuts: list[Cut]) -> list[str]:
    """trim/atrim per cut, concat, then one scale: frame- and sample-exact like our engine."""
    width, height = fit_size(*SOURCE_SIZE, RESOLUTION)
    parts, pads = [], ""
    for i, (start, end) in enumerate(cuts):
        span = f"start={seconds_text(start)}:end={seconds_text(end)}"
        parts.append(f"[0:v]trim={span},setpts=PTS-STARTPTS[v{i}]")
        parts.append(f"[0:a]atrim={span},asetpts=PTS-STARTPTS[a{i}]")
        pads += f"[v{i}][a{i}]"
    parts.append(f"{pads}concat=n={len(cuts)}:v=1:a=1[vc][a]")
    parts.append(f"[vc]scale={width}:{height}:flags=bicubic[v]")
    return [
        *_ffmpeg_head(ffmpeg, source),
        *["-filter_complex", ";".join(parts), "-map", "[v]", "-map", "[a]"],
        *encode_options(case),
        str(output),
    ]


def ffmpeg_clips_command(ffmpeg: str, case: Case, source: Path, out_dir: Path, cuts: list[Cut]) -> list[str]:
    """One process, five outputs, each with -ss/-to after -i (decode and drop: frame-exact)."""
    width, height = fit_size(*SOURCE_SIZE, RESOLUTION)
    command = _ffmpeg_head(ffmpeg, source)
    for i, (start, end) in enumerate(cuts, start=1):
        command += ["-map", "0:v", "-map", "0:a", "-ss", seconds_text(start), "-to", seconds_text(end)]
        command += ["-vf", f"scale={width}:{height}:flags=bicubic", *encode_options(case)]
        command.append(str(out_dir / f"clip-{i}.{case.format}"))
    return command


def _ffmpeg_head(ffmpeg: str, source: Path | None = None) -> list[str]:
    head = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    return head if source is None else [*head, "-i", str(source)]


# ---------------------------------------------------------------------------------------------
# Measuring


def measure(command: list[str], log: Path) -> tuple[float, float]:
    """Run to completion; (wall seconds, peak RSS in MiB of the process and its children)."""
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=sink, stderr=sink, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {process.returncode}: {log.read_text()[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def video_frames(path: Path) -> int:
    """Frames in a media file (video packets: one per frame for every codec here), or in a ZIP's files."""
    if path.suffix == ".zip":
        with tempfile.TemporaryDirectory(dir=OUT) as scratch, zipfile.ZipFile(path) as archive:
            archive.extractall(scratch)
            return sum(video_frames(Path(scratch) / name) for name in archive.namelist())
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(video=0) if p.size)


def run_ours(case: Case, source: Path, cuts: list[Cut], tag: str) -> Run:
    output = OUT / f"ours-{tag}.{'zip' if case.clips else case.format}"
    wall, rss = measure(ours_command(case, source, output, cuts), OUT / f"ours-{tag}.log")
    return Run(wall, rss, video_frames(output), output.stat().st_size)


def run_ffmpeg(ffmpeg: str, case: Case, source: Path, cuts: list[Cut], tag: str) -> Run:
    if case.clips:
        out_dir = OUT / f"ffmpeg-{tag}"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        command = ffmpeg_clips_command(ffmpeg, case, source, out_dir, cuts)
    else:
        output = OUT / f"ffmpeg-{tag}.{case.format}"
        command = ffmpeg_joined_command(ffmpeg, case, source, output, cuts)
    wall, rss = measure(command, OUT / f"ffmpeg-{tag}.log")
    outputs = sorted(out_dir.iterdir()) if case.clips else [output]
    return Run(wall, rss, sum(map(video_frames, outputs)), sum(p.stat().st_size for p in outputs))


# ---------------------------------------------------------------------------------------------
# Report


def versions(ffmpeg: str) -> dict[str, str]:
    cli = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True).stdout
    return {
        "ffmpeg_cli": cli.splitlines()[0],
        "pyav": av.__version__,
        "pyav_ffmpeg": ".".join(map(str, av.library_versions["libavcodec"])) + " (libavcodec)",
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "machine": platform.platform(),
    }


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [row(header, widths), row(["-" * w for w in widths], widths)]
    return "\n".join(lines + [row(r, widths) for r in rows])


def mib(size: int) -> str:
    return f"{size / 2**20:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 s source (60 s for the memory check)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    short, long = (10, 60) if args.quick else (60, 600)

    OUT.mkdir(parents=True, exist_ok=True)
    ffmpeg = ensure_ffmpeg()
    source = make_source(ffmpeg, short)
    results = []
    for case in CASES:
        cuts = clip_cuts(short) if case.clips else joined_cuts(short)
        tag = f"{case.name[0]}-{short}s"
        print(f"running {case.name} on {short} s ...", file=sys.stderr, flush=True)
        ours, theirs = run_ours(case, source, cuts, tag), run_ffmpeg(ffmpeg, case, source, cuts, tag)
        results.append({"case": case.name, "source_s": short, "ours": ours, "ffmpeg": theirs})

    long_source = make_source(ffmpeg, long)
    print(f"running {CASES[0].name} on {long} s (memory) ...", file=sys.stderr, flush=True)
    memory = {
        short: results[0]["ours"],
        long: run_ours(CASES[0], long_source, joined_cuts(long), f"a-{long}s"),
    }

    header = ["case", "ours s", "ffmpeg s", "ffmpeg/ours", "ours fps", "ffmpeg fps"]
    header += ["ours RSS MiB", "ffmpeg RSS MiB", "ours MiB", "ffmpeg MiB", "frames ours/ffmpeg"]
    rows = [
        [
            f"{r['case']} ({r['source_s']} s src)",
            f"{r['ours'].wall_s:.2f}",
            f"{r['ffmpeg'].wall_s:.2f}",
            f"{r['ffmpeg'].wall_s / r['ours'].wall_s:.2f}",
            f"{r['ours'].fps:.1f}",
            f"{r['ffmpeg'].fps:.1f}",
            f"{r['ours'].peak_rss_mib:.0f}",
            f"{r['ffmpeg'].peak_rss_mib:.0f}",
            mib(r["ours"].size_bytes),
            mib(r["ffmpeg"].size_bytes),
            f"{r['ours'].frames}/{r['ffmpeg'].frames}",
        ]
        for r in results
    ]
    print(table(header, rows))
    print()
    mem_rows = [
        [f"{seconds} s source", str(run.frames), f"{run.wall_s:.2f}", f"{run.peak_rss_mib:.0f}"]
        for seconds, run in memory.items()
    ]
    print(table(["case a, ours", "frames", "wall s", "peak RSS MiB"], mem_rows))

    if args.json:
        document = {
            "quick": args.quick,
            "settings": {
                "resolution": str(RESOLUTION),
                "quality": str(QUALITY),
                "source": "1080p30 h264+aac",
            },
            "versions": versions(ffmpeg),
            "cases": [
                {
                    **r,
                    "ours": _run_json(r["ours"]),
                    "ffmpeg": _run_json(r["ffmpeg"]),
                    "ratio_ffmpeg_over_ours": round(r["ffmpeg"].wall_s / r["ours"].wall_s, 3),
                }
                for r in results
            ],
            "memory_vs_input_length": [{"source_s": s, **_run_json(run)} for s, run in memory.items()],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


def _run_json(run: Run) -> dict[str, float | int]:
    return {**asdict(run), "fps": round(run.fps, 2)}


if __name__ == "__main__":
    main()
