"""Who may see the web view: open on loopback, a login everywhere else, for pages, push and API
alike; the security headers; a configuration that would serve it openly does not load.

Real HTTP on loopback against the health listener with the view installed (no plant needed:
an empty TagStore answers every route)."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from edge_agent.config import AgentConfig
from edge_agent.health import HealthServer
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore
from edge_agent.web import WebView, tls_context
from edge_agent.web.access import CSP
from tests.support.services import free_port

GUARDED = ["/", "/static/app.js", "/api/events", "/api/tags", "/api/meta", "/api/config"]
TOKEN = "s3cr3t-token-0123456789"
PASSWORD = "correct horse battery"


def config(listen: str, tmp_path: Path, **web: Any) -> AgentConfig:
    """`host:0` picks a free port now (the configuration wants a real one)."""
    if listen.endswith(":0"):
        listen = listen[:-1] + str(free_port())
    return AgentConfig.model_validate({
        "agent": {"state_dir": str(tmp_path)}, "health": {"listen": listen}, "web": web,
    })  # fmt: skip


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    (tmp_path / "web.pw").write_text(PASSWORD + "\n")
    monkeypatch.setenv("EDGE_WEB_TOKEN", TOKEN)
    return {
        "token": {"env": "EDGE_WEB_TOKEN"},
        "username": "engineer",
        "password": {"file": str(tmp_path / "web.pw")},
    }


async def serve(cfg: AgentConfig) -> HealthServer:
    board = StatusBoard(TagStore())
    assert board.store is not None
    view = WebView(cfg, board.store, board)
    server = HealthServer(board, cfg.health.listen, "s", "i", view.install, tls_context(cfg.web))
    await server.start()
    return server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def status(http: aiohttp.ClientSession, url: str, **kw: Any) -> int:
    async with http.get(url, **kw) as resp:
        return resp.status


async def test_loopback_is_open_and_every_answer_carries_the_headers(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    server = await serve(config("127.0.0.1:0", tmp_path))
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(base + "/") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Security-Policy"] == CSP
            assert "'unsafe-inline'" not in CSP
            assert "script-src 'self'" in CSP
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["X-Frame-Options"] == "DENY"
            page = await resp.text()
        assert "<script>" not in page
        assert " style=" not in page
        assert "http://" not in page
        assert "https://" not in page
        async with http.get(base + "/api/events") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            assert (await resp.content.readline()).startswith(b"retry:")
    finally:
        await server.stop()


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "127.0.0.1:0"])
async def test_without_credentials_everything_is_refused(
    listen: str, tmp_path: Path, secrets: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    """0.0.0.0: the rule follows the configured address (we still only talk to 127.0.0.1);
    127.0.0.1 with auth = "required": a login on loopback too, when asked for."""
    auth = "auto" if listen.startswith("0.0.0.0") else "required"
    server = await serve(config(listen, tmp_path, auth=auth, **secrets))
    try:
        base = f"http://127.0.0.1:{server.port}"
        for path in GUARDED:
            async with http.get(base + path) as resp:
                assert resp.status == 401, path
                assert resp.headers["WWW-Authenticate"].startswith("Basic ")
                assert resp.headers["Cache-Control"] == "no-store"
                assert TOKEN not in await resp.text()
            assert await status(http, base + path, headers=basic("engineer", "wrong")) == 401
            assert await status(http, base + path, headers={"Authorization": "Bearer nope"}) == 401
        # /healthz and /metrics keep their own (open) rules: load balancers, Prometheus.
        assert await status(http, base + "/healthz") == 200
        good = [
            basic("engineer", PASSWORD),
            basic("anyone", TOKEN),
            {"Authorization": f"Bearer {TOKEN}"},
        ]
        for headers in good:
            async with http.get(base + "/api/tags", headers=headers) as resp:
                assert resp.status == 200
                assert resp.headers["Cache-Control"] == "no-store"
        async with http.get(base + "/api/events", headers=good[0]) as resp:
            assert resp.status == 200
        async with http.get(base + "/api/config", headers=good[0]) as resp:
            text = await resp.text()
        assert TOKEN not in text
        assert PASSWORD not in text
        assert "web.pw" not in text
        assert '"token":"<secret>"' in text
    finally:
        await server.stop()


def test_a_reachable_view_without_a_login_does_not_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"health.listen = '0.0.0.0:9108' is not a loopback"):
        config("0.0.0.0:9108", tmp_path)
    with pytest.raises(ValidationError, match=r"web.auth = 'required'"):
        config("127.0.0.1:9108", tmp_path, auth="required")
    with pytest.raises(ValidationError, match=r"username and password together"):
        config("127.0.0.1:9108", tmp_path, username="engineer")
    # Off, or a loopback name: fine without a login.
    config("0.0.0.0:9108", tmp_path, enabled=False)
    config("localhost:9108", tmp_path)
    config("[::1]:9108", tmp_path)


async def test_tls_when_certificate_files_are_given(
    tmp_path: Path, secrets: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    cert, key = tmp_path / "web.crt", tmp_path / "web.key"
    await asyncio.to_thread(
        subprocess.run,
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = await serve(
        config("0.0.0.0:0", tmp_path, tls_cert=str(cert), tls_key=str(key), **secrets)
    )
    try:
        client = ssl.create_default_context(cafile=str(cert))
        base = f"https://127.0.0.1:{server.port}"
        async with http.get(base + "/api/meta", ssl=client, headers=basic("x", TOKEN)) as resp:
            assert resp.status == 200
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{server.port}/api/meta"):
                pass
    finally:
        await server.stop()
