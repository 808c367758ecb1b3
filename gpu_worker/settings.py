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

from croniter import croniter

from gpu_worker.store import StoreSettings

MiB = 1024 * 1024
RECONCILE_CRON = "* * * * *"
STALE_AFTER_S = 600.0
"""A 'processing' row not written for this long is a dead attempt (a live one writes every 15 s)."""
PENDING_GRACE_S = 120.0
"""A 'pending' row with no queued or running job is re-enqueued once it is this old."""


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("VEXPORT_DATA_DIR", ".data")).absolute()
        secret = env.get("SECRET_KEY") or persistent_secret(data_dir)
        bucket = env.get("S3_BUCKET") or None
        storage = StoreSettings(
            backend="s3" if bucket else "local",
            local_root=Path(env.get("STORAGE_DIR", str(data_dir / "storage"))).absolute(),
            bucket=bucket,
            endpoint_url=env.get("S3_ENDPOINT_URL") or None,
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
        )

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
