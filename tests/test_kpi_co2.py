"""CO2 from fuels and kiln burn-off (process-model §6)."""

from __future__ import annotations

import pytest

from edge_agent.kpi.co2 import co2_rate, fuel_factor
from edge_agent.kpi.units import UnitError


def test_fuel_factors_follow_the_tags_unit() -> None:
    oil = fuel_factor("oil", "kg/h", 3.13, None)
    assert oil.t_co2_per_h_per_unit * 1000 == pytest.approx(3.13)  # 1000 kg/h -> 3.13 t/h
    lng = fuel_factor("lng", "Nm³/h", None, 1.93)
    assert lng.t_co2_per_h_per_unit * 1000 == pytest.approx(1.93)
    with pytest.raises(UnitError, match="kg_co2_per_nm3"):
        fuel_factor("lng", "Nm³/h", 2.69, None)
    with pytest.raises(UnitError, match="t_co2_per_t"):
        fuel_factor("oil", "t/h", None, 1.9)


def test_rate_from_fuels_and_kiln_burnoff() -> None:
    factors = [fuel_factor("oil", "kg/h", 3.13, None), fuel_factor("lng", "Nm³/h", None, 1.93)]
    rate = co2_rate({"oil": 500.0, "lng": 400.0}, factors, 12.0, 10.0, burnoff_carbon=0.6)
    assert rate.by_source_tph["oil"] == pytest.approx(1.565)
    assert rate.by_source_tph["lng"] == pytest.approx(0.772)
    assert rate.by_source_tph["kiln_burnoff"] == pytest.approx(2.0 * 0.6 * 44.0095 / 12.011)
    assert rate.total_tph == pytest.approx(sum(rate.by_source_tph.values()))


def test_moisture_is_not_counted_as_organics() -> None:
    rate = co2_rate({}, [], 10.0, 8.0, burnoff_carbon=0.6, kiln_feed_moisture=0.05)
    assert rate.by_source_tph["kiln_burnoff"] == pytest.approx(1.5 * 0.6 * 44.0095 / 12.011)
    assert co2_rate({}, [], 10.0, 10.5).by_source_tph["kiln_burnoff"] == 0.0
