"""Settings shared by every process that renders or stores: services, storage, scratch, queue.

The web app's settings embed this object, so the two sides read the same variables one way.
Nothing is read at import time: callers run `WorkerSettings.from_env()` once and pass it down.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from croniter import croniter

from gpu_worker.logs import LogFormat, parse_log_format
from gpu_worker.store import StoreSettings

MiB = 1024 * 1024
RECONCILE_CRON = "* * * * *"
STALE_AFTER_S = 600.0
"""A 'processing' row not written for this long is a dead attempt (a live one writes every 15 s)."""
PENDING_GRACE_S = 120.0
"""A 'pending' row with no queued or running job is re-enqueued once it is this old."""
GPU_WAIT_S = 300.0
"""How long an export that asked for `gpu` waits on the GPU queue before it moves to the CPU queue."""
BREAKER_FAILURES = 3
BREAKER_WINDOW_S = 300.0
BREAKER_COOLDOWN_S = 120.0
"""A GPU with BREAKER_FAILURES NVENC/NVDEC failures within BREAKER_WINDOW_S rests this long."""
NVENC_SESSIONS = 2
"""Concurrent GPU renders per worker process: GeForce cards cap NVENC sessions per system."""
WORKER_HEARTBEAT_S = 5.0
WORKER_TTL_S = 15.0
"""Each worker writes its registry entry every WORKER_HEARTBEAT_S; it expires after WORKER_TTL_S."""
DRAIN_GRACE_S = 60.0
"""A draining worker (SIGTERM or `vexport workers drain`) lets its renders finish for this long,
then hands the unfinished ones back to the queue."""


DataDirOrigin = Literal["explicit", "project", "cwd"]
"""Where the data dir came from: VEXPORT_DATA_DIR (or `--data-dir`), the checkout the code runs from,
or the current directory (an installed package run outside any checkout)."""


def project_root() -> Path | None:
    """The checkout this code runs from (the folder holding its pyproject.toml), or None when it is
    installed elsewhere: a command's default data dir must not depend on the shell's directory."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "backend").is_dir() else None


def resolve_data_dir(env: Mapping[str, str]) -> tuple[Path, DataDirOrigin]:
    """VEXPORT_DATA_DIR when set, else the checkout's `.data`, else `./.data` (see README, Settings)."""
    if explicit := env.get("VEXPORT_DATA_DIR"):
        return Path(explicit).absolute(), "explicit"
    if (root := project_root()) is not None:
        return root / ".data", "project"
    return Path(".data").absolute(), "cwd"


