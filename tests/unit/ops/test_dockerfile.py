"""The Dockerfile checked without a Docker engine: the base image, the pinned uv, the locked install
with the GPU extra, a non-root user, `vexport` as the entry point and everything the API serves."""

from __future__ import annotations

import json
import tomllib

from tests.unit.ops.deployment_files import ROOT, parse_vexport

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def arguments(keyword: str) -> list[str]:
    return [rest for k, rest in instructions() if k == keyword]


def test_one_stage_on_python_3_11_slim_bookworm() -> None:
    assert arguments("FROM") == ["python:3.11-slim-bookworm"]


def test_uv_is_pinned_to_the_version_the_scripts_install() -> None:
    assert "pip install --no-cache-dir uv==0.13.9" in arguments("RUN")
    assert '"uv==0.13.9"' in (ROOT / "scripts" / "bootstrap.sh").read_text()


def test_the_locked_environment_is_installed_with_the_gpu_extra_and_without_dev_tools() -> None:
    runs = arguments("RUN")
    assert "uv sync --frozen --no-dev --extra gpu --no-install-project" in runs
    assert "uv sync --frozen --no-dev --extra gpu" in runs
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["gpu"] == ["pynvvideocodec>=2.2.4,<2.3"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (ours,) = [p for p in lock["package"] if p["name"] == "video-export"]
    assert [d["name"] for d in ours["optional-dependencies"]["gpu"]] == ["pynvvideocodec"]


def test_it_runs_as_a_user_that_is_not_root() -> None:
    *_, user = arguments("USER")
    assert user not in {"root", "0"}
    useradd = f"useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin {user}"
    assert any(run.startswith(useradd) for run in arguments("RUN"))


def test_vexport_is_the_entry_point_and_the_default_command_is_a_real_one() -> None:
    (entrypoint,) = arguments("ENTRYPOINT")
    (command,) = arguments("CMD")
    assert json.loads(entrypoint) == ["vexport"]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["vexport"] == (
        "backend.__main__:main"
    )
    assert parse_vexport(json.loads(command)) == (
        "serve",
        {"host": "0.0.0.0", "port": 8000, "no_worker": True, "processes": None, "log_format": None},
    )


def test_the_code_migrations_and_frontend_are_copied_and_not_ignored() -> None:
    copied = {rest.split()[0] for rest in arguments("COPY")}
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}

    assert copied == {"pyproject.toml", "backend/", "gpu_worker/", "migrations/", "frontend/"}
    assert "README.md" in arguments("COPY")[0].split()
    assert {".data", ".venv", "frontend/node_modules", "node_modules", "test-output", ".git"} <= ignored
    assert {"backend", "gpu_worker", "migrations", "frontend", "README.md", "uv.lock"} & ignored == set()
