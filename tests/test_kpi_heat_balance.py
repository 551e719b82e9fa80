"""The furnace balance against process-model §4: thermochemistry, the reference case, and
closure of every element balance for any valid input."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.kpi.furnace import (
    BalanceError,
    Concentrate,
    FurnaceModel,
    OperatingPoint,
    RecycledMaterial,
    cooling_loss_mw,
)
from edge_agent.kpi.heat_balance import mineralogy, solve, solve_at_oxygen
from edge_agent.kpi.thermochemistry import (
    MW_FES,
    NM3_PER_KMOL,
    Organics,
    SensibleHeat,
    reaction_enthalpy,
)

HEAVY_OIL = Organics(c=0.854, h=0.12, o=0.026, lhv_mj_per_kg=40.4)
REFERENCE_MODEL = FurnaceModel(
    concentrate=Concentrate(cu=0.30, fe=0.23, s=0.28, sio2=0.08, other=0.11),
    recycled={
        "cu_scrap": RecycledMaterial(cu_metal=1.0),
        "iron": RecycledMaterial(fe_metal=1.0),
        "aluminium": RecycledMaterial(al_metal=1.0),
        "oxides": RecycledMaterial(),
        "resin": RecycledMaterial(organics=1.0, organic_matter=Organics(0.62, 0.06, 0.12, 28.0)),
    },
    fuel=HEAVY_OIL,
)
# 65 % enrichment: technical O2 at 93 % plus air, sized to the oxygen demand
REFERENCE_OP = OperatingPoint(
    conc_tph=215.0, recycled_tph={}, fuel_kgph=0.0, o2_nm3h=32050.0, o2_purity=0.93,
    air_nm3h=20370.0, matte_grade=0.65, matte_temp_c=1250.0, slag_temp_c=1280.0,
    offgas_temp_c=1300.0, q_loss_mw=15.0,
)  # fmt: skip


def test_fes_oxidation_enthalpy() -> None:
    dh = reaction_enthalpy({"FeS": 1, "O2": 1.5}, {"FeO": 1, "SO2": 1})
    assert dh == pytest.approx(-466.3, abs=0.05)
    assert dh / MW_FES == pytest.approx(-5.30, abs=0.005)  # MJ per kg FeS


def test_chalcopyrite_oxidation_enthalpy() -> None:
    dh = reaction_enthalpy({"CuFeS2": 2, "O2": 4}, {"Cu2S": 1, "FeO": 2, "SO2": 3})
    assert dh / 2 == pytest.approx(-562.5, abs=0.05)


def test_mineralogy_carries_the_assay() -> None:
    m = mineralogy(REFERENCE_MODEL.concentrate)
    cu = m["CuFeS2"] + 2 * m["Cu2S"]
    fe = m["CuFeS2"] + m["FeS2"] + m["FeS"]
    s = 2 * m["CuFeS2"] + m["Cu2S"] + 2 * m["FeS2"] + m["FeS"]
    assert cu * 63.546 == pytest.approx(300.0)  # kg per t
    assert fe * 55.845 == pytest.approx(230.0)
    assert s * 32.06 == pytest.approx(280.0)
    assert min(m.values()) >= 0


def test_sulfur_poor_assay_uses_pyrrhotite_and_impossible_assay_is_refused() -> None:
    m = mineralogy(Concentrate(cu=0.25, fe=0.30, s=0.25, sio2=0.1, other=0.1))
    assert m["FeS2"] == 0
    assert m["FeS"] > 0
    with pytest.raises(BalanceError, match="fits no mix"):
        mineralogy(Concentrate(cu=0.30, fe=0.25, s=0.05, sio2=0.2, other=0.2))


def within(actual: float, expected: float, rel: float = 0.02) -> bool:
    return abs(actual - expected) <= rel * abs(expected)


def test_reference_case() -> None:
    b = solve(REFERENCE_MODEL, REFERENCE_OP)
    assert REFERENCE_OP.enrichment == pytest.approx(0.65, abs=1e-3)
    expected = {
        "reaction_mw": 119.5, "o2_demand_nm3h": 34100, "flux_tph": 16.0, "matte_tph": 97.6,
        "slag_tph": 107.5, "matte_heat_mw": 22.2, "slag_heat_mw": 43.3,
        "offgas_heat_mw": 30.7, "dust_heat_mw": 4.2,
    }  # fmt: skip
    for attr, value in expected.items():
        assert within(getattr(b, attr), value), f"{attr}: {getattr(b, attr):.2f} vs {value}"
    assert b.margin_mw == pytest.approx(4.2, abs=1.5)
    assert b.largest_imbalance() < 1e-3


def test_sensible_heats_follow_temperature() -> None:
    hot = solve(REFERENCE_MODEL, replace(REFERENCE_OP, matte_temp_c=1300.0, slag_temp_c=1330.0))
    base = solve(REFERENCE_MODEL, REFERENCE_OP)
    assert hot.matte_heat_mw > base.matte_heat_mw
    assert hot.slag_heat_mw > base.slag_heat_mw
    assert hot.margin_mw < base.margin_mw
    assert SensibleHeat(1.0, 1300.0, 0.001).at(1200.0) == pytest.approx(0.9)


def heat_demand_gj_t(stream: str, hold_oxygen: bool = False) -> float:
    base = solve(REFERENCE_MODEL, REFERENCE_OP)
    op = REFERENCE_OP.with_stream(stream, 1.0)
    if hold_oxygen:
        o2 = base.o2_demand_nm3h / NM3_PER_KMOL
        after = solve_at_oxygen(REFERENCE_MODEL, op, o2, base.n2_nm3h / NM3_PER_KMOL)
    else:
        after = solve(REFERENCE_MODEL, op)
    return (base.margin_mw - after.margin_mw) * 3.6


def test_marginal_heat_demands_match_the_orientation_values() -> None:
    """Process-model §4's engineering estimates, derived here by the model itself."""
    assert heat_demand_gj_t("cu_scrap") == pytest.approx(3.0, abs=0.3)
    assert heat_demand_gj_t("cu_scrap", hold_oxygen=True) == pytest.approx(0.6, abs=0.2)
    assert heat_demand_gj_t("oxides") == pytest.approx(1.45, abs=0.15)
    assert heat_demand_gj_t("iron") == pytest.approx(-1.6, abs=0.5)
    assert heat_demand_gj_t("aluminium") == pytest.approx(-28, abs=2)
    assert -33 <= heat_demand_gj_t("resin") <= -20


