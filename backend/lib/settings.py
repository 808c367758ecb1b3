"""Web settings: the shared `WorkerSettings` (services, storage, queue) plus what only the web app needs.

Read once by the CLI (or built by a test) and handed to `create_app(settings)`; nothing is read at
import time, so tests need no monkeypatching.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from backend.domain.exports.fanout import OUTAGE_GRACE_S
from backend.lib.token_cache import TOKEN_CACHE_S
from gpu_worker.contract import MAX_OUTPUT_SECONDS
from gpu_worker.settings import MiB, WorkerSettings, env_bool


@dataclass(frozen=True, slots=True)
class Settings:
    """Every web knob; the README's settings table lists the same names and defaults."""

    core: WorkerSettings
    host: str = "127.0.0.1"
    port: int = 8000
    debug: bool = False
    max_upload_bytes: int = 4096 * MiB
    max_json_body_bytes: int = 256 * 1024
    session_max_age_s: int = 14 * 24 * 3600
    secure_cookies: bool = False
    run_worker: bool = True
    max_active_exports: int = 5
    export_requests_per_minute: int = 30
    max_output_seconds: int = MAX_OUTPUT_SECONDS
    """Cap on one export's summed output; the bound is the lesser of this and 4 times the source."""
    access_log: bool = True
    token_cache_s: float = TOKEN_CACHE_S
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 4096
    redis_outage_grace_s: float = OUTAGE_GRACE_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            core=WorkerSettings.from_env(env),
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", "8000")),
            debug=env_bool(env.get("DEBUG"), False),
            max_upload_bytes=int(env.get("MAX_UPLOAD_MB", "4096")) * MiB,
            max_json_body_bytes=int(env.get("MAX_JSON_BODY_KB", "256")) * 1024,
            session_max_age_s=int(env.get("SESSION_MAX_AGE_S", str(14 * 24 * 3600))),
            secure_cookies=env_bool(env.get("SECURE_COOKIES"), False),
            run_worker=env_bool(env.get("RUN_WORKER"), True),
            max_active_exports=int(env.get("MAX_ACTIVE_EXPORTS", "5")),
            export_requests_per_minute=int(env.get("EXPORT_REQUESTS_PER_MINUTE", "30")),
            max_output_seconds=int(env.get("MAX_OUTPUT_SECONDS") or MAX_OUTPUT_SECONDS),
            access_log=env_bool(env.get("ACCESS_LOG"), True),
            token_cache_s=float(env.get("TOKEN_CACHE_S", str(TOKEN_CACHE_S))),
            header_timeout_s=float(env.get("HEADER_TIMEOUT_S") or 10.0),
            body_timeout_s=float(env.get("BODY_TIMEOUT_S") or 30.0),
            max_connections=int(env.get("MAX_CONNECTIONS") or 4096),
            redis_outage_grace_s=float(env.get("REDIS_OUTAGE_GRACE_S") or OUTAGE_GRACE_S),
        )

    def with_services(self, database_url: str, redis_url: str) -> Settings:
        return replace(self, core=self.core.with_services(database_url, redis_url))
