"""Secret values never reach the log output: no locals in tracebacks, a mask on every line."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from edge_agent.logs import LogFormat, configure_logging, mask_secrets
from edge_agent.redaction import MASK, SecretMask

SECRET = 'hunter2-"quoted"\\back-é'


def test_every_spelling_of_a_secret_is_masked() -> None:
    mask = SecretMask([SECRET])
    spellings = [SECRET, json.dumps(SECRET), repr(SECRET), json.dumps(SECRET, ensure_ascii=False)]
    spellings += [repr(SECRET.encode()), json.dumps(repr(SECRET.encode()))]
    for text in spellings:
        assert "hunter2" not in mask.mask(f"before {text} after"), text
    assert mask.mask("nothing secret here") == "nothing secret here"


def test_a_secret_containing_another_is_masked_whole() -> None:
    mask = SecretMask(["abc"])
    mask.learn(["xxabcxx", ""])
    assert mask.mask("1 xxabcxx 2 abc") == f"1 {MASK} 2 {MASK}"


def _connect(password: str) -> None:
    login = {"user": "edge", "password": password}  # a local, as in a real client
    raise ConnectionRefusedError(f"broker refused {login['user']}")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_show_no_locals_and_messages_are_masked(fmt: LogFormat) -> None:
    out = io.StringIO()
    configure_logging("debug", fmt, out, SecretMask([SECRET]))
    log = structlog.get_logger()
    try:
        _connect(SECRET)
    except ConnectionRefusedError:
        log.exception("service_failed", service="mqtt")
    log.error("sink_failed", error=f"login with {SECRET!r} failed")
    logging.getLogger("paho").warning("CONNACK for password %s", SECRET)
    try:
        _connect(SECRET)
    except ConnectionRefusedError:
        logging.getLogger("asyncua").exception("client failed")
    text = out.getvalue()
    assert "service_failed" in text
    assert "ConnectionRefusedError" in text
    assert "_connect" in text  # the traceback is there, without its locals
    assert "hunter2" not in text
    assert "'password'" not in text  # no rendering of the frame's locals
    assert text.count(MASK) >= 2


def test_a_command_can_teach_the_configured_mask_later() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    mask_secrets(["late-secret-42"])  # probe and balance resolve their config after set-up
    structlog.get_logger().info("probe_connecting", url="opc.tcp://u:late-secret-42@plc")
    logging.getLogger("asyncua").warning("password late-secret-42 rejected")
    assert "late-secret-42" not in out.getvalue()
    assert out.getvalue().count(MASK) == 2
