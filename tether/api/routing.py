"""One route per path, whatever its methods: so a 405 lists every method the path
takes in its `Allow` header (Starlette answers with the first matching route's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Any]]


def route(path: str, **handlers: Handler) -> Route:
    """`route("/v1/x/{id}", GET=read, DELETE=remove)`."""

    async def dispatch(request: Request) -> Any:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    name = "_".join(handler.__name__ for handler in handlers.values())
    return Route(path, dispatch, methods=list(handlers), name=name)
