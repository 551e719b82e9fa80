"""The [control] section: safe defaults, and cross-checks naming the offending key and value."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent.config import AgentConfig
from tests.support.fake_plant import CONFIG


def load(mutate: Any) -> AgentConfig:
    data = tomllib.loads(CONFIG)
    mutate(data)
    return AgentConfig.model_validate(data)


def test_default_is_advisory_with_heartbeat_off() -> None:
    cfg = AgentConfig()
    assert cfg.control.mode == "advisory"
    assert not cfg.control.heartbeat_on
    assert cfg.control.allow == []


def test_heartbeat_defaults_on_in_closed_loop() -> None:
    cfg = load(lambda d: None)
    assert cfg.control.mode == "closed_loop"
    assert cfg.control.heartbeat_on


def test_demo_config_is_advisory_with_an_allowlist(demo_config_path: Path) -> None:
    cfg = AgentConfig.model_validate(tomllib.loads(demo_config_path.read_text()))
    assert cfg.control.mode == "advisory"
    assert not cfg.control.heartbeat_on
    assert {a.tag for a in cfg.control.allow} >= {"fsf.fuel_flow_sp", "fsf.o2_flow_sp"}


def _allow(**changes: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["control"]["allow"][0].update(changes)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (_allow(tag="fsf.nope"), "control.allow.0.tag: no source defines this tag"),
        (_allow(tag="fsf.matte_temp"), "not writable"),
        (_allow(max=1600.0), "control.allow.0.max: lies outside the tag's own bounds [0, 1500]"),
        (_allow(min=900.0, max=800.0), "min 900.0 is above max 800.0"),
        (_allow(origins=[]), "origins"),
        (_allow(origins=["operator"]), "origins"),
        (_allow(max_rate_per_min=0), "max_rate_per_min"),
        (_allow(tag="fsf.o2_flow_sp", min=25000.0, max=40000.0), "allowlisted twice"),
        (lambda d: d["control"].update(permissive_tag="fsf.nope"), "control.permissive_tag"),
        (lambda d: d["control"].update(heartbeat={"tag": "fsf.nope"}), "control.heartbeat.tag"),
        (
            lambda d: d["control"].update(heartbeat={"tag": "fsf.matte_temp"}),
            "is not writable",
        ),
        (lambda d: d["control"].update(mode="auto"), "mode"),
    ],
)
def test_bad_control_config_names_the_problem(mutate: Any, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        load(mutate)
    assert words in str(info.value)
