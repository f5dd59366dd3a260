"""ASGI middleware of the service: request-body limits and the security headers of every reply.

Both are plain ASGI (no per-request framework objects) so that they also cover the replies the
framework itself makes (404s, validation errors) and run before any body is parsed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from planetloc.errors import PlanetlocError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("planetloc.serve")


def basemap_source(template: str) -> str:
    """The CSP source (``scheme://host[:port]``) that an XYZ basemap URL template loads from.

    Leaflet's ``{s}`` subdomain placeholder is allowed as the host's first label only, where
    CSP can express it as ``*.``; anything else is refused with one line.
    """
    if not isinstance(template, str) or len(template) > 2000 or any(c in template for c in " \"';"):
        raise PlanetlocError("--basemap must be a URL template without spaces or quotes")
    parts = urlsplit(template.replace("{s}", "s-placeholder", 1))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlanetlocError(f"--basemap must be an http(s) URL template, got {template[:200]!r}")
    has_y = "{y}" in template or "{-y}" in template
    if "{z}" not in template or "{x}" not in template or not has_y:
        raise PlanetlocError("--basemap must contain {z}, {x} and {y} (an XYZ tile URL template)")
    host = parts.hostname
    if host.startswith("s-placeholder."):
        host = "*" + host[len("s-placeholder") :]
    if "s-placeholder" in host or not re.fullmatch(r"(\*\.)?[a-z0-9.-]+", host):
        raise PlanetlocError(
            "--basemap: the host must be a plain name; {s} may only be its first label"
        )
    try:
        port = parts.port
    except ValueError:
        raise PlanetlocError(f"--basemap has a bad port: {template[:200]!r}") from None
    if port is not None:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def content_security_policy(basemap: str | None) -> str:
    """Everything from this origin only; a configured basemap's host may serve images."""
    images = "'self' data:" + (f" {basemap_source(basemap)}" if basemap else "")
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def send_json(send: Send, status: int, detail: str, headers: list | None = None) -> None:
    """A complete short JSON reply ``{"detail": ...}``."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse a request body over its limit with 413 before anything parses it.

    Multipart uploads (a street-level image) get ``upload_bytes``; every other body gets
    ``default_bytes``. The body is read here, counted as it arrives, and replayed to the app.
    At most ``max_uploads`` uploads are held at once (each until its reply is sent), so their
    memory stays bounded; one more is answered 503 before its body is read.
    """

    def __init__(
        self, app: ASGIApp, *, default_bytes: int, upload_bytes: int, max_uploads: int
    ) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.upload_bytes = upload_bytes
        self.max_uploads = max_uploads
        self.uploads = 0  # only touched on the event loop's thread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = (_header(scope, b"content-type") or "").lower()
        if not kind.startswith("multipart/form-data"):
            await self._limited(scope, receive, send, self.default_bytes)
            return
        if self.uploads >= self.max_uploads:
            await send_json(
                send,
                503,
                f"the server is busy ({self.uploads} uploads in progress); retry shortly",
                [(b"retry-after", b"1"), (b"connection", b"close")],
            )
            return
        self.uploads += 1
        try:
            await self._limited(scope, receive, send, self.upload_bytes)
        finally:
            self.uploads -= 1

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
            await self._refuse(send, limit, declared.strip().isdigit())
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body and the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, limit, True)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int, numeric: bool) -> None:
        if not numeric:
            await send_json(send, 400, "the Content-Length header is not a number")
            return
        await send_json(
            send,
            413,
            f"the request body is over the {limit // 1024} KiB this kind of request may carry",
            [(b"connection", b"close")],
        )


class SecurityHeaders:
    """Add the security headers to every reply, and turn an unhandled error into a short 500.

    Starlette's own error middleware answers outside the app's middleware stack, so its 500s
    would carry no headers; catching here keeps the headers and keeps tracebacks in the log.
    """

    def __init__(self, app: ASGIApp, *, basemap: str | None = None) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", content_security_policy(basemap).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            log.exception("error while answering %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await send_json(with_headers, 500, "internal error; the server log has the details")
