"""compose.gpu.yml checked without a Docker engine: its commands parse as real `vexport` commands, its
variables are ones the code reads, its healthchecks hit real endpoints, its start order is sound
and each GPU worker owns one GPU."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.metrics import HEALTH_PATH
from gpu_worker.settings import DRAIN_GRACE_S
from tests.unit.ops.deployment_files import ROOT, env_file_names, env_names_read, parse_vexport

COMPOSE = ROOT / "compose.gpu.yml"
ENV_EXAMPLE = ROOT / "deploy" / "farm.env.example"
IMAGE = "vexport:latest"
REQUIRED = {
    "DATABASE_URL": "every process shares one Postgres",
    "REDIS_URL": "the queues, progress and the registry",
    "SECRET_KEY": "else each container generates its own and API processes disagree",
    "S3_BUCKET": "else each container keeps files on its own disk",
    "S3_ENDPOINT_URL": "MinIO, not AWS",
    "S3_ACCESS_KEY_ID": "MinIO's credentials",
    "S3_SECRET_ACCESS_KEY": "MinIO's credentials",
    "S3_PATH_STYLE": "MinIO needs path-style addressing",
}
_INTERPOLATED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[\w/-]*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def ours(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services running the vexport image."""
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_farm_has_its_services(services: dict[str, dict[str, Any]], ours: dict[str, Any]) -> None:
    assert set(services) == {
        "postgres",
        "redis",
        "minio",
        "bucket",
        "migrate",
        "api",
        "gpu-worker-0",
        "gpu-worker-1",
        "cpu-worker",
    }
    assert set(ours) == {"migrate", "api", "gpu-worker-0", "gpu-worker-1", "cpu-worker"}


def test_every_vexport_service_runs_a_real_subcommand_with_real_options(ours: dict[str, Any]) -> None:
    parsed = {name: parse_vexport(service["command"]) for name, service in ours.items()}

    assert {name: command for name, (command, _) in parsed.items()} == {
        "migrate": "migrate",
        "api": "serve",
        "gpu-worker-0": "worker",
        "gpu-worker-1": "worker",
        "cpu-worker": "worker",
    }
    assert {k: parsed["api"][1][k] for k in ("host", "port", "no_worker")} == {
        "host": "0.0.0.0",
        "port": 8000,
        "no_worker": True,
    }
    workers = {name: params for name, (command, params) in parsed.items() if command == "worker"}
    assert {name: (p["encoder"], p["gpu_index"], p["metrics_port"]) for name, p in workers.items()} == {
        "gpu-worker-0": ("gpu", 0, 9100),
        "gpu-worker-1": ("gpu", 0, 9100),
        "cpu-worker": ("cpu", None, 9100),
    }


def test_each_gpu_worker_reserves_one_gpu_of_its_own_which_it_sees_as_device_0(
    services: dict[str, dict[str, Any]],
) -> None:
    """A container sees only its reserved GPU, as CUDA ordinal 0: hence `--gpu 0` everywhere."""
    reserved = {}
    for name, service in services.items():
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        for device in devices:
            assert device["driver"] == "nvidia"
            assert {"gpu", "video"} <= set(device["capabilities"]), "NVENC/NVDEC need the video capability"
            reserved[name] = device["device_ids"]
            assert option(service["command"], "--gpu") == "0"

    assert reserved == {"gpu-worker-0": ["0"], "gpu-worker-1": ["1"]}


def test_variables_in_compose_and_the_env_example_are_ones_the_code_reads(ours: dict[str, Any]) -> None:
    """A misspelt name would be silently ignored; compose-only names must feed a ${...} in the file."""
    read = env_names_read()
    interpolated = set(_INTERPOLATED.findall(COMPOSE.read_text()))
    set_in_compose = {name for service in ours.values() for name in service.get("environment", {})}

    assert set_in_compose - read == set()
    assert set(env_file_names(ENV_EXAMPLE)) - read - interpolated == set()


def test_every_required_variable_is_set_and_every_interpolated_one_is_in_the_env_example(
    ours: dict[str, Any],
) -> None:
    example = env_file_names(ENV_EXAMPLE)
    for name, service in ours.items():
        assert service["env_file"] == "deploy/farm.env", name
        given = set(example) | set(service["environment"])
        assert set(REQUIRED) - given == set(), name
    assert set(_INTERPOLATED.findall(COMPOSE.read_text())) - set(example) == set()
    assert len(example) == len(set(example)), "a name set twice"


def test_healthchecks_call_endpoints_that_exist(ours: dict[str, Any], tmp_path: Path) -> None:
    env = {"SECRET_KEY": "s" * 32, "DATABASE_URL": "postgresql://u@db/x", "REDIS_URL": "redis://r:6379/0"}
    env["VEXPORT_DATA_DIR"] = str(tmp_path)
    api_routes = {route.path for route in create_app(Settings.from_env(env)).routes}
    checked = {}
    for name, service in ours.items():
        if "healthcheck" not in service:
            continue
        (port, path), *more = _URL.findall(" ".join(service["healthcheck"]["test"]))
        assert more == []
        _, params = parse_vexport(service["command"])
        if name == "api":
            assert int(port) == params["port"]
            assert path in api_routes
        else:
            assert int(port) == params["metrics_port"]
            assert path == HEALTH_PATH
        checked[name] = path

    assert checked == {
        "api": "/ready",
        "gpu-worker-0": "/health",
        "gpu-worker-1": "/health",
        "cpu-worker": "/health",
    }


def test_migrate_runs_once_before_everything_that_uses_the_database(
    services: dict[str, dict[str, Any]], ours: dict[str, Any]
) -> None:
    graph = {name: dict(s.get("depends_on", {})) for name, s in services.items()}
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    with_healthcheck = {name for name, s in services.items() if "healthcheck" in s}

    for name, needs in graph.items():
        for needed, how in needs.items():
            assert needed in services, f"{name} depends on unknown {needed}"
            expected = "service_completed_successfully" if needed in one_shot else "service_healthy"
            assert how == {"condition": expected}, (name, needed)
            assert needed in one_shot or needed in with_healthcheck
    assert one_shot == {"migrate", "bucket"}
    assert graph["migrate"] == {"postgres": {"condition": "service_healthy"}}
    assert {name for name, needs in graph.items() if "migrate" in needs} == set(ours) - {"migrate"}
    order = _topological(graph)
    assert order.index("migrate") < min(order.index(name) for name in set(ours) - {"migrate"})


def test_workers_get_longer_than_the_drain_grace_period_before_sigkill(ours: dict[str, Any]) -> None:
    graces = {
        name: service["stop_grace_period"]
        for name, service in ours.items()
        if parse_vexport(service["command"])[0] == "worker"
    }

    assert set(graces) == {"gpu-worker-0", "gpu-worker-1", "cpu-worker"}
    for grace in graces.values():
        assert re.fullmatch(r"\d+s", grace)
        assert int(grace[:-1]) > DRAIN_GRACE_S


def test_every_named_volume_is_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used == set(compose["volumes"])


def _topological(graph: dict[str, dict[str, Any]]) -> list[str]:
    """Start order (dependencies first); fails on a cycle, which compose would refuse."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"dependency cycle through {name}"
        visiting.add(name)
        for needed in graph[name]:
            visit(needed)
        visiting.discard(name)
        order.append(name)

    for name in graph:
        visit(name)
    return order
