"""`vexport render` and `vexport gpu-info`: the render engine from a shell, through `run_render`.

Options are checked by the contract (the same rules as the API), so an error names the request
field: exit 2 for a bad option, 1 for a source the engine cannot read, 130 after Ctrl-C. Stdout
carries only the summary (a line, or JSON with --json); progress goes to stderr on a terminal.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any

import click
import msgspec

from gpu_worker.contract import (
    Codec,
    ContractError,
    EncoderChoice,
    Format,
    Mode,
    ProgressReport,
    Quality,
    RenderRequest,
    Resolution,
    decode_request,
)
from gpu_worker.encoders.select import GpuUnavailableError
from gpu_worker.engine.errors import RenderCancelled
from gpu_worker.engine.run import RenderOutcome, run_render
from gpu_worker.engine.source import MediaError
from gpu_worker.gpu_info import gpu_info_json

EXIT_INTERRUPTED = 130
_DEFAULTS = RenderRequest()
_MSGSPEC_PATH = re.compile(r"^(?P<message>.*) - at `\$\.(?P<field>[^`]+)`$")


def _choice(enum: type[StrEnum]) -> click.Choice:
    return click.Choice([member.value for member in enum])


def _option_error(field: str, message: str) -> click.BadParameter:
    """A usage error (exit 2) for contract field `field`, shown against the option that sets it."""
    option = "--" + re.split(r"[\[.]", field, maxsplit=1)[0]
    return click.BadParameter(f"{field}: {message}", param_hint=f"'{option}'")


def parse_segments(text: str | None) -> list[dict[str, str]]:
    """'0:5,10:12.5' -> [{'start': '0', 'end': '5'}, ...]; the contract checks the numbers."""
    if text is None:
        return []
    segments = []
    for i, item in enumerate(text.split(",")):
        start, sep, end = item.partition(":")
        if not sep or ":" in end:
            raise _option_error(f"segments[{i}]", f"expected START:END in seconds, got {item.strip()!r}")
        segments.append({"start": start.strip(), "end": end.strip()})
    return segments


def build_request(segments: str | None, **presets: str | None) -> RenderRequest:
    """The request the options describe, validated by the contract (not yet against the source)."""
    data: dict[str, Any] = {"segments": parse_segments(segments)}
    data.update((key, value) for key, value in presets.items() if value is not None)
    try:
        request = decode_request(data)
        request.validate()
    except msgspec.ValidationError as exc:
        match = _MSGSPEC_PATH.match(str(exc))
        if match is None:
            raise click.UsageError(str(exc)) from exc
        raise _option_error(match["field"], match["message"]) from exc
    except ContractError as exc:
        raise _option_error(exc.field, exc.message) from exc
    return request


def _show_progress(report: ProgressReport) -> None:
    eta = f", {report.eta_s:.0f} s left" if report.eta_s is not None else ""
    line = (
        f"{report.phase} {report.percent:5.1f}% "
        f"({report.frames_done}/{report.frames_total} frames, {report.fps:.1f} fps{eta})"
    )
    click.echo(f"\r{line}\x1b[K", err=True, nl=False)


def _render_cancellable(request: RenderRequest, source: Path, output: Path, **options: Any) -> RenderOutcome:
    """Render in a thread so that Ctrl-C can set the cancel event and let the engine clean up."""
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="render") as pool:
        future = pool.submit(run_render, request, source, output, cancel=cancel, **options)
        try:
            return future.result()
        except KeyboardInterrupt:
            cancel.set()
            click.echo("\ncancelling...", err=True)
            return future.result()  # RenderCancelled, unless the render had just finished


def human_size(size: int) -> str:
    """Decimal units, as file managers show sizes: 950 B, 12.3 kB, 4.5 MB."""
    if size < 1000:
        return f"{size} B"
    exponent = min(int(math.log10(size)) // 3, 4)
    return f"{size / 1000**exponent:.1f} {('kB', 'MB', 'GB', 'TB')[exponent - 1]}"


def summary(outcome: RenderOutcome, wall_s: float) -> dict[str, Any]:
    """The --json document: what was written, by which encoder, how fast."""
    result = outcome.result
    wall_s = round(wall_s, 3)
    return {
        "frames": result.frames,
        "duration": round(float(result.duration), 6),
        "size_bytes": result.size_bytes,
        "encoder_requested": outcome.encoder_requested,
        "encoder_used": outcome.encoder_used,
        "fallback_code": outcome.fallback.code if outcome.fallback else None,
        "fallback_reason": outcome.fallback.detail if outcome.fallback else None,
        "wall_s": wall_s,
        "fps": round(result.frames / wall_s, 2) if wall_s > 0 else 0.0,
        "width": result.width,
        "height": result.height,
        "codec": result.codec,
        "output": str(result.path),
    }


def summary_line(info: dict[str, Any]) -> str:
    fell_back = f", fell back: {info['fallback_reason']}" if info["fallback_reason"] else ""
    return (
        f"rendered {info['frames']} frames in {info['wall_s']:.1f} s ({info['fps']:.1f} fps) "
        f"with {info['encoder_used']}{fell_back} → {info['output']} ({human_size(info['size_bytes'])})"
    )


@click.command("render")
@click.argument("source", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (a ZIP in clips mode).",
)
@click.option(
    "--segments",
    metavar="START:END,...",
    help="Cut list in source seconds, e.g. 0:5,10:12.5 (default: the whole video).",
)
@click.option(
    "--mode",
    type=_choice(Mode),
    default=_DEFAULTS.mode.value,
    show_default=True,
    help="single: segments joined into one file; clips: one file per segment, in a ZIP.",
)
@click.option("--resolution", type=_choice(Resolution), default=_DEFAULTS.resolution.value, show_default=True)
@click.option("--quality", type=_choice(Quality), default=_DEFAULTS.quality.value, show_default=True)
@click.option("--format", "format_", type=_choice(Format), default=_DEFAULTS.format.value, show_default=True)
@click.option("--codec", type=_choice(Codec), help="Video codec (default: the format's first one).")
@click.option("--encoder", type=_choice(EncoderChoice), default=_DEFAULTS.encoder.value, show_default=True)
@click.option("--strict", is_flag=True, help="With --encoder gpu: fail instead of falling back to the CPU.")
@click.option("--gpu", "gpu_index", type=click.IntRange(min=0), help="Use only this GPU index.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def render_command(
    source: Path,
    output: Path,
    segments: str | None,
    mode: str,
    resolution: str,
    quality: str,
    format_: str,
    codec: str | None,
    encoder: str,
    strict: bool,
    gpu_index: int | None,
    as_json: bool,
) -> None:
    """Render segments of INPUT into one file, or into a ZIP of clips."""
    request = build_request(
        segments,
        mode=mode,
        resolution=resolution,
        quality=quality,
        format=format_,
        codec=codec,
        encoder=encoder,
    )
    if strict and request.encoder is not EncoderChoice.GPU:
        raise click.BadParameter("only applies with --encoder gpu", param_hint="'--strict'")
    show_progress = sys.stderr.isatty()
    started = time.monotonic()
    try:
        outcome = _render_cancellable(
            request,
            source,
            output,
            choice=request.encoder,
            strict=strict,
            gpu_index=gpu_index,
            progress=_show_progress if show_progress else None,
        )
    except ContractError as exc:  # segments that do not fit this source
        raise _option_error(exc.field, exc.message) from exc
    except (MediaError, GpuUnavailableError) as exc:
        raise click.ClickException(str(exc)) from exc
    except RenderCancelled:
        click.echo("cancelled; no output written", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    finally:
        if show_progress:
            click.echo("\r\x1b[K", err=True, nl=False)
    info = summary(outcome, time.monotonic() - started)
    click.echo(json.dumps(info) if as_json else summary_line(info))


@click.command("gpu-info")
def gpu_info_command() -> None:
    """What this machine's NVIDIA GPUs can encode and decode (JSON), and why not."""
    click.echo(gpu_info_json())
