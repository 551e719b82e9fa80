"""Shared fixtures. Service fixtures (Mosquitto, InfluxDB 1.x, VictoriaMetrics) live in
tests/services.py; simulator fixtures in tests/plant.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins: list[str] = ["tests.plant"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_config_path() -> Path:
    return ROOT / "config" / "demo.toml"
