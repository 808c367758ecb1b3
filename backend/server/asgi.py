"""`create_app(settings)`: the whole web application, built from the settings it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path

from advanced_alchemy.config import EngineConfig
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.template import TemplateConfig
from redis.exceptions import RedisError
from saq.queue.redis import RedisQueue

from backend.db.hotpath import HotPath
from backend.domain.exports.fanout import Fanout
from backend.lib.auth import PUBLIC_PATHS, AuthMiddleware, CurrentUser, provide_current_user
from backend.lib.csrf import CSRFUnlessBearer
from backend.lib.exceptions import EXCEPTION_HANDLERS
from backend.lib.openapi import openapi_config
from backend.lib.redis_clients import SocketsTryAgainLater, request_client
from backend.lib.request import AppRequest
from backend.lib.revocations import Revocations
from backend.lib.security_headers import security_headers
from backend.lib.sessions import SESSION_COOKIE, LazySessionConfig
from backend.lib.settings import Settings
from backend.lib.token_cache import TokenCache
from backend.server.limits import BodyLimits
from gpu_worker.store import Store, open_store

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


async def _connected(opened: AsyncExitStack, url: str, name: str) -> RedisQueue:
    """A connected queue that `opened` disconnects at the end."""
    queue = RedisQueue.from_url(url, name=name)
    await queue.connect()

    async def disconnect() -> None:
        with suppress(RedisError):  # Redis may be gone; the queue has nothing to flush
            await queue.disconnect()

    opened.push_async_callback(disconnect)
    return queue


def create_app(settings: Settings) -> Litestar:
    from backend.domain.accounts.controllers import AuthController, TokenController
    from backend.domain.accounts.pages import AccountPages, TokenPages
    from backend.domain.exports.controllers import ExportController, SignedFileController
    from backend.domain.exports.pages import ExportPages
    from backend.domain.exports.ui_ws import ui_exports_socket
    from backend.domain.exports.views import register_templates
    from backend.domain.exports.ws import export_progress_socket, user_exports_socket
    from backend.domain.farm.controllers import WorkerController
    from backend.domain.farm.pages import OperatorPages
    from backend.domain.system.controllers import SystemController
    from backend.domain.videos.controllers import VideoController
    from backend.domain.videos.pages import VideoPages
    from backend.lib.metrics import MetricsController

    alchemy = SQLAlchemyAsyncConfig(
        connection_string=settings.core.async_database_url,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit_include_redirects",
        engine_config=EngineConfig(pool_pre_ping=True, pool_size=10, max_overflow=10),
    )
    redis = request_client(settings.core.redis_url or "")
    sessions = LazySessionConfig(
        key=SESSION_COOKIE,
        store="sessions",
        max_age=settings.session_max_age_s,
        secure=settings.secure_cookies,
        samesite="lax",
        exclude=PUBLIC_PATHS,
    )
    csrf = CSRFConfig(
        secret=settings.core.secret_key,
        cookie_secure=settings.secure_cookies,
        cookie_samesite="lax",
        exclude=PUBLIC_PATHS,
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Everything opened is closed in reverse order, also when a later step of the start fails.
        async with AsyncExitStack() as opened:
            opened.push_async_callback(redis.aclose)
            app.state.settings = settings
            app.state.redis = redis
            app.state.session_maker = alchemy.create_session_maker()
            app.state.hotpath = await HotPath.open(settings.core.async_database_url)
            opened.push_async_callback(app.state.hotpath.aclose)
            # Tokens are remembered per process; revocations reach every process over Redis.
            cache = TokenCache[CurrentUser](ttl_s=settings.token_cache_s)
            app.state.revocations = Revocations(settings.core.redis_url or "", redis, cache)
            await app.state.revocations.start()
            opened.push_async_callback(app.state.revocations.aclose)
            app.state.store = open_store(settings.core.storage)
            opened.push_async_callback(app.state.store.aclose)
            # RedisQueue directly: saq's generic Queue.from_url refuses unix:// (the embedded Redis
            # socket). Exports are routed to the CPU queue (`queue`) or the GPU queue (gpu_worker.routing).
            queue_url = settings.core.redis_url or ""
            app.state.queue = await _connected(opened, queue_url, settings.core.cpu_queue_name)
            app.state.gpu_queue = await _connected(opened, queue_url, settings.core.gpu_queue_name)
            # One Redis pub/sub connection shared by every progress websocket of this process.
            app.state.fanout = Fanout.from_url(
                settings.core.redis_url or "", outage_grace_s=settings.redis_outage_grace_s
            )
            await app.state.fanout.start()
            opened.push_async_callback(app.state.fanout.aclose)
            yield

    return Litestar(
        route_handlers=[
            SystemController,
            MetricsController,
            AuthController,
            TokenController,
            VideoController,
            ExportController,
            SignedFileController,
            WorkerController,
            export_progress_socket,
            user_exports_socket,
            ui_exports_socket,
            AccountPages,
            TokenPages,
            VideoPages,
            ExportPages,
            OperatorPages,
            create_static_files_router(path="/static", directories=[FRONTEND / "static"]),
        ],
        plugins=[SQLAlchemyPlugin(config=alchemy)],
        lifespan=[lifespan],
        stores={"sessions": RedisStore(redis, namespace="vexport:sessions")},
        middleware=[
            SocketsTryAgainLater,
            BodyLimits(upload_limit=settings.max_upload_bytes, body_timeout_s=settings.body_timeout_s),
            sessions.middleware,
            # Who is calling first: the CSRF check is skipped only for a token that authenticated.
            DefineMiddleware(AuthMiddleware, exclude=PUBLIC_PATHS),
            DefineMiddleware(CSRFUnlessBearer, config=csrf),
        ],
        dependencies={
            "current_user": Provide(provide_current_user),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "store": Provide(_provide_store, sync_to_thread=False),
        },
        template_config=TemplateConfig(
            directory=FRONTEND / "templates", engine=JinjaTemplateEngine, engine_callback=register_templates
        ),
        openapi_config=openapi_config(csrf),
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[security_headers(settings.core.storage)],
        # Logging is the process's (`vexport --log-format`, gpu_worker.logs): Litestar's default config
        # would replace the root handler, turning JSON lines back into text.
        logging_config=None,
        request_max_body_size=settings.max_json_body_bytes,
        request_class=AppRequest,
        debug=settings.debug,
    )


def _provide_store(state: State) -> Store:
    return state.store
