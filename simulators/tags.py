"""The demo plant's instruments as the simulators serve them (docs/process-model.md §2).

One table drives everything: the OPC UA address space, the Modbus register map, the ranges the
24-hour test checks and docs/simulators.md. `normal` is the range the simulated plant stays in
without faults; `eu_range` is the instrument's span (the OPC UA EURange property).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAMESPACE_URI = "urn:smelter:sim"
OPCUA_PATH = "/smelter/"

Kind = Literal["double", "bool", "int32"]
Table = Literal["holding", "input"]
Encoding = Literal["float32", "int16", "uint16", "uint32"]


@dataclass(frozen=True)
class TagSpec:
    id: str
    unit: str
    normal: tuple[float, float]
    eu_range: tuple[float, float]
    description: str
    folder: str = ""  # OPC UA folder under FSF; empty for Modbus tags
    kind: Kind = "double"
    writable: bool = False
    # Setpoints refuse writes outside these bounds with BadOutOfRange.
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class Register:
    """Where a Modbus tag lives and how it is encoded (docs/simulators.md, register map)."""

    tag: str
    unit_id: int
    table: Table
    address: int
    encoding: Encoding
    byte_order: Literal["ABCD", "CDAB"] = "ABCD"
    scale: float = 1.0  # engineering value = raw * scale

    @property
    def count(self) -> int:
        return 1 if self.encoding in ("int16", "uint16") else 2


def _fsf(
    name: str, unit: str, normal: tuple[float, float], eu: tuple[float, float], folder: str,
    description: str, **kw: object,
) -> TagSpec:  # fmt: skip
    return TagSpec(f"fsf.{name}", unit, normal, eu, description, folder, **kw)  # type: ignore[arg-type]


_FEEDS = [
    ("conc", "dry concentrate, loss-in-weight feeder", (200, 230), (0, 300)),
    ("escrap", "kiln-treated e-scrap", (5, 30), (0, 50)),
    ("cu_scrap", "copper scrap", (0, 10), (0, 20)),
    ("flux", "silica flux", (10, 20), (0, 40)),
    ("reverts", "recycled own dust", (10, 18), (0, 40)),
]

FSF_TAGS: list[TagSpec] = [
    spec
    for name, what, normal, eu in _FEEDS
    for spec in (
        _fsf(f"{name}_feed_rate", "t/h", normal, eu, "Feed", f"{what} feed rate"),
        _fsf(f"{name}_feed_total", "t", (0, 1e9), (0, 1e12), "Feed", f"{what} totaliser"),
    )
] + [
    _fsf("o2_flow", "Nm³/h", (25000, 40000), (0, 60000), "Feed", "technical oxygen"),
    _fsf("o2_purity", "%", (90, 95), (0, 100), "Feed", "oxygen purity"),
    _fsf("air_flow", "Nm³/h", (10000, 30000), (0, 50000), "Feed", "process air"),
    _fsf("fuel_flow", "kg/h", (0, 1500), (0, 2000), "Feed", "heavy oil to shaft burners"),
    _fsf("shaft_temp", "°C", (1250, 1400), (0, 1800), "Temperatures", "reaction shaft"),
    _fsf("uptake_temp", "°C", (1250, 1400), (0, 1800), "Temperatures", "uptake (off-gas exit)"),
    _fsf("settler_roof_temp", "°C", (1250, 1400), (0, 1800), "Temperatures", "settler roof"),
    _fsf("matte_temp", "°C", (1220, 1275), (1000, 1500), "Temperatures", "matte tap temperature"),
    _fsf("slag_temp", "°C", (1250, 1305), (1000, 1500), "Temperatures", "slag tap temperature"),
    _fsf("matte_grade", "%", (58, 72), (0, 100), "Assays", "matte Cu assay, hourly"),
    _fsf("slag_fe_sio2", "", (1.0, 1.4), (0, 3), "Assays", "slag Fe/SiO2 assay, hourly"),
] + [
    spec
    for circuit in ("shaft", "settler", "uptake")
    for spec in (
        _fsf(f"cw_{circuit}_flow", "m³/h", (100, 400), (0, 600), "CoolingWater",
             f"{circuit} cooling water flow"),
        _fsf(f"cw_{circuit}_t_in", "°C", (25, 35), (0, 100), "CoolingWater",
             f"{circuit} cooling water inlet"),
        _fsf(f"cw_{circuit}_t_out", "°C", (38, 55), (0, 100), "CoolingWater",
             f"{circuit} cooling water outlet"),
    )
] + [
    _fsf("fuel_flow_sp", "kg/h", (0, 1500), (0, 1500), "Setpoints", "heavy oil setpoint",
         writable=True, bounds=(0.0, 1500.0)),
    _fsf("o2_flow_sp", "Nm³/h", (20000, 45000), (20000, 45000), "Setpoints",
         "technical oxygen setpoint", writable=True, bounds=(20000.0, 45000.0)),
    _fsf("escrap_feed_sp", "t/h", (0, 40), (0, 40), "Setpoints", "e-scrap feed setpoint",
         writable=True, bounds=(0.0, 40.0)),
    _fsf("running", "", (0, 1), (0, 1), "Status", "furnace in operation", kind="bool"),
    _fsf("advisor_permissive", "", (0, 1), (0, 1), "Status",
         "DCS operator permits closed-loop writes", kind="bool", writable=True),
    _fsf("agent_heartbeat", "", (0, 2147483647), (0, 2147483647), "Status",
         "written by the agent, watched by the DCS", kind="int32", writable=True,
         bounds=(0.0, 2147483647.0)),
]  # fmt: skip

MODBUS_TAGS: list[TagSpec] = [
    TagSpec("offgas.so2_pct", "vol %", (25, 38), (0, 100), "SO2 analyser"),
    TagSpec("offgas.o2_pct", "vol %", (5, 12), (0, 25), "O2 analyser"),
    TagSpec("offgas.analyser_status", "", (0, 0), (0, 7),
            "bit 0 calibrating, bit 1 fault, bit 2 maintenance", kind="int32"),
    TagSpec("offgas.flow", "Nm³/h", (60000, 100000), (0, 150000), "off-gas flow, after air"),
    TagSpec("offgas.temp", "°C", (300, 400), (0, 600), "off-gas after the waste heat boiler"),
    TagSpec("offgas.whb_steam_flow", "t/h", (45, 62), (0, 100), "waste heat boiler steam"),
    TagSpec("offgas.whb_steam_pressure", "MPa", (6, 7), (0, 10), "WHB drum pressure"),
    TagSpec("kiln.feed_rate", "t/h", (5, 40), (0, 60), "raw e-scrap in"),
    TagSpec("kiln.residue_rate", "t/h", (5, 30), (0, 60), "treated e-scrap out"),
    TagSpec("kiln.feed_total", "kg", (0, 4e9), (0, 4294967295), "raw e-scrap totaliser"),
    TagSpec("kiln.residue_total", "kg", (0, 4e9), (0, 4294967295), "treated e-scrap totaliser"),
    TagSpec("kiln.temp", "°C", (600, 800), (0, 1200), "kiln temperature"),
    TagSpec("kiln.afterburner_temp", "°C", (850, 1100), (0, 1400), "afterburner temperature"),
    TagSpec("kiln.fuel_flow", "Nm³/h", (100, 800), (0, 1500), "LNG to kiln and afterburner"),
    TagSpec("kiln.co_ppm", "ppm", (0, 50), (0, 1000), "stack CO", kind="int32"),
    TagSpec("kiln.o2_pct", "%", (6, 11), (0, 25), "stack O2"),
]  # fmt: skip

# Units 1 offgas analyser (input registers), 2 waste heat boiler and 3 kiln (holding registers).
# Encodings are mixed on purpose: float32 in both word orders, int16 scaled, uint32 totalisers.
REGISTERS: list[Register] = [
    Register("offgas.so2_pct", 1, "input", 0, "float32", "ABCD"),
    Register("offgas.o2_pct", 1, "input", 2, "float32", "CDAB"),
    Register("offgas.analyser_status", 1, "input", 4, "uint16"),
    Register("offgas.flow", 1, "input", 10, "float32", "CDAB"),
    Register("offgas.temp", 1, "input", 12, "int16", scale=0.1),
    Register("offgas.whb_steam_flow", 2, "holding", 0, "float32", "ABCD"),
    Register("offgas.whb_steam_pressure", 2, "holding", 2, "int16", scale=0.01),
    Register("kiln.feed_rate", 3, "holding", 0, "float32", "CDAB"),
    Register("kiln.residue_rate", 3, "holding", 2, "float32", "CDAB"),
    Register("kiln.feed_total", 3, "holding", 4, "uint32", "ABCD"),
    Register("kiln.residue_total", 3, "holding", 6, "uint32", "ABCD"),
    Register("kiln.temp", 3, "holding", 8, "int16", scale=0.1),
    Register("kiln.afterburner_temp", 3, "holding", 9, "int16", scale=0.1),
    Register("kiln.fuel_flow", 3, "holding", 10, "float32", "ABCD"),
    Register("kiln.co_ppm", 3, "holding", 12, "uint16"),
    Register("kiln.o2_pct", 3, "holding", 13, "int16", scale=0.1),
]

ALL_TAGS: dict[str, TagSpec] = {t.id: t for t in FSF_TAGS + MODBUS_TAGS}
SETPOINTS = {t.id: t for t in FSF_TAGS if t.bounds is not None and t.kind == "double"}
ANALYSER_CALIBRATING, ANALYSER_FAULT, ANALYSER_MAINTENANCE = 1, 2, 4


def node_id(tag: str) -> str:
    return f"nsu={NAMESPACE_URI};s={tag}"
