"""A scripted HTTP stand-in for InfluxDB's write endpoints, for the error paths real servers
will not produce on demand (a 400 naming one point, 429 with Retry-After, 401/403, 503).

`script` is consulted for every request: it gets the request's lines and returns
(status, body, headers); 2xx responses store the lines in `stored`.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

from aiohttp import web

Reply = tuple[int, str, dict[str, str]]
Script = Callable[[list[str]], Reply]


def accept(lines: list[str]) -> Reply:
    return 204, "", {}


class FaultyInflux:
    def __init__(self, script: Script = accept) -> None:
        self.script = script
        self.stored: list[str] = []
        self.requests: list[tuple[str, int, int]] = []  # (path, lines, status)
        self.headers: list[dict[str, str]] = []
        self.params: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FaultyInflux:
        app = web.Application()
        app.router.add_post("/write", self._write)
        app.router.add_post("/api/v2/write", self._write)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _write(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        self.params.append(dict(request.query))
        body = await request.read()  # aiohttp undoes Content-Encoding: gzip itself
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        lines = [line for line in body.decode().splitlines() if line]
        status, text, headers = self.script(lines)
        self.requests.append((request.path, len(lines), status))
        if status // 100 == 2:
            self.stored.extend(lines)
        return web.Response(status=status, text=text, headers=headers)
