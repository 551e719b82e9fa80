"""Who may see the view, and what every answer of it carries: login check, security headers, TLS.

The rule is about the configured address (`config.web.login_required`): loopback is open, any
other address requires a login, `auth = "required"` always does. The check covers everything
the web view serves (pages, assets, the push stream, `/api/...`) alike; `/healthz` and
`/metrics` keep their own rules (they are for load balancers and Prometheus, and say nothing a
scrape does not already see).

Credentials are resolved once, when the view is built, and compared in constant time. A failed
login is logged once per peer and address, never with what was sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from edge_agent.config import WebSection
from edge_agent.config.web import login_required

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No inline script or style anywhere in our pages; nothing from another origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
REALM = 'Basic realm="edge-agent web view", charset="UTF-8"'


@dataclass(frozen=True)
class Credentials:
    """Resolved secrets; `None` fields accept nothing."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def resolve(cls, web_cfg: WebSection) -> Credentials:
        """Read the secret references now (raises `SecretError` naming the reference)."""
        return cls(
            token=web_cfg.token.resolve() if web_cfg.token else None,
            username=web_cfg.username,
            password=web_cfg.password.resolve() if web_cfg.password else None,
        )

    def accepts(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return self.token is not None and _same(value.strip(), self.token)
        if scheme != "basic":
            return False
        try:
            user, sep, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        if self.token is not None and _same(password, self.token):
            return True  # a browser's login prompt: any user name, the token as password
        if self.username is None or self.password is None:
            return False
        return _same(user, self.username) & _same(password, self.password)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Access:
    """The middleware for the web view's routes (`prefixes`) and the headers of every answer."""

    def __init__(
        self, web_cfg: WebSection, listen: str, credentials: Credentials, prefixes: tuple[str, ...]
    ) -> None:
        self.required = login_required(web_cfg, listen)
        self.tls = web_cfg.tls_cert is not None
        self._credentials = credentials
        self._prefixes = prefixes
        self._refused: set[str] = set()

    def guarded(self, path: str) -> bool:
        return path == "/" or path.startswith(self._prefixes)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guarded = self.guarded(request.path)
        if guarded and self.required and not self._allowed(request):
            response: web.StreamResponse = web.Response(
                status=401, text="login required\n", headers={"WWW-Authenticate": REALM}
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if guarded:
                    self._decorate(exc)
                raise
        if guarded:
            self._decorate(response)
        return response

    def _allowed(self, request: web.Request) -> bool:
        authorization = request.headers.get("Authorization", "")
        if authorization and self._credentials.accepts(authorization):
            return True
        peer = request.remote or "?"
        if peer not in self._refused:
            self._refused.add(peer)
            log.warning(
                "web_login_refused",
                peer=peer,
                path=request.path,
                reason="wrong credentials" if authorization else "no credentials",
            )
        return False

    def _decorate(self, response: web.StreamResponse) -> None:
        if response.prepared:  # the push stream set its own headers before it started
            return
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if self.required or "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store" if self.required else "no-cache"
        if self.tls:
            headers["Strict-Transport-Security"] = "max-age=31536000"


def tls_context(web_cfg: WebSection) -> ssl.SSLContext | None:
    """The listener's server context when certificate files are given (TLS 1.2 or newer)."""
    if web_cfg.tls_cert is None or web_cfg.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(web_cfg.tls_cert, web_cfg.tls_key)
    return context
