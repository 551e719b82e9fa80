"""A real server as a child process of the test: start on a free loopback port, readiness,
stop (SIGTERM or SIGKILL), restart on the same port with the same data; the base of every
fixture in `tests.support.services` and `tests.support.databases`."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test process dies, the kernel kills the server."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class ServerProcess:
    """One server process: config generation, start, readiness, stop, restart on the same port."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what a subclass provides

    def argv(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """True once the server serves requests (not merely once the process exists)."""
        raise NotImplementedError

    def _choose_ports(self) -> None:
        """Pick fresh ports; called before a first start and again if that start lost a race."""
        raise NotImplementedError

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) and return once the server answers."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise RuntimeError(f"{self.name} exited with {code} at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise TimeoutError(f"{self.name} did not answer within {START_TIMEOUT_S}s")
            time.sleep(0.02)

    def first_start(self) -> None:
        """Start on fresh ports; another process may grab a free port first, so retry."""
        for attempt in range(3):
            self._choose_ports()
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) and wait; the data directory and ports stay for `start()`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server stopped in its tracks (SIGSTOP) for the block: its sockets stay open and
        the kernel still takes what clients send, but it answers nothing until SIGCONT."""
        assert self._proc is not None, "start() first"
        self._proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._proc.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        self.first_start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(kill=True)


# Loopback only, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Plain HTTP for the fixtures' helpers (tests' own clients are the product's business)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _DIRECT.open(req, timeout=5) as resp:
            status: int = resp.status
            return status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _connects(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False
