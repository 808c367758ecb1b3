"""`vexport`: one console script for the service, its workers and its database.

Each subcommand lives in its own module and imports only what it needs, so `vexport worker` on a
render machine never loads the web app.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from backend.cli.accounts import create_user, grant_operator, migrate
from backend.cli.serve import serve
from backend.cli.worker import worker
from backend.domain.farm.cli import workers_command
from gpu_worker.cli import gpu_info_command, render_command


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the embedded servers, local store and scratch live (default VEXPORT_DATA_DIR, "
    "else .data in the checkout, else ./.data).",
)
def main(data_dir: Path | None) -> None:
    """Video Export: render timeline segments into files, on NVIDIA GPUs or the CPU."""
    if data_dir is not None:
        os.environ["VEXPORT_DATA_DIR"] = str(data_dir.absolute())  # every Settings.from_env() reads it


main.add_command(serve)
main.add_command(worker)
main.add_command(migrate)
main.add_command(create_user)
main.add_command(grant_operator)
main.add_command(workers_command, "workers")
main.add_command(render_command, "render")
main.add_command(gpu_info_command, "gpu-info")
