"""Which data dir a command uses does not depend on the shell's directory inside a checkout, and
outside one a command never silently creates a database in ./.data."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

import gpu_worker.settings
from backend.cli.runtime import check_data_dir, safe_url
from gpu_worker.settings import project_root, resolve_data_dir

CHECKOUT = Path(__file__).resolve().parents[3]


def test_vexport_data_dir_wins(tmp_path: Path) -> None:
    assert resolve_data_dir({"VEXPORT_DATA_DIR": str(tmp_path / "d")}) == (tmp_path / "d", "explicit")


def test_in_a_checkout_the_default_is_its_data_folder_whatever_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert project_root() == CHECKOUT
    assert resolve_data_dir({}) == (CHECKOUT / ".data", "project")


def test_outside_a_checkout_the_default_is_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_worker.settings, "project_root", lambda: None)

    assert resolve_data_dir({}) == (tmp_path / ".data", "cwd")


def test_outside_a_checkout_a_command_refuses_to_create_a_database_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_worker.settings, "project_root", lambda: None)
    for name in ("VEXPORT_DATA_DIR", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(
        click.ClickException, match=r"no embedded database in .*: run this where `vexport serve`"
    ):
        check_data_dir(may_create=False)
    check_data_dir(may_create=True)  # serve and migrate may: they say "a new embedded PostgreSQL"
    assert not (tmp_path / ".data").exists()


def test_printed_urls_hide_passwords() -> None:
    assert (
        safe_url("postgresql://vexport:s3cret@db:5432/vexport") == "postgresql://vexport:***@db:5432/vexport"
    )
    assert safe_url("redis://redis.internal:6379/0") == "redis://redis.internal:6379/0"
