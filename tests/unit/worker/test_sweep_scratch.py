"""The scratch sweeper removes what crashed renders left behind, and nothing recent."""

from __future__ import annotations

import os
from pathlib import Path

from gpu_worker.worker import sweep_scratch

NOW = 1_800_000_000.0
DAY = 24 * 3600


def touch(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def test_old_files_and_their_emptied_folders_go_recent_ones_stay(tmp_path: Path) -> None:
    old = touch(tmp_path / "render-1" / "out.mp4.partial", 2 * DAY)
    recent = touch(tmp_path / "render-2" / "out.mp4.partial", 60)
    assert sweep_scratch(tmp_path, DAY, now=NOW) == 1
    assert not old.exists()
    assert not old.parent.exists()
    assert recent.exists()
    assert tmp_path.exists()


def test_a_missing_scratch_dir_is_not_an_error(tmp_path: Path) -> None:
    assert sweep_scratch(tmp_path / "absent", DAY, now=NOW) == 0
