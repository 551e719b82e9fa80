"""The simulated smelter: a plain object stepped in simulated seconds, no sockets, no clock.

`Plant.step(dt_s)` advances feeds, compositions, the true heat balance (simulators/heat.py),
temperatures, totalisers, the off-gas line and the kiln; `Plant.values` is what the instruments
show after that step. A seed makes the run reproducible; the servers step it from wall time times
a time-scale factor, and tests step it directly (a simulated day takes a few seconds).

Why it behaves like a plant: feeds follow their setpoints through lags; disturbances are
mean-reverting random drifts (Ornstein-Uhlenbeck, exact for any step size); temperatures follow
the heat margin at the target temperatures through first-order lags of minutes; totalisers
integrate exactly the rates published; assays are sampled about hourly and then held.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from simulators.heat import Balance, Concentrate, Inputs, TrueParameters, evaluate
from simulators.tags import ALL_TAGS, SETPOINTS

Value = float | int | bool

# Temperatures at zero margin, how strongly each follows the margin, and its lag (s).
_TEMPS: dict[str, tuple[float, float, float]] = {
    "fsf.shaft_temp": (1330.0, 1.3, 120.0),
    "fsf.uptake_temp": (1310.0, 1.0, 180.0),
    "fsf.settler_roof_temp": (1290.0, 0.8, 300.0),
    "fsf.slag_temp": (1280.0, 1.0, 420.0),
    "fsf.matte_temp": (1250.0, 1.0, 600.0),
}
_CW_CIRCUITS = (("shaft", "fsf.shaft_temp"), ("settler", "fsf.settler_roof_temp"),
                ("uptake", "fsf.uptake_temp"))  # fmt: skip
_CW_SENSITIVITY_K = 300.0  # cooling-water load rises by 1/300 per kelvin of furnace temperature
_ASSAY_INTERVAL_S = 3600.0
_HOLDING_K = 60.0  # below the zero-margin temperatures while the furnace is stopped
# Measurement noise (standard deviation) of the instruments that have it; feeds have none of
# their own: their fluctuation is real flow, which the totalisers integrate.
_NOISE = {"fsf.shaft_temp": 1.5, "fsf.uptake_temp": 1.0, "fsf.settler_roof_temp": 1.0,
          "fsf.matte_temp": 0.8, "fsf.slag_temp": 0.8, "fsf.o2_flow": 40.0,
          "offgas.so2_pct": 0.15, "offgas.o2_pct": 0.1, "offgas.flow": 300.0}  # fmt: skip
_FEEDS = ("conc", "escrap", "cu_scrap", "flux", "reverts")


class SetpointError(ValueError):
    """A write the plant refuses; `out_of_range` distinguishes bounds from read-only tags."""

    def __init__(self, message: str, *, out_of_range: bool) -> None:
        super().__init__(message)
        self.out_of_range = out_of_range


@dataclass
class Drift:
    """A mean-reverting disturbance with stationary standard deviation `sigma`."""

    mean: float
    sigma: float
    tau_s: float
    value: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.value):
            self.value = self.mean

    def step(self, dt: float, rng: random.Random) -> float:
        a = math.exp(-dt / self.tau_s)
        noise = self.sigma * math.sqrt(1 - a * a) * rng.gauss(0.0, 1.0)
        self.value = self.mean + (self.value - self.mean) * a + noise
        return self.value


def _lag(current: float, target: float, dt: float, tau_s: float) -> float:
    return target + (current - target) * math.exp(-dt / tau_s)


class Plant:
    """The flash furnace, off-gas line and kiln of the demo plant."""

    def __init__(self, seed: int = 0, params: TrueParameters | None = None) -> None:
        self.params = params or TrueParameters()
        self.rng = random.Random(seed)
        self.time_s = 0.0
        self.running = True
        self.advisor_permissive = False
        self.agent_heartbeat = 0
        self.analyser_status = 0  # bit 0 calibrating, bit 1 fault, bit 2 maintenance
        self.setpoints = {"fsf.fuel_flow_sp": 0.0, "fsf.o2_flow_sp": 31500.0,
                          "fsf.escrap_feed_sp": 14.0}  # fmt: skip
        c, s = self.params.conc, self.params.escrap
        h = 3600.0
        self.drift = {
            "conc": Drift(215.0, 1.5, 2 * h),
            "cu_scrap": Drift(3.0, 0.6, h),
            "reverts": Drift(14.0, 0.8, h),
            "o2_purity": Drift(93.0, 0.4, 2 * h),
            "air": Drift(20400.0, 500.0, h),
            "conc_cu": Drift(c.cu, 0.003, 6 * h),
            "conc_fe": Drift(c.fe, 0.003, 6 * h),
            "conc_s": Drift(c.s, 0.003, 6 * h),
            "escrap_cu": Drift(s.cu, 0.01, 4 * h),
            "flux_bias": Drift(1.0, 0.02, 2 * h),
            "infiltration": Drift(32000.0, 1500.0, h),
            "burn_off": Drift(0.24, 0.01, 4 * h),
            "cw_t_in": Drift(30.0, 0.8, 3 * h),
            **{f"cw_{n}_flow": Drift(f, 6.0, h) for n, f in
               (("shaft", 260.0), ("settler", 300.0), ("uptake", 160.0))},
        }  # fmt: skip
        self.feed = {"conc": 215.0, "escrap": 14.0, "cu_scrap": 3.0, "flux": 14.0,
                     "reverts": 14.0}  # fmt: skip
        self.o2_flow = self.setpoints["fsf.o2_flow_sp"]
        self.fuel_flow = 0.0
        self.totals = {"conc": 1_250_000.0, "escrap": 84_000.0, "cu_scrap": 19_500.0,
                       "flux": 96_000.0, "reverts": 101_000.0}  # fmt: skip
        self.kiln_feed = 18.4
        self.kiln_residue = 14.0
        self.kiln_totals = {"feed": 150_000_000.0, "residue": 114_000_000.0}
        self.balance = evaluate(self._inputs(), self.params)
        dt0 = self._steady_rise()
        self.temps = {k: t0 + gain * dt0 for k, (t0, gain, _tau) in _TEMPS.items()}
        self.grade = self.balance.matte_grade_pct
        self.fe_sio2 = self.balance.slag_fe_sio2
        self.assays = {"fsf.matte_grade": self.grade, "fsf.slag_fe_sio2": self.fe_sio2}
        self.next_assay_s = _ASSAY_INTERVAL_S
        self.cw_t_out = {n: 45.0 for n, _ in _CW_CIRCUITS}
        self.steam = 55.0
        self.values: dict[str, Value] = {}
        # Accepted writes, (simulated time s, tag, value): what the DCS would log.
        self.write_log: list[tuple[float, str, Value]] = []
        # Measurement noise, drawn once per step so that reads between steps agree.
        self.noise: dict[str, float] = {}
        self.step(0.0)

    # ------------------------------------------------------------------ what operators change

    def write(self, tag: str, value: Value) -> None:
        """Apply an operator or agent write; refuses read-only tags and out-of-range values."""
        if tag in SETPOINTS:
            low, high = SETPOINTS[tag].bounds or (-math.inf, math.inf)
            number = float(value)
            if not low <= number <= high:  # also refuses NaN
                raise SetpointError(
                    f"{tag}: {value!r} is outside [{low:g}, {high:g}]", out_of_range=True
                )
            self.setpoints[tag] = number
        elif tag == "fsf.advisor_permissive":
            self.advisor_permissive = bool(value)
        elif tag == "fsf.agent_heartbeat":
            if isinstance(value, float) and not value.is_integer():  # also NaN and infinities
                raise SetpointError(f"{tag}: {value!r} is not an integer", out_of_range=False)
            number = int(value)
            if not 0 <= number <= 2**31 - 1:
                raise SetpointError(f"{tag}: {value!r} is outside int32", out_of_range=True)
            self.agent_heartbeat = number
        else:
            raise SetpointError(f"{tag} is not writable", out_of_range=False)
        self.write_log.append((self.time_s, tag, value))
        self._publish()

    def set_running(self, running: bool) -> None:
        """Stop (feeds and oxygen ramp to zero, the bath cools) or restart the furnace."""
        self.running = running
        self._publish()

    def set_analyser_status(self, bits: int) -> None:
        """Bit 0 calibrating, bit 1 fault, bit 2 maintenance: SO2 and O2 are then not Good."""
        self.analyser_status = bits & 0xFFFF
        self._publish()

    def reset_totaliser(self, tag: str) -> None:
        """What a maintenance technician does: the counter restarts from zero."""
        for name in self.totals:
            if tag == f"fsf.{name}_feed_total":
                self.totals[name] = 0.0
        if tag in ("kiln.feed_total", "kiln.residue_total"):
            self.kiln_totals[tag.split(".")[1].removesuffix("_total")] = 0.0
        self._publish()

    def with_params(self, **changes: object) -> None:
        """Change true parameters mid-run (tests: a different heat loss, a new ore).

        A new concentrate or e-scrap moves the means its assay drifts around, from now on."""
        self.params = replace(self.params, **changes)  # type: ignore[arg-type]
        conc, scrap = self.params.conc, self.params.escrap
        for name, mean in (("conc_cu", conc.cu), ("conc_fe", conc.fe), ("conc_s", conc.s),
                           ("escrap_cu", scrap.cu)):  # fmt: skip
            self.drift[name].mean = self.drift[name].value = mean

    # --------------------------------------------------------------------------- the physics

    @property
    def margin_mw(self) -> float:
        """The true heat margin at the target temperatures (MW); what the advisor estimates."""
        return self.balance.margin_mw

    def step(self, dt_s: float) -> None:
        """Advance the plant by `dt_s` simulated seconds (any size; lags are exact)."""
        dt = max(dt_s, 0.0)
        self.time_s += dt
        d = {k: v.step(dt, self.rng) if dt > 0 else v.value for k, v in self.drift.items()}
        self._step_feeds(dt, d)
        self.params = replace(
            self.params,
            conc=Concentrate(d["conc_cu"], d["conc_fe"], d["conc_s"], self.params.conc.sio2),
            escrap=replace(self.params.escrap, cu=d["escrap_cu"]),
        )
        self.balance = evaluate(self._inputs(), self.params)
        if self.running:
            rise = self._steady_rise()
            for tag, (t0, gain, tau) in _TEMPS.items():
                self.temps[tag] = _lag(self.temps[tag], t0 + gain * rise, dt, tau)
            self.grade = _lag(self.grade, self.balance.matte_grade_pct, dt, 1800.0)
            self.fe_sio2 = _lag(self.fe_sio2, self.balance.slag_fe_sio2, dt, 1800.0)
        else:  # on hold: the bath cools slowly towards the burners' holding temperature
            for tag, (t0, _, tau) in _TEMPS.items():
                self.temps[tag] = _lag(self.temps[tag], t0 - _HOLDING_K, dt, 3 * tau)
        while self.time_s >= self.next_assay_s:
            self.assays = {
                "fsf.matte_grade": self.grade + self.rng.gauss(0, 0.2),
                "fsf.slag_fe_sio2": self.fe_sio2 + self.rng.gauss(0, 0.01),
            }
            self.next_assay_s += _ASSAY_INTERVAL_S * self.rng.uniform(0.9, 1.1)
        for name, temp_tag in _CW_CIRCUITS:
            t_out = d["cw_t_in"] + self._cw_load_mw(name, temp_tag) * 1000 / (
                d[f"cw_{name}_flow"] / 3600 * 998 * 4.18
            )
            self.cw_t_out[name] = _lag(self.cw_t_out[name], t_out, dt, 120.0)
        recoverable = (
            (self.balance.gas_mw + self.balance.dust_mw)
            * (self.temps["fsf.uptake_temp"] - 350)
            / 960
        )
        self.steam = _lag(self.steam, 55.0 * recoverable / 35.0, dt, 120.0)
        self._step_kiln(dt, d["burn_off"])
        for name in _FEEDS:
            self.totals[name] += self.feed[name] * dt / 3600
        if dt > 0:
            self.noise = {tag: self.rng.gauss(0.0, sigma) for tag, sigma in _NOISE.items()}
        self._publish()

    def _step_feeds(self, dt: float, d: dict[str, float]) -> None:
        sp = self.setpoints
        targets = {
            "conc": d["conc"],
            "escrap": sp["fsf.escrap_feed_sp"],
            "cu_scrap": max(d["cu_scrap"], 0.0),
            "flux": self.balance.flux_needed_tph * d["flux_bias"],
            "reverts": d["reverts"],
        }
        taus = {"conc": 60.0, "escrap": 120.0, "cu_scrap": 120.0, "flux": 600.0, "reverts": 300.0}
        if not self.running:  # feeders and oxygen stop; the burners keep the furnace warm
            targets = dict.fromkeys(targets, 0.0)
        for name in _FEEDS:
            self.feed[name] = max(_lag(self.feed[name], targets[name], dt, taus[name]), 0.0)
        o2_target = sp["fsf.o2_flow_sp"] if self.running else 0.0
        self.o2_flow = _lag(self.o2_flow, o2_target, dt, 30.0)
        self.fuel_flow = max(_lag(self.fuel_flow, sp["fsf.fuel_flow_sp"], dt, 60.0), 0.0)

    def _step_kiln(self, dt: float, burn_off: float) -> None:
        """The kiln keeps the treated-scrap bin level: its feed tracks the FSF e-scrap setpoint."""
        target = self.setpoints["fsf.escrap_feed_sp"] / (1 - burn_off)
        self.kiln_feed = _lag(self.kiln_feed, target, dt, 300.0)
        self.kiln_residue = _lag(self.kiln_residue, self.kiln_feed * (1 - burn_off), dt, 900.0)
        self.kiln_totals["feed"] += self.kiln_feed * 1000 * dt / 3600
        self.kiln_totals["residue"] += self.kiln_residue * 1000 * dt / 3600

    def _inputs(self) -> Inputs:
        d = self.drift
        return Inputs(
            conc_tph=self.feed["conc"],
            escrap_tph=self.feed["escrap"],
            cu_scrap_tph=self.feed["cu_scrap"],
            flux_tph=self.feed["flux"],
            reverts_tph=self.feed["reverts"],
            o2_nm3h=self.o2_flow,
            o2_purity_pct=d["o2_purity"].value,
            air_nm3h=d["air"].value,
            fuel_kgh=self.fuel_flow,
        )

    def _steady_rise(self) -> float:
        """Kelvin above the zero-margin temperatures at which heat out matches heat in."""
        cw_slope = sum(self.params.cw_loss_ref_mw) / _CW_SENSITIVITY_K
        return self.balance.margin_mw / (self.balance.heat_capacity_mw_per_k + cw_slope)

    def _cw_load_mw(self, name: str, temp_tag: str) -> float:
        ref = dict(zip(("shaft", "settler", "uptake"), self.params.cw_loss_ref_mw, strict=True))
        return ref[name] * (1 + (self.temps[temp_tag] - _TEMPS[temp_tag][0]) / _CW_SENSITIVITY_K)

    # ------------------------------------------------------------------------ the instruments

    def _publish(self) -> None:
        d = {k: v.value for k, v in self.drift.items()}
        b: Balance = self.balance
        v: dict[str, Value] = {}
        for name in _FEEDS:
            v[f"fsf.{name}_feed_rate"] = self.feed[name]
            v[f"fsf.{name}_feed_total"] = self.totals[name]
        v["fsf.o2_flow"] = self.o2_flow + self.noise.get("fsf.o2_flow", 0.0)
        v["fsf.o2_purity"] = d["o2_purity"]
        v["fsf.air_flow"] = d["air"]
        v["fsf.fuel_flow"] = self.fuel_flow
        v.update({tag: t + self.noise.get(tag, 0.0) for tag, t in self.temps.items()})
        v.update(self.assays)
        for name, _ in _CW_CIRCUITS:
            v[f"fsf.cw_{name}_flow"] = d[f"cw_{name}_flow"]
            v[f"fsf.cw_{name}_t_in"] = d["cw_t_in"]
            v[f"fsf.cw_{name}_t_out"] = self.cw_t_out[name]
        v.update(self.setpoints)
        v["fsf.running"] = self.running
        v["fsf.advisor_permissive"] = self.advisor_permissive
        v["fsf.agent_heartbeat"] = self.agent_heartbeat
        furnace_gas = b.gas_nm3h
        line_gas = furnace_gas + d["infiltration"]
        n = self.noise
        v["offgas.so2_pct"] = 100 * b.gas_kmolh["SO2"] * 22.414 / line_gas + n.get(
            "offgas.so2_pct", 0
        )
        v["offgas.o2_pct"] = 100 * (
            b.gas_kmolh["O2"] * 22.414 + 0.21 * d["infiltration"]
        ) / line_gas + n.get("offgas.o2_pct", 0)
        v["offgas.analyser_status"] = self.analyser_status
        v["offgas.flow"] = line_gas + n.get("offgas.flow", 0)
        v["offgas.temp"] = 350 + 0.25 * (self.temps["fsf.uptake_temp"] - 1310)
        v["offgas.whb_steam_flow"] = self.steam
        v["offgas.whb_steam_pressure"] = 6.5 + 0.015 * (self.steam - 55)
        feed = self.kiln_feed
        v["kiln.feed_rate"] = feed
        v["kiln.residue_rate"] = self.kiln_residue
        v["kiln.feed_total"] = int(self.kiln_totals["feed"]) % 2**32
        v["kiln.residue_total"] = int(self.kiln_totals["residue"]) % 2**32
        v["kiln.temp"] = 700 + 4 * (feed - 18)
        v["kiln.afterburner_temp"] = 960 + 3 * (feed - 18)
        v["kiln.fuel_flow"] = max(120.0, 520 - 6 * (feed - 18))
        v["kiln.co_ppm"] = 15 + round(8 * abs(math.sin(self.time_s / 613)))
        v["kiln.o2_pct"] = 8.5 - 0.06 * (feed - 18)
        assert v.keys() == ALL_TAGS.keys(), set(ALL_TAGS) ^ set(v)
        self.values = v
