"""The ASGI app: every address the hub answers on the network, and nothing else."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aismm.infra.hub import Hub
from aismm.web.api import Api
from aismm.web.git import Backend, error
from aismm.web.pages import Pages

__all__ = ["build"]


async def _not_found(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    if code == 405:
        return error(405, f"{request.method} {request.url.path}: method not allowed")
    if code == 404:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": f"aismm: {request.url.path}: no such endpoint"}, 404)
        return error(404, f"{request.url.path}: no such page")
    return error(code, f"{request.url.path}: {getattr(exc, 'detail', 'refused')}")


async def _crash(request: Request, exc: Exception) -> Response:
    """A bug answers one line (the traceback stays out of the answer), never a half page."""
    what = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return error(500, f"internal error ({what}); see the hub's log and report it")


def build(hub: Hub) -> tuple[Starlette, Backend]:
    """The app for one hub, and its git backend (the server drains it on shutdown)."""
    backend = Backend(hub)
    api = Api(hub)
    document = api.openapi()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    routes = [
        *api.routes(),
        *Pages(hub).routes(),
        Route("/openapi.json", openapi),
        Route("/registry.git/{rest:path}", backend.handle, methods=["GET", "POST"]),
        Route("/missions/{mission}.git/{rest:path}", backend.handle, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found,
                                                         Exception: _crash})
    return app, backend
