"""Engine outcomes other than success; `source.MediaError` covers bad input."""


class RenderCancelled(Exception):
    """The cancel event was set; the engine stopped and removed its partial output."""
