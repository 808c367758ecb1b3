"""The stored display name of an upload (`sanitize_filename`, as `VideoService` calls it) drops every
control and bidi-control character, so no name can reorder or hide text on the pages."""

from __future__ import annotations

import pytest

from gpu_worker.store import sanitize_filename

CONTROLS = ["\x00", "\x1b", "\x7f", "\x85"]  # C0, DEL and C1 (Unicode category Cc)
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)]


@pytest.mark.parametrize("char", CONTROLS + BIDI, ids=lambda c: f"U+{ord(c):04X}")
def test_control_and_bidi_characters_are_dropped(char: str) -> None:
    assert sanitize_filename(f"holiday{char}clip.mp4", default="video") == "holidayclip.mp4"


def test_a_name_that_is_left_empty_gets_the_default() -> None:
    assert sanitize_filename("\u202e\x1b", default="video") == "video"
