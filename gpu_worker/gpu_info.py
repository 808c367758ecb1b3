"""`vexport gpu-info`: the capability probe as indented JSON (GPUs, driver, NVENC/NVDEC per codec)."""

from __future__ import annotations

import msgspec

from gpu_worker.encoders.probe import probe_gpus


def gpu_info_json(refresh: bool = False) -> str:
    """What this machine's GPUs can encode and decode, and why not; never raises."""
    return msgspec.json.format(probe_gpus(refresh=refresh).to_json(), indent=2).decode()
