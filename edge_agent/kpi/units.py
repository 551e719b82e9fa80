"""Conversion of mass and mass-flow readings to tonnes and t/h, from each tag's declared unit.

Totalisers at the furnace count tonnes, those at the kiln kilograms; a KPI never assumes which.
"""

from __future__ import annotations

_MASS_T = {"t": 1.0, "kg": 1e-3, "g": 1e-6}
_TIME_H = {"h": 1.0, "min": 1 / 60, "s": 1 / 3600}


class UnitError(ValueError):
    """A tag's declared unit is not one this conversion knows."""


def tonnes_factor(unit: str) -> float:
    """Multiplier from a mass unit (t, kg, g) to tonnes."""
    try:
        return _MASS_T[unit.strip()]
    except KeyError:
        raise UnitError(f"unit {unit!r} is not a mass unit (t, kg, g)") from None


def tph_factor(unit: str) -> float:
    """Multiplier from a mass-flow unit (t/h, kg/h, kg/s, ...) to t/h."""
    mass, _, per = unit.strip().partition("/")
    if not per or per not in _TIME_H:
        raise UnitError(f"unit {unit!r} is not a mass flow (t/h, kg/h, kg/s, ...)")
    if mass.strip() not in _MASS_T:
        raise UnitError(f"unit {unit!r} is not a mass flow (t/h, kg/h, kg/s, ...)")
    return tonnes_factor(mass) / _TIME_H[per]


def is_volume_flow(unit: str) -> bool:
    """Normal cubic metres per hour (gas flows)."""
    return unit.strip() in ("Nm³/h", "Nm3/h")
