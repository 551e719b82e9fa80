"""The `[web]` table: the browser view and its JSON API on the health listener.

Safe by default: on a loopback `health.listen` the view is open (only this machine can reach it);
on any other address it requires a login, and a configuration that would serve it without one
does not load (`rules.web_auth`). With `tls_cert` and `tls_key` the whole listener speaks HTTPS.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from edge_agent.contracts.secrets import SecretRef
from edge_agent.contracts.section import Section


class WebSection(Section):
    """`auth = "auto"` requires a login unless `health.listen` is a loopback address;
    `"required"` always does. Browsers log in with HTTP Basic (user name and password, or any
    user name and the token as password); scripts may send `Authorization: Bearer <token>`."""

    enabled: bool = True
    auth: Literal["auto", "required"] = "auto"
    token: SecretRef | None = None
    username: str | None = Field(None, min_length=1, pattern=r"^[^:\s]+$")
    password: SecretRef | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The history ring: `history_s` of every numeric tag in buckets of `history_step_s`.
    history_s: float = Field(3600.0, ge=60, le=86400)
    history_step_s: float = Field(30.0, ge=1, le=3600)
    push_interval_s: float = Field(0.5, ge=0.1, le=10)
    # Where charts get history: the ring only, or the database the InfluxDB sink writes to
    # (VictoriaMetrics through its Prometheus API, InfluxDB 1.x through InfluxQL).
    trends: Literal["ring", "prometheus", "influxql"] = "ring"
    max_clients: int = Field(20, ge=1, le=1000)

    @model_validator(mode="after")
    def _pairs(self) -> WebSection:
        if (self.username is None) != (self.password is None):
            raise ValueError("give username and password together")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give tls_cert and tls_key together")
        if self.history_step_s > self.history_s / 2:
            raise ValueError(
                f"history_step_s = {self.history_step_s} leaves fewer than two buckets in "
                f"history_s = {self.history_s}"
            )
        return self

    @property
    def has_login(self) -> bool:
        return self.token is not None or self.password is not None


def is_loopback(listen: str) -> bool:
    """Whether `host:port` binds only this machine: 127.0.0.0/8, ::1, `localhost` or no host
    (the health listener's default). A name that is not `localhost` counts as reachable."""
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def login_required(web: WebSection, listen: str) -> bool:
    return web.enabled and (web.auth == "required" or not is_loopback(listen))


def check_login(web: WebSection, listen: str) -> None:
    """A view that must ask for a login but has none to ask for does not start."""
    if login_required(web, listen) and not web.has_login:
        why = (
            "web.auth = 'required'"
            if web.auth == "required"
            else (f"health.listen = {listen!r} is not a loopback address")
        )
        raise ValueError(
            f"{why}, so the web view requires a login: give web.token, or web.username and "
            "web.password (secret references), or set web.enabled = false"
        )


def check_trends(web: WebSection, influx: Any) -> None:
    """Trends from a database need the [influx] section that says where it is."""
    if web.trends == "ring":
        return
    if influx is None:
        raise ValueError(
            f"web.trends = {web.trends!r} reads the InfluxDB sink's database: add [influx]"
        )
    if web.trends == "influxql" and influx.api != "v1":
        raise ValueError("web.trends = 'influxql' needs influx.api = 'v1' (its db is queried)")
