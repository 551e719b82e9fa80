"""The advisor step: `kpi.advisor.*`, the setpoints that keep the heat margin at the reserve
(kpi/advisor.py), or a hold with the reason and the present setpoints."""

from __future__ import annotations

from collections import deque

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.kpi.advisor import Advice, advise, hold_reasons
from edge_agent.kpi.balance_inputs import heat_balance_tags
from edge_agent.kpi.furnace import FurnaceModel
from edge_agent.kpi.setpoints import advisor_settings, advisor_tag, current_setpoints, setpoint_tags
from edge_agent.kpi.tick import HeatResult, Step, TagFacts, Tick
from edge_agent.kpi.windows import NS


class AdvisorStep(Step):
    """Runs after the heat-balance step, on the operating point it leaves on the tick."""

    def __init__(self, cfg: AgentConfig, facts: TagFacts, model: FurnaceModel) -> None:
        adv, hb = cfg.kpi.advisor, cfg.kpi.heat_balance
        assert adv is not None
        assert hb is not None
        self.cfg = cfg
        self.adv = adv
        self.facts = facts
        self.model = model
        self.conc_tag = hb.conc_feed_tag
        self.inputs = heat_balance_tags(hb)
        self.settings = advisor_settings(cfg)
        self.sp_tags = setpoint_tags(cfg)
        self._feed: deque[tuple[int, float]] = deque()  # (ts, concentrate feed) for steadiness

    def run(self, tick: Tick) -> None:
        heat = tick.heat
        assert heat is not None
        reasons = self._hold_reasons(tick)
        if heat.op is None:
            self._hold(tick, heat, reasons)
            return
        current = current_setpoints(self.cfg, tick.snap, heat.op)
        advice = advise(self.model, heat.op, self.settings, current, reasons, heat.unexplained_mw)
        tick.out.extend(advice_samples(advice, self.sp_tags, tick.now))

    def _hold_reasons(self, tick: Tick) -> list[str]:
        """Why the advice must hold: inputs not Good, furnace not running, feed not steady."""
        conc = tick.snap.get(self.conc_tag)
        if conc is not None and conc.good and conc.value is not None:
            self._feed.append((conc.ts_ns, float(conc.value)))
        horizon = tick.now - int(self.adv.steady_window_s * 2 * NS)
        while self._feed and self._feed[0][0] < horizon:
            self._feed.popleft()
        return hold_reasons(
            {t: tick.snap.get(t) for t in self.inputs},
            self.facts.max_age_s,
            tick.now,
            tick.snap.get(self.adv.running_tag),
            list(self._feed),
            self.adv.steady_window_s,
            self.adv.steady_tolerance,
        )

    def _hold(self, tick: Tick, heat: HeatResult, reasons: list[str]) -> None:
        """No balance: hold, and keep the present setpoint where it reads Good."""
        why = "; ".join(reasons) or (heat.judged.reason or "no balance")
        tick.good("kpi.advisor.validity", "hold", why)
        tick.good("kpi.advisor.reason", why)
        now = tick.now
        for tag in self.sp_tags.values():
            sp = tick.snap.get(tag)
            if sp is not None and sp.good and isinstance(sp.value, (int, float)):
                tick.out.append(
                    Sample(advisor_tag(tag), float(sp.value), Quality.UNCERTAIN, now, now, why)
                )
            else:
                tick.out.append(Sample(advisor_tag(tag), None, Quality.BAD, now, now, why))


def advice_samples(advice: Advice, sp_tags: dict[str, str], now: int) -> list[Sample]:
    """The advice as `kpi.advisor.*` samples: Good when valid, Uncertain with the reason on hold."""
    valid = advice.validity == "valid"
    out = [
        Sample("kpi.advisor.validity", advice.validity, Quality.GOOD, now, now),
        Sample("kpi.advisor.reason", advice.reason, Quality.GOOD, now, now),
        Sample("kpi.advisor.policy", advice.policy, Quality.GOOD, now, now),
    ]
    quality = Quality.GOOD if valid else Quality.UNCERTAIN
    why = None if valid else f"hold: {advice.reason}"
    for rec in advice.recommendations:
        tag = sp_tags.get(rec.name)
        if tag is not None:
            reason = why or f"{advice.policy}: {rec.reason}"
            out.append(Sample(advisor_tag(tag), rec.value, quality, now, now, reason))
    for name, q in advice.heat_demand_gj_t.items():
        out.append(Sample(f"kpi.advisor.{name}_heat_demand_gj_t", q, quality, now, now, why))
        room = advice.absorbable_tph[name]
        tag = f"kpi.advisor.{name}_absorbable_tph"
        if room is None:
            not_limited = "stream releases heat: not heat-limited"
            out.append(Sample(tag, None, Quality.BAD, now, now, not_limited))
        else:
            out.append(Sample(tag, room, quality, now, now, why))
    return out