def test_heavy_oil_usable_share_and_enrichment_effect() -> None:
    base = solve(REFERENCE_MODEL, REFERENCE_OP)
    fired = solve(REFERENCE_MODEL, replace(REFERENCE_OP, fuel_kgph=1000.0))
    usable = (fired.margin_mw - base.margin_mw) * 3.6 / HEAVY_OIL.lhv_mj_per_kg
    assert usable == pytest.approx(0.73, abs=0.04)

    def margin_at(enrichment: float) -> float:
        # all-technical-oxygen blast diluted with air to the given enrichment
        p, total = 0.93, 50000.0
        o2 = total * (enrichment - 0.2095) / (p - 0.2095)
        return solve(
            REFERENCE_MODEL, replace(REFERENCE_OP, o2_nm3h=o2, air_nm3h=total - o2)
        ).margin_mw

    assert margin_at(0.71) - margin_at(0.70) == pytest.approx(0.35, abs=0.05)


def test_hold_oxygen_closure_finds_the_measured_grade_again() -> None:
    base = solve(REFERENCE_MODEL, REFERENCE_OP)
    again = solve_at_oxygen(
        REFERENCE_MODEL, REFERENCE_OP, base.o2_demand_nm3h / NM3_PER_KMOL,
        base.n2_nm3h / NM3_PER_KMOL,
    )  # fmt: skip
    assert again.matte_grade == pytest.approx(0.65, abs=1e-6)
    assert again.margin_mw == pytest.approx(base.margin_mw, abs=1e-3)


