"""Network addresses in the configuration: a form each protocol can connect to, or an error.

A port is 1..65535, a host is a name or an IP literal (IPv6 in brackets), and an endpoint URL
has its protocol's scheme and a host. Each check returns the value or raises a ValueError that
says what form was expected, which the loader prints with the key.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?)$")


def host(value: str) -> str:
    """A host name or IP address, without scheme or port (`broker.plant`, `10.0.0.5`)."""
    if not _HOST.match(value):
        raise ValueError("must be a host name or IP address (no scheme, no port)")
    return value


def host_port(value: str, *, listen: bool = False) -> str:
    """`host:port` with a port of 1..65535. To listen (`listen`), the host may be left out: the
    listener then binds loopback (`health.parse_listen`). Port 0 (any free port) is refused:
    nobody could find an endpoint whose port changes with every start (tests pick a free port
    before they write the configuration)."""
    name, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must be host:port with a port of 1..65535")
    if not (listen and name == "") and not _HOST.match(name):
        raise ValueError(f"must be host:port; {name!r} is not a host name or IP address")
    return value


def url(value: str, schemes: tuple[str, ...]) -> str:
    """`scheme://host[:port][/path]` with one of `schemes` and a port, if given, of 1..65535."""
    expected = f"{schemes[0]}://host[:port]"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"must be {expected} with a port of 1..65535") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be {expected}")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"must be {expected} with a port of 1..65535")
    return value
