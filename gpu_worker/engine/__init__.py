"""The pure, synchronous render engine (never imports the web side)."""

from gpu_worker.engine.errors import RenderCancelled
from gpu_worker.engine.pipeline import RenderResult, render
from gpu_worker.engine.source import MediaError, MediaInfo, probe

__all__ = ["MediaError", "MediaInfo", "RenderCancelled", "RenderResult", "probe", "render"]
