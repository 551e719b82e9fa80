"""Shared fixtures. Service fixtures (Mosquitto, InfluxDB 1.x, VictoriaMetrics) live in
tests/support/services.py; simulator fixtures in tests/support/plant.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

pytest_plugins = ["tests.support.services", "tests.support.plant", "tests.support.browser"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_config_path() -> Path:
    return ROOT / "config" / "demo.toml"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests that call the CLI configure logging onto pytest's captured streams, which close
    after the test: put the process-wide logging configuration back every time."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
