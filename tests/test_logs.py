"""Logging: JSON lines off a terminal (journald), readable lines on one, level filtering."""

from __future__ import annotations

import io
import json
import logging

import structlog

from edge_agent.logs import configure_logging


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out)
    structlog.get_logger().bind(source="fsf").info("source_connected", tags=36)
    structlog.get_logger().debug("too_detailed")
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "source_connected"
    assert (record["source"], record["tags"], record["level"]) == ("fsf", 36, "info")
    assert record["timestamp"].endswith("Z")


def test_console_on_a_terminal() -> None:
    out = Terminal()
    configure_logging("debug", "auto", out)
    structlog.get_logger().debug("poll_cycle", source="offgas")
    text = out.getvalue()
    assert "poll_cycle" in text
    assert "source" in text
    assert "offgas" in text
    assert not text.lstrip().startswith("{")


def test_library_warnings_come_out_in_the_same_format() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("asyncua.client").warning("session lost")
    logging.getLogger("asyncua.client").info("chatty detail")
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert (record["event"], record["logger"], record["level"]) == (
        "session lost",
        "asyncua.client",
        "warning",
    )


def test_exceptions_are_structured_in_json() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    try:
        raise ConnectionError("gateway unreachable")
    except ConnectionError:
        structlog.get_logger().exception("service_failed", service="offgas")
    record = json.loads(out.getvalue())
    assert record["exception"][0]["exc_type"] == "ConnectionError"
    assert record["exception"][0]["exc_value"] == "gateway unreachable"


def test_pymodbus_repeats_what_the_driver_reports_so_only_its_errors_show() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("pymodbus.logging").warning("Failed to connect [Errno 111]")
    logging.getLogger("pymodbus.logging").error("a real pymodbus error")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["a real pymodbus error"]
    configure_logging("debug", "json", out)  # still there for whoever debugs
    logging.getLogger("pymodbus.logging").warning("Repeating....")
    assert "Repeating...." in out.getvalue()
