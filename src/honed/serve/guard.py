"""ASGI middleware in front of every route: API key, body size limit, and request counting."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from honed.serve.responses import error_response

ROUTES = (
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/completions",
    "/v1/chat/completions",
    "/docs",
    "/openapi.json",
)
OPEN_ROUTES = ("/health",)


def route_label(path: str) -> str:
    """The metrics label of a path: a known route, or 'other' (keeps label values bounded)."""
    if path.startswith("/v1/models/"):
        return "/v1/models"
    return path if path in ROUTES else "other"


class Guard:
    """Refuses requests without the API key (401) or with a body too large (413, 411)."""

    def __init__(
        self, app: Any, *, api_key: str | None, max_body: int, count: Callable[[str, int], None]
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = max_body
        self.count = count

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        refusal = self.refusal(scope)
        try:
            if refusal is not None:
                await refusal(scope, receive, send_counted)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            self.count(route_label(scope["path"]), status[0])

    def refusal(self, scope: dict) -> Any:
        """The error response for a request that must not reach the routes, or None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and scope["path"] not in OPEN_ROUTES:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                return error_response(
                    401,
                    "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                    "authentication_error",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if scope["method"] in ("POST", "PUT", "PATCH"):
            return self._body_refusal(headers)
        return None

    def _body_refusal(self, headers: dict[str, str]) -> Any:
        length = headers.get("content-length")
        if length is None:
            return error_response(411, "send the request body with a Content-Length header")
        if not length.isdigit():
            return error_response(400, f"bad Content-Length header {length!r}")
        if int(length) > self.max_body:
            return error_response(
                413,
                f"request body of {length} bytes is over this server's limit of "
                f"{self.max_body} bytes (--max-body-bytes)",
                code="body_too_large",
            )
        return None
