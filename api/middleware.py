"""Two small ASGI wrappers: a request-body cap (and UTF-8 check), and a startup check that fails
in one line.

Both are plain ASGI (not BaseHTTPMiddleware) so they see the raw body stream and the lifespan
messages; FastAPI's own lifespan would report a failed check as a multi-line traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import IncaError

#: the largest accepted request body: 50 products and 500 codes fit in well under a tenth of it
MAX_BODY_BYTES = 64 * 1024


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _too_large(size: int) -> dict[str, object]:
    return {"error": "request too large",
            "detail": f"the request body has more than {MAX_BODY_BYTES} bytes ({size} seen); send fewer products "
                      "or codes per request",
            "limit": MAX_BODY_BYTES, "given": size}


def _not_utf8(error: UnicodeDecodeError) -> dict[str, object]:
    # The same 422 shape as FastAPI's invalid JSON (api/errors.py), instead of its bare 400.
    detail = f"the request body is not valid JSON (not UTF-8: byte {error.start} cannot be decoded)"
    return {"error": "malformed JSON", "detail": detail, "errors": [{"field": "body", "message": detail}]}


class BodyLimit:
    """Refuse bodies over MAX_BODY_BYTES with 413, whether Content-Length says so or the stream does,
    and bodies that are not UTF-8 (JSON is) with 422."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _send_json(send, 413, _too_large(int(declared)))
            return
        # Bodies are small, so read them whole (bounded) and replay them to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > MAX_BODY_BYTES:
                await _send_json(send, 413, _too_large(size))
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            await _send_json(send, 422, _not_utf8(error))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class FailFast:
    """Run `check` when the server starts; an IncaError stops the server with its one line."""

    def __init__(self, app: ASGIApp, check: Callable[[], None]) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] == "lifespan.startup":
            try:
                self.check()
            except IncaError as error:
                # uvicorn logs this message, then exits with status 3 before listening.
                await send({"type": "lifespan.startup.failed", "message": f"refusing to start: {error}"})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)
