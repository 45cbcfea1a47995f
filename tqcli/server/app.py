"""The ASGI application of `tqcli serve`: guards, error handlers, and every router of `tqcli.server.routes`."""

from __future__ import annotations

import importlib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

from fastapi import FastAPI, Request
from pydantic import BaseModel

from tqcli import __version__
from tqcli.config import Config
from tqcli.server import http_errors
from tqcli.server.guards import MAX_BODY, BodyLimit, HostCheck
from tqcli.server.lifecycle import Shutdown
from tqcli.server.recent import RecentAnswers
from tqcli.server.routes import ROUTERS
from tqcli.server.sessions import ConnectionPool


@dataclass
class ServerSettings:
    """What one `tqcli serve` serves, and how."""

    config: Config
    allowed_hosts: frozenset[str] = frozenset()
    public_metrics: bool = False
    max_body: int = MAX_BODY
    pool: ConnectionPool | None = None
    user: str | None = None  # who started serve: /metrics reads as them when it is public
    shutdown: Shutdown = field(default_factory=Shutdown)


class Health(BaseModel):
    """`/healthz`: the server runs and reads its database."""

    status: str


def create_app(settings: ServerSettings) -> FastAPI:
    """The application serving `settings.config`'s database."""
    pool = settings.pool or ConnectionPool(settings.config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from tqcli.server import events

        settings.shutdown.bind()
        await events.start(app)
        try:
            yield
        finally:
            settings.shutdown.request()
            await events.stop(app)
            pool.close()

    app = FastAPI(
        title="tqcli",
        version=__version__,
        summary="The tqcli task queue over HTTP: the same library, checks, JSON shapes and audit trail as the CLI.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.pool = pool
    app.state.shutdown = settings.shutdown
    app.state.recent = RecentAnswers()
    http_errors.install(app)

    @app.get("/healthz", response_model=Health, responses=http_errors.error_responses(503), tags=["server"])
    def healthz(request: Request) -> Health:
        """Whether the server runs and can read its database (no token needed)."""
        with pool.store() as store, store.read() as tx:
            tx.task_state(0)
        return Health(status="ok")

    for module in ROUTERS:
        app.include_router(importlib.import_module(module).router)
    # The last added runs first: an unknown Host is refused before its body is read.
    app.add_middleware(BodyLimit, limit=settings.max_body)
    app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    return app
