"""config/demo.toml and the simulators describe the same plant, and the fixtures' configs load."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import AgentConfig, ModbusTag, OpcUaTag
from simulators.agent_config import demo_config, synthetic_config
from simulators.heat import M_CU, M_FE, M_S, NM3_PER_KMOL, Inputs, TrueParameters, evaluate
from simulators.tags import ALL_TAGS, FSF_TAGS, REGISTERS, node_id

# The kiln's PLC counts kg; the demo config publishes every totaliser of the plant in t.
PUBLISHED_IN = {"kiln.feed_total": (0.001, "t"), "kiln.residue_total": (0.001, "t")}


def test_demo_toml_names_every_simulated_tag_at_its_address(demo_config_path: Path) -> None:
    doc = demo_config("opc.tcp://127.0.0.1:1/smelter/", "tcp://127.0.0.1:2", demo_config_path)
    tags = AgentConfig.model_validate(doc).tags()
    assert set(tags) == set(ALL_TAGS)
    for spec in FSF_TAGS:
        tag = tags[spec.id]
        assert isinstance(tag, OpcUaTag)
        assert tag.node == node_id(spec.id)
        assert tag.unit == spec.unit, spec.id
        assert tag.writable == (spec.bounds is not None), spec.id
        if spec.bounds is not None:
            assert (tag.min, tag.max) == spec.bounds, spec.id
    for reg in REGISTERS:
        tag = tags[reg.tag]
        assert isinstance(tag, ModbusTag)
        got = (tag.unit_id, tag.table, tag.address, tag.type, tag.scale, tag.unit)
        scale, unit = PUBLISHED_IN.get(reg.tag, (reg.scale, ALL_TAGS[reg.tag].unit))
        assert got == (reg.unit_id, reg.table, reg.address, reg.encoding, scale, unit), reg.tag
        if reg.count == 2:
            assert tag.byte_order == reg.byte_order, reg.tag


def test_demo_config_points_every_source_at_the_simulator() -> None:
    doc = demo_config("opc.tcp://127.0.0.1:1/smelter/", "tcp://127.0.0.1:2")
    endpoints = {s["name"]: s["endpoint"] for s in doc["source"]}
    assert endpoints == {"fsf": "opc.tcp://127.0.0.1:1/smelter/", "offgas": "tcp://127.0.0.1:2",
                         "kiln": "tcp://127.0.0.1:2"}  # fmt: skip


def test_synthetic_config_for_20000_tags_validates() -> None:
    doc = synthetic_config("opc.tcp://127.0.0.1:1/smelter/", "tcp://127.0.0.1:2", 20000)
    cfg = AgentConfig.model_validate(doc)
    assert len(cfg.tags()) == 40000
    last = cfg.tags()["synth_modbus.t19999"]
    assert isinstance(last, ModbusTag)
    assert (last.unit_id, last.address, last.type) == (4, 39998, "float32")


def test_the_true_balance_closes_for_every_element() -> None:
    x = Inputs(conc_tph=220, escrap_tph=20, cu_scrap_tph=5, flux_tph=15, reverts_tph=14,
               o2_nm3h=33000, o2_purity_pct=93, air_nm3h=20000, fuel_kgh=600)  # fmt: skip
    p = TrueParameters()
    b = evaluate(x, p)
    cu_in = (x.conc_tph * p.conc.cu + x.escrap_tph * p.escrap.cu + x.cu_scrap_tph) * 1000 / M_CU
    s_in = x.conc_tph * p.conc.s * 1000 / M_S
    fe_in = (x.conc_tph * p.conc.fe + x.escrap_tph * p.escrap.fe) * 1000 / M_FE
    cu_matte = b.matte_tph * 1000 * b.matte_grade_pct / 100 / M_CU
    assert cu_matte == pytest.approx(cu_in, rel=1e-3)
    fes = (b.matte_tph * 1000 - cu_in / 2 * 159.16) / 87.91
    assert cu_in / 2 + fes + b.gas_kmolh["SO2"] == pytest.approx(s_in, rel=1e-3)
    assert 0 < fes < fe_in
    o2_in = (x.o2_nm3h * x.o2_purity_pct / 100 + x.air_nm3h * 0.21) / NM3_PER_KMOL
    assert b.gas_kmolh["O2"] < 0.03 * o2_in  # nearly all the oxygen reacts