def env_bool(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def persistent_secret(data_dir: Path) -> str:
    """A stable secret for the embedded default: generated once, kept (0600) under the data dir."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Queues: exports are routed to a GPU queue or a CPU queue. QUEUE_NAME (default `exports`) names
    the CPU queue and prefixes the GPU queue (`{QUEUE_NAME}-gpu`), so one variable still isolates a
    deployment and jobs queued before routing existed stay on the queue CPU workers take;
    GPU_QUEUE_NAME / CPU_QUEUE_NAME override either name. A worker takes the GPU queue when it is a
    GPU worker (`--encoder gpu`, or auto and its probe found a working NVENC) and the CPU queue
    otherwise; `worker_queue` (`vexport worker --queue`) overrides that choice.
    """

    data_dir: Path
    secret_key: str
    database_url: str | None
    redis_url: str | None
    storage: StoreSettings
    scratch_dir: Path
    queue_name: str = "exports"
    concurrency: int = 1
    encoder: str = "auto"
    gpu_index: int | None = None
    reconcile_cron: str = RECONCILE_CRON
    stale_after_s: float = STALE_AFTER_S
    pending_grace_s: float = PENDING_GRACE_S
    gpu_queue: str | None = None
    cpu_queue: str | None = None
    worker_queue: str | None = None
    gpu_wait_s: float = GPU_WAIT_S
    breaker_failures: int = BREAKER_FAILURES
    breaker_window_s: float = BREAKER_WINDOW_S
    breaker_cooldown_s: float = BREAKER_COOLDOWN_S
    nvenc_sessions: int = NVENC_SESSIONS
    metrics_port: int | None = None
    log_format: LogFormat = "text"
    heartbeat_s: float = WORKER_HEARTBEAT_S
    worker_ttl_s: float = WORKER_TTL_S
    drain_grace_s: float = DRAIN_GRACE_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        data_dir, _ = resolve_data_dir(env)
        secret = env.get("SECRET_KEY") or persistent_secret(data_dir)
        bucket = env.get("S3_BUCKET") or None
        storage = StoreSettings(
            backend="s3" if bucket else "local",
            local_root=Path(env.get("STORAGE_DIR", str(data_dir / "storage"))).absolute(),
            bucket=bucket,
            endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            public_endpoint_url=env.get("S3_PUBLIC_ENDPOINT_URL") or None,
            region=env.get("S3_REGION", "us-east-1"),
            access_key_id=env.get("S3_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("S3_SECRET_ACCESS_KEY") or None,
            path_style=env_bool(env.get("S3_PATH_STYLE"), False),
            checksum_mode=env.get("S3_CHECKSUM_MODE", "when_supported"),  # type: ignore[arg-type]
            part_size=int(env.get("S3_PART_SIZE_MB", "8")) * MiB,
            presign_expiry_s=int(env.get("DOWNLOAD_URL_TTL_S", "300")),
            signing_secret=secret,
        )
        gpu = env.get("VEXPORT_GPU")
        reconcile_cron = env.get("RECONCILE_CRON") or RECONCILE_CRON
        if not croniter.is_valid(reconcile_cron):
            raise ValueError(f"RECONCILE_CRON is not a cron expression: {reconcile_cron!r}")
        return cls(
            data_dir=data_dir,
            secret_key=secret,
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            storage=storage,
            scratch_dir=Path(env.get("SCRATCH_DIR", str(data_dir / "scratch"))).absolute(),
            queue_name=env.get("QUEUE_NAME", "exports"),
            concurrency=int(env.get("WORKER_CONCURRENCY", "1")),
            encoder=env.get("VEXPORT_ENCODER", "auto"),
            gpu_index=int(gpu) if gpu else None,
            reconcile_cron=reconcile_cron,
            stale_after_s=float(env.get("STALE_AFTER_S") or STALE_AFTER_S),
            pending_grace_s=float(env.get("PENDING_GRACE_S") or PENDING_GRACE_S),
            gpu_queue=env.get("GPU_QUEUE_NAME") or None,
            cpu_queue=env.get("CPU_QUEUE_NAME") or None,
            gpu_wait_s=float(env.get("GPU_WAIT_S") or GPU_WAIT_S),
            breaker_failures=int(env.get("BREAKER_FAILURES") or BREAKER_FAILURES),
            breaker_window_s=float(env.get("BREAKER_WINDOW_S") or BREAKER_WINDOW_S),
            breaker_cooldown_s=float(env.get("BREAKER_COOLDOWN_S") or BREAKER_COOLDOWN_S),
            nvenc_sessions=int(env.get("NVENC_SESSIONS") or NVENC_SESSIONS),
            metrics_port=int(port) if (port := env.get("METRICS_PORT")) else None,
            log_format=parse_log_format(env.get("LOG_FORMAT") or "text"),
            heartbeat_s=float(env.get("WORKER_HEARTBEAT_S") or WORKER_HEARTBEAT_S),
            worker_ttl_s=float(env.get("WORKER_TTL_S") or WORKER_TTL_S),
            drain_grace_s=float(env.get("DRAIN_GRACE_S") or DRAIN_GRACE_S),
        )

    def __post_init__(self) -> None:
        if self.gpu_queue_name == self.cpu_queue_name:
            raise ValueError(f"the GPU and CPU queues must differ (both {self.cpu_queue_name!r})")
        if self.nvenc_sessions < 1 or self.breaker_failures < 1:
            raise ValueError("NVENC_SESSIONS and BREAKER_FAILURES must be at least 1")
        if not 0 < self.heartbeat_s < self.worker_ttl_s:
            raise ValueError("WORKER_HEARTBEAT_S must be positive and below WORKER_TTL_S")

    @property
    def gpu_queue_name(self) -> str:
        return self.gpu_queue or f"{self.queue_name}-gpu"

    @property
    def cpu_queue_name(self) -> str:
        return self.cpu_queue or self.queue_name

    def with_services(self, database_url: str, redis_url: str) -> WorkerSettings:
        return replace(self, database_url=database_url, redis_url=redis_url)

    @property
    def async_database_url(self) -> str:
        """The URL SQLAlchemy needs: any `postgres(ql)://` form becomes `postgresql+asyncpg://`."""
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set and no embedded Postgres was started")
        scheme, sep, rest = self.database_url.partition("://")
        if scheme in {"postgres", "postgresql"}:
            scheme = "postgresql+asyncpg"
        return f"{scheme}{sep}{rest}"