def test_impossible_grade_is_refused() -> None:
    with pytest.raises(BalanceError, match="grade"):
        solve(REFERENCE_MODEL, replace(REFERENCE_OP, matte_grade=0.85))
    with pytest.raises(BalanceError, match="more Fe"):
        solve(REFERENCE_MODEL, replace(REFERENCE_OP, matte_grade=0.30))


def test_cooling_water_loss() -> None:
    # 100 m³/h warmed by 10 K: 992 kg/m³ · 4.18 kJ/kg/K · 100/3600 m³/s · 10 K = 1.152 MW
    assert cooling_loss_mw([(100.0, 30.0, 40.0)], 0.0) == pytest.approx(1.1518, abs=1e-3)
    assert cooling_loss_mw([(100.0, 30.0, 40.0), (50.0, 30.0, 50.0)], 2.0) == pytest.approx(
        4.3036, abs=1e-3
    )


fraction = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def furnaces(draw: st.DrawFn) -> tuple[FurnaceModel, OperatingPoint]:
    cu = draw(st.floats(0.15, 0.32))
    fe = draw(st.floats(0.18, 0.30))
    # sulfide concentrates: at least enough S for Cu2S + FeS, at most CuFeS2 + FeS2
    n_cu, n_fe = cu / 63.546, fe / 55.845
    s = draw(st.floats(1.02 * (n_cu / 2 + n_fe) * 32.06, 0.98 * (2 * n_fe + n_cu / 2) * 32.06))
    sio2 = draw(st.floats(0.02, 0.10))
    other = max(0.0, 1 - cu - fe - s - sio2)
    conc = Concentrate(cu, fe, s, sio2, other)
    scrap = RecycledMaterial(
        cu_metal=draw(st.floats(0, 0.5)), fe_metal=draw(st.floats(0, 0.1)),
        al_metal=draw(st.floats(0, 0.05)), sio2=draw(st.floats(0, 0.3)),
        organics=draw(st.floats(0, 0.1)), moisture=draw(st.floats(0, 0.05)),
    )  # fmt: skip
    model = FurnaceModel(
        concentrate=conc, recycled={"scrap": scrap}, fuel=HEAVY_OIL,
        slag_fe_sio2=draw(st.floats(0.9, 1.5)), slag_cu=draw(st.floats(0.005, 0.02)),
        fe3o4_share=draw(st.floats(0.0, 0.3)), dust_fraction=draw(st.floats(0, 0.1)),
        excess_o2=draw(st.floats(0, 0.05)),
    )  # fmt: skip
    op = OperatingPoint(
        conc_tph=draw(st.floats(150, 250)), recycled_tph={"scrap": draw(st.floats(0, 40))},
        fuel_kgph=draw(st.floats(0, 1500)), o2_nm3h=draw(st.floats(15000, 40000)),
        o2_purity=draw(st.floats(0.9, 0.95)), air_nm3h=draw(st.floats(0, 30000)),
        matte_grade=draw(st.floats(0.55, 0.72)), matte_temp_c=draw(st.floats(1200, 1300)),
        slag_temp_c=draw(st.floats(1230, 1330)), offgas_temp_c=draw(st.floats(1250, 1400)),
        q_loss_mw=draw(st.floats(5, 25)),
    )  # fmt: skip
    return model, op


@settings(max_examples=300, deadline=None)
@given(furnaces())
def test_every_element_balance_closes(case: tuple[FurnaceModel, OperatingPoint]) -> None:
    model, op = case
    b = solve(model, op)
    assert b.largest_imbalance() < 1e-3, (b.elements_in, b.elements_out)
    # and once more with the blast fixed and the grade floating
    o2 = b.o2_demand_nm3h / NM3_PER_KMOL
    held = solve_at_oxygen(model, op.with_stream("scrap", op.recycled_tph["scrap"] + 1.0), o2,
                           b.n2_nm3h / NM3_PER_KMOL)  # fmt: skip
    assert held.largest_imbalance() < 1e-3
    assert held.o2_demand_nm3h == pytest.approx(b.o2_demand_nm3h, rel=1e-3)
