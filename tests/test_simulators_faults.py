"""Faults on demand (simulators/faults.py): what each fault may be applied to."""

from __future__ import annotations

import pytest

from simulators.faults import FaultError, Faults, parse


def test_no_value_markers_are_for_modbus_integers() -> None:
    faults = Faults()
    with pytest.raises(FaultError, match="integers"):
        faults.no_value_marker("offgas.so2_pct")  # float32
    with pytest.raises(FaultError, match="not served over Modbus"):
        faults.no_value_marker("fsf.matte_temp")
    assert parse("novalue:kiln.temp").kind == "novalue"
