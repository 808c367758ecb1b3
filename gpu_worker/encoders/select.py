"""Which backend renders a job, and why it is not the GPU when it is not.

`select_backend` turns the job's choice (auto|gpu|cpu), the output codec and the worker's probe
report into a `Selection`: the backend to build plus what the export records (encoder_requested,
encoder_used, and the typed fallback). `after_gpu_failure` is the re-run on the CPU after the GPU path
raised `GpuBackendError` mid-render. Backends are imported when built, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpu_worker.contract import Codec, EncoderChoice, Quality, encoder_preset
from gpu_worker.encoders.base import Backend, Device
from gpu_worker.encoders.nvenc import GpuBackendError, codec_label
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.fallback import Fallback, FallbackCode

NVENC_CODECS = frozenset({Codec.H264, Codec.HEVC, Codec.AV1})


class GpuUnavailableError(RuntimeError):
    """GPU encoding was required (choice 'gpu', strict) but cannot be done; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"GPU encoding required but unavailable: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen backend and the export's encoder fields. `encoder_used` names the encoder:
    'h264_nvenc@GPU0' on the GPU, the contract's software encoder (e.g. 'libx264') on the CPU."""

    device: Device
    codec: str
    encoder_requested: str
    encoder_used: str
    fallback: Fallback | None = None
    gpu_index: int | None = None
    strict: bool = False
    decode_support: tuple[tuple[str, bool, str | None], ...] = ()

    def backend(self) -> Backend:
        """Build the backend (imports PyAV's CPU backend or the NVENC backend only now)."""
        if self.device == "cpu":
            from gpu_worker.encoders.cpu import CpuBackend

            return CpuBackend()
        from gpu_worker.encoders.nvenc import NvencBackend

        support = {codec: (works, reason) for codec, works, reason in self.decode_support}
        return NvencBackend(self.codec, self.gpu_index or 0, support)


def cpu_encoder_name(codec: str) -> str:
    """The software encoder the CPU backend uses for `codec` (the same for every quality)."""
    return encoder_preset(codec, "cpu", Quality.STANDARD).encoder


def no_nvenc_reason(codec: str) -> str | None:
    """Why NVENC can never encode `codec` (VP9, ProRes), or None for the codecs it has."""
    return None if codec in NVENC_CODECS else f"NVENC has no {codec_label(codec)} encoder"


def select_backend(
    choice: EncoderChoice | str,
    codec: Codec | str,
    report: GpuReport,
    *,
    strict: bool = False,
    gpu_index: int | None = None,
) -> Selection:
    """auto: the GPU when its NVENC encoded this codec in the probe, else the CPU with the reason.
    gpu: the same, but with `strict` a missing GPU raises `GpuUnavailableError` instead.
    cpu: the CPU, no reason. `gpu_index` limits the GPU to one device (a worker per GPU)."""
    choice, codec = EncoderChoice(choice), Codec(codec)
    cpu = Selection("cpu", codec, choice, cpu_encoder_name(codec))
    if choice is EncoderChoice.CPU:
        return cpu
    reason, code = no_nvenc_reason(codec), FallbackCode.CODEC_UNSUPPORTED
    if reason is None:
        usable = [i for i in report.nvenc_gpus(codec) if gpu_index is None or i == gpu_index]
        if usable:
            index = usable[0]
            decode = tuple((c, s[0], s[1]) for c, s in sorted(report.nvdec_support(index).items()))
            return Selection(
                "gpu",
                codec,
                choice,
                f"{codec}_nvenc@GPU{index}",
                gpu_index=index,
                strict=strict and choice is EncoderChoice.GPU,
                decode_support=decode,
            )
        reason, code = report.nvenc_reason(codec, gpu_index), FallbackCode.GPU_UNAVAILABLE
    if strict and choice is EncoderChoice.GPU:
        raise GpuUnavailableError(reason)
    return replace(cpu, fallback=Fallback(code, reason))


def instead_on_cpu(selection: Selection, reason: str) -> Selection:
    """The CPU render of a GPU selection whose GPU may not be used now (its circuit is open);
    raises when the job demanded the GPU."""
    if selection.strict:
        raise GpuUnavailableError(reason)
    return Selection(
        "cpu",
        selection.codec,
        selection.encoder_requested,
        cpu_encoder_name(selection.codec),
        fallback=Fallback(FallbackCode.CIRCUIT_OPEN, reason),
    )


def after_gpu_failure(selection: Selection, error: GpuBackendError) -> Selection:
    """The CPU re-run after the GPU path failed mid-render; raises when the job demanded the GPU."""
    if selection.device != "gpu":
        raise ValueError("only a GPU selection can fall back to the CPU")
    if selection.strict:
        raise GpuUnavailableError(f"GPU failed mid-render ({error.reason})") from error
    return Selection(
        "cpu",
        selection.codec,
        selection.encoder_requested,
        cpu_encoder_name(selection.codec),
        fallback=Fallback(
            FallbackCode.GPU_FAILED, f"GPU failed mid-render ({error.reason}); re-rendered on CPU"
        ),
    )
