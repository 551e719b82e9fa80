"""Every ISA-18.2 transition of the alarm state machine, on a fixed clock (no sleeps, no I/O)."""

from __future__ import annotations

import math
import random

import pytest

from edge_agent.alarms import (
    ActionRefused,
    AlarmDefinition,
    AlarmEvent,
    AlarmSet,
    Kind,
    Priority,
    State,
    Suppression,
    Transition,
)
from edge_agent.contracts.samples import Quality, Sample, Value

S = 1_000_000_000
T0 = 1_800_000_000 * S  # a fixed epoch for every test


class Store:
    """The latest sample per tag, as the TagStore holds it (updated before alarms run)."""

    def __init__(self) -> None:
        self.latest: dict[str, Sample] = {}

    def get(self, tag: str) -> Sample | None:
        return self.latest.get(tag)


class Rig:
    """An AlarmSet on a fixed clock: `feed` publishes a sample at T0 + t seconds."""

    def __init__(self, *definitions: AlarmDefinition) -> None:
        self.store = Store()
        self.alarms = AlarmSet(definitions, self.store, started_ns=T0)

    def feed(
        self, tag: str, value: Value | None, t: float, quality: Quality = Quality.GOOD
    ) -> list[AlarmEvent]:
        ts = T0 + int(t * S)
        sample = Sample(tag, value, quality, acq_ns=ts, source_ns=ts)
        self.store.latest[tag] = sample
        return self.alarms.on_samples([sample])

    def tick(self, t: float) -> list[AlarmEvent]:
        return self.alarms.tick(T0 + int(t * S))

    def state(self, alarm_id: str = "a") -> State:
        return self.alarms.status(alarm_id).state


def high(**kw: object) -> AlarmDefinition:
    fields: dict[str, object] = {
        "id": "a",
        "tag": "fsf.matte_temp",
        "kind": Kind.HIGH,
        "priority": Priority.HIGH,
        "message": "Matte temperature high",
        "limit": 1300.0,
    }
    fields.update(kw)
    return AlarmDefinition(**fields)  # type: ignore[arg-type]


def transitions(events: list[AlarmEvent]) -> list[str]:
    return [e.transition.value for e in events]


# ------------------------------------------------------------------------------ life cycle


def test_full_life_cycle_active_ack_clear() -> None:
    rig = Rig(high())
    assert rig.state() is State.NORMAL
    (ev,) = rig.feed("fsf.matte_temp", 1310.0, 1)
    assert (ev.transition, ev.state, ev.previous) == (
        Transition.ACTIVATED,
        State.ACTIVE_UNACK,
        State.NORMAL,
    )
    assert ev.ts_ns == T0 + S  # the triggering sample's source time
    assert ev.value == 1310.0
    assert ev.active
    assert not ev.acknowledged
    (ack,) = rig.alarms.acknowledge("a", T0 + 2 * S, "op.anna", "seen")
    assert (ack.state, ack.operator, ack.reason) == (State.ACTIVE_ACK, "op.anna", "seen")
    (clear,) = rig.feed("fsf.matte_temp", 1250.0, 3)
    assert (clear.transition, clear.state) == (Transition.CLEARED, State.NORMAL)


def test_returned_unacknowledged_then_acknowledged() -> None:
    rig = Rig(high())
    rig.feed("fsf.matte_temp", 1310.0, 1)
    (clear,) = rig.feed("fsf.matte_temp", 1250.0, 2)
    assert clear.state is State.RETURNED_UNACK
    (ack,) = rig.alarms.acknowledge("a", T0 + 3 * S, "op", None)
    assert (ack.previous, ack.state) == (State.RETURNED_UNACK, State.NORMAL)


def test_returned_unack_reactivates_unacknowledged() -> None:
    rig = Rig(high())
    rig.feed("fsf.matte_temp", 1310.0, 1)
    rig.feed("fsf.matte_temp", 1250.0, 2)
    (again,) = rig.feed("fsf.matte_temp", 1320.0, 3)
    assert (again.previous, again.state) == (State.RETURNED_UNACK, State.ACTIVE_UNACK)


def test_acknowledge_refused_when_nothing_to_acknowledge() -> None:
    rig = Rig(high())
    with pytest.raises(ActionRefused, match="nothing to acknowledge"):
        rig.alarms.acknowledge("a", T0, "op", None)
    with pytest.raises(ActionRefused, match="no alarm 'nope'"):
        rig.alarms.acknowledge("nope", T0, "op", None)


# ------------------------------------------------------------------------ deadband, delays


def test_deadband_holds_until_crossed_back() -> None:
    rig = Rig(high(deadband=10.0))
    rig.feed("fsf.matte_temp", 1301.0, 1)
    assert rig.feed("fsf.matte_temp", 1295.0, 2) == []  # below limit, inside the deadband
    assert rig.state() is State.ACTIVE_UNACK
    assert transitions(rig.feed("fsf.matte_temp", 1289.0, 3)) == ["cleared"]


def test_on_delay_needs_the_condition_to_hold() -> None:
    rig = Rig(high(on_delay_s=10.0))
    assert rig.feed("fsf.matte_temp", 1310.0, 0) == []
    assert rig.feed("fsf.matte_temp", 1311.0, 9.9) == []
    (ev,) = rig.feed("fsf.matte_temp", 1312.0, 10)
    assert ev.ts_ns == T0 + 10 * S


def test_on_delay_completes_on_the_clock_without_new_samples() -> None:
    """Subscriptions report by exception: a value that stays high sends nothing more."""
    rig = Rig(high(on_delay_s=10.0))
    rig.feed("fsf.matte_temp", 1310.0, 5)
    assert rig.tick(14.9) == []
    (ev,) = rig.tick(16)
    assert ev.transition is Transition.ACTIVATED
    assert ev.ts_ns == T0 + 15 * S  # when the delay ran out, not when the tick came


def test_on_delay_restarts_when_the_condition_drops_out() -> None:
    rig = Rig(high(on_delay_s=10.0))
    rig.feed("fsf.matte_temp", 1310.0, 0)
    rig.feed("fsf.matte_temp", 1290.0, 5)  # back below: pending change cancelled
    rig.feed("fsf.matte_temp", 1310.0, 8)
    assert rig.tick(12) == []
    assert transitions(rig.tick(18)) == ["activated"]


def test_off_delay_keeps_the_alarm_through_a_short_dip() -> None:
    rig = Rig(high(off_delay_s=30.0))
    rig.feed("fsf.matte_temp", 1310.0, 0)
    assert rig.feed("fsf.matte_temp", 1290.0, 10) == []
    assert rig.feed("fsf.matte_temp", 1305.0, 20) == []  # dip over: still active
    assert rig.tick(60) == []
    rig.feed("fsf.matte_temp", 1290.0, 61)
    (ev,) = rig.tick(91)
    assert (ev.transition, ev.ts_ns) == (Transition.CLEARED, T0 + 91 * S)


def test_chattering_input_is_tamed_by_deadband_or_delay() -> None:
    """A signal oscillating ±3 °C around the limit every second for two minutes."""

    def run(rig: Rig) -> list[str]:
        events: list[AlarmEvent] = []
        for t in range(120):
            events += rig.feed("fsf.matte_temp", 1303.0 if t % 2 else 1297.0, t) + rig.tick(t)
        return transitions(events)

    assert run(Rig(high())).count("activated") == 60  # neither: a chattering alarm
    assert run(Rig(high(deadband=5.0))) == ["activated"]  # activates once, held by deadband
    assert run(Rig(high(on_delay_s=3.0))) == []  # never high for 3 s in a row


# ----------------------------------------------------------------------- the other kinds


def test_low_low_and_bad_values_hold_the_condition() -> None:
    rig = Rig(high(kind=Kind.LOW_LOW, limit=1200.0, priority=Priority.URGENT))
    assert transitions(rig.feed("fsf.matte_temp", 1190.0, 1)) == ["activated"]
    assert rig.feed("fsf.matte_temp", None, 2, Quality.BAD) == []  # unknown: hold
    assert rig.feed("fsf.matte_temp", 1250.0, 3, Quality.UNCERTAIN) == []
    assert rig.feed("fsf.matte_temp", float("nan"), 4) == []
    assert transitions(rig.feed("fsf.matte_temp", 1250.0, 5)) == ["cleared"]


def test_deviation_from_a_setpoint_reacts_to_either_tag() -> None:
    rig = Rig(
        high(id="d", tag="fsf.o2_flow", kind=Kind.DEVIATION, limit=2000.0, reference="fsf.o2_sp")
    )
    rig.feed("fsf.o2_sp", 30000.0, 0)
    assert rig.feed("fsf.o2_flow", 31000.0, 1) == []
    assert transitions(rig.feed("fsf.o2_sp", 28000.0, 2)) == ["activated"]  # setpoint moved
    assert transitions(rig.feed("fsf.o2_flow", 29000.0, 3)) == ["cleared"]


def test_rate_of_change_per_minute() -> None:
    rig = Rig(high(kind=Kind.RATE_OF_CHANGE, limit=20.0))  # °C per minute
    assert rig.feed("fsf.matte_temp", 1250.0, 0) == []
    assert rig.feed("fsf.matte_temp", 1255.0, 60) == []  # 5 °C/min
    (ev,) = rig.feed("fsf.matte_temp", 1256.0, 61)  # 60 °C/min
    assert ev.transition is Transition.ACTIVATED
    assert transitions(rig.feed("fsf.matte_temp", 1257.0, 121)) == ["cleared"]


def test_bad_quality_alarm() -> None:
    rig = Rig(high(kind=Kind.BAD_QUALITY, limit=None, on_delay_s=5.0))
    rig.feed("fsf.matte_temp", None, 0, Quality.BAD)
    (ev,) = rig.feed("fsf.matte_temp", None, 5, Quality.BAD)
    assert ev.value == "bad"
    assert transitions(rig.feed("fsf.matte_temp", 1250.0, 6)) == ["cleared"]


def test_stale_when_no_new_sample_or_a_frozen_timestamp() -> None:
    rig = Rig(high(kind=Kind.STALE, limit=10.0))
    assert rig.tick(9) == []  # counted from start before the first sample
    (ev,) = rig.tick(11)
    assert (ev.transition, ev.ts_ns) == (Transition.ACTIVATED, T0 + 10 * S)
    assert transitions(rig.feed("fsf.matte_temp", 1250.0, 12)) == ["cleared"]
    frozen = Sample(
        "fsf.matte_temp", 1250.0, Quality.GOOD, acq_ns=T0 + 20 * S, source_ns=T0 + 12 * S
    )
    assert rig.alarms.on_samples([frozen]) == []  # same source time again: not fresh
    assert transitions(rig.tick(23)) == ["activated"]


def test_discrete_state() -> None:
    rig = Rig(high(id="k", tag="kiln.burner_ok", kind=Kind.DISCRETE, limit=None, state=False))
    assert rig.feed("kiln.burner_ok", True, 0) == []
    assert transitions(rig.feed("kiln.burner_ok", False, 1)) == ["activated"]
    assert rig.feed("kiln.burner_ok", None, 2, Quality.BAD) == []


# ------------------------------------------------------------- shelving, suppression, service


def test_shelve_hides_and_expiry_re_annunciates() -> None:
    rig = Rig(high())
    rig.feed("fsf.matte_temp", 1310.0, 0)
    (shelf,) = rig.alarms.shelve("a", T0 + S, 60.0, "op.ben", "sensor being replaced")
    assert (shelf.state, shelf.reason, shelf.shelved_until_ns) == (
        State.SHELVED,
        "sensor being replaced",
        T0 + 61 * S,
    )
    assert rig.feed("fsf.matte_temp", 1250.0, 10) == []  # followed silently
    assert rig.feed("fsf.matte_temp", 1320.0, 20) == []
    assert rig.tick(60) == []
    (expired,) = rig.tick(62)
    assert (expired.transition, expired.state, expired.ts_ns) == (
        Transition.SHELVE_EXPIRED,
        State.ACTIVE_UNACK,  # still high: the operator must see it again
        T0 + 61 * S,
    )


def test_unshelve_of_a_clear_alarm_returns_normal() -> None:
    rig = Rig(high())
    rig.alarms.shelve("a", T0, 600.0, "op", "nuisance")
    (ev,) = rig.alarms.unshelve("a", T0 + S, "op", None)
    assert (ev.transition, ev.state) == (Transition.UNSHELVED, State.NORMAL)
    assert rig.tick(700) == []  # the expiry was cancelled
    with pytest.raises(ActionRefused, match="not shelved"):
        rig.alarms.unshelve("a", T0 + 2 * S, "op", None)


def test_suppressed_by_design_while_the_furnace_is_not_running() -> None:
    rig = Rig(high(suppress_when=(Suppression("fsf.running", equals=False),)))
    rig.feed("fsf.running", True, 0)
    (sup,) = rig.feed("fsf.running", False, 1)
    assert (sup.transition, sup.state) == (Transition.SUPPRESSED, State.SUPPRESSED)
    assert rig.feed("fsf.matte_temp", 1310.0, 2) == []  # not announced
    with pytest.raises(ActionRefused, match="cannot shelve"):
        rig.alarms.shelve("a", T0 + 3 * S, 60, "op", "x")
    (back,) = rig.feed("fsf.running", True, 4)
    assert (back.transition, back.state) == (Transition.UNSUPPRESSED, State.ACTIVE_UNACK)


def test_a_bad_suppression_tag_does_not_suppress() -> None:
    rig = Rig(high(suppress_when=(Suppression("fsf.conc_feed_rate", below=50.0),)))
    assert rig.feed("fsf.conc_feed_rate", None, 0, Quality.BAD) == []
    assert rig.state() is State.NORMAL
    assert transitions(rig.feed("fsf.conc_feed_rate", 10.0, 1)) == ["suppressed"]


def test_out_of_service_outranks_a_shelf_and_returns_truthfully() -> None:
    rig = Rig(high())
    rig.alarms.shelve("a", T0, 60, "op", "nuisance")
    (oos,) = rig.alarms.remove_from_service("a", T0 + S, "tech", "transmitter swap")
    assert (oos.previous, oos.state) == (State.SHELVED, State.OUT_OF_SERVICE)
    assert rig.tick(120) == []  # the shelf went with it
    rig.feed("fsf.matte_temp", 1320.0, 130)
    (back,) = rig.alarms.return_to_service("a", T0 + 140 * S, "tech", "done")
    assert (back.state, back.operator, back.reason) == (State.ACTIVE_UNACK, "tech", "done")


# ------------------------------------------------------------------------------- restart


def test_restart_restores_states_without_a_flood() -> None:
    defs = [high(id=f"a{i}", limit=1300.0 + i, off_delay_s=5.0) for i in range(20)]
    before = Rig(*defs)
    before.feed("fsf.matte_temp", 1400.0, 0)  # all twenty active
    for i in range(10):
        before.alarms.acknowledge(f"a{i}", T0 + S, "op", None)
    before.alarms.shelve("a19", T0 + S, 3600, "op", "known")
    saved = before.alarms.snapshot()

    after = Rig(*defs)
    assert after.alarms.restore(saved) == []
    assert after.state("a0") is State.ACTIVE_ACK
    assert after.state("a10") is State.ACTIVE_UNACK
    assert after.state("a19") is State.SHELVED
    assert after.feed("fsf.matte_temp", 1400.0, 100) == []  # still high: nothing new
    assert after.tick(110) == []
    # Fresh data below some limits: those clear, each once, after their off-delay.
    assert after.feed("fsf.matte_temp", 1305.5, 120) == []
    cleared = after.tick(126)
    # a0..a5 stay above their limits, a19 is shelved (followed silently).
    assert sorted(e.alarm_id for e in cleared) == sorted(f"a{i}" for i in range(6, 19))
    assert all(e.transition is Transition.CLEARED for e in cleared)


def test_restore_skips_an_alarm_whose_definition_changed() -> None:
    before = Rig(high())
    before.feed("fsf.matte_temp", 1310.0, 0)
    after = Rig(high(kind=Kind.LOW))
    assert after.alarms.restore(before.alarms.snapshot()) == ["a"]
    assert after.state() is State.NORMAL


def test_only_the_alarms_of_a_tag_are_touched() -> None:
    rig = Rig(high(id="m"), high(id="s", tag="offgas.so2_pct", limit=35.0))
    assert rig.alarms.watches("fsf.matte_temp")
    assert not rig.alarms.watches("fsf.slag_temp")
    assert rig.feed("fsf.slag_temp", 9999.0, 0) == []
    (ev,) = rig.feed("offgas.so2_pct", 36.0, 1)
    assert ev.alarm_id == "s"
    assert rig.state("m") is State.NORMAL


def test_the_inline_checks_decide_as_the_full_path_does() -> None:
    """`on_samples` settles unchanged limit and rate conditions inline: on random walks through
    limits, deadbands, delays, NaN, infinities, ints, bools, repeated timestamps and Bad samples
    it must give the same events and states as the full path (`inline=False`)."""
    defs = [
        high(id="h", tag="t.h", deadband=5.0, on_delay_s=2.0, off_delay_s=1.0),
        high(id="l", tag="t.l", kind=Kind.LOW, limit=1200.0, deadband=3.0, on_delay_s=1.0),
        high(id="r", tag="t.r", kind=Kind.RATE_OF_CHANGE, limit=300.0, deadband=50.0),
        high(id="hh", tag="t.m", kind=Kind.HIGH_HIGH, limit=1350.0),  # two on one tag:
        high(id="ll", tag="t.m", kind=Kind.LOW_LOW, limit=1150.0, off_delay_s=2.0),  # full path
    ]
    inline, full = Rig(*defs), Rig(*defs)
    full.alarms = AlarmSet(defs, full.store, started_ns=T0, inline=False)
    assert inline.alarms._by_tag["t.h"].__class__ is tuple  # the inline entries are in use
    rnd = random.Random(16)
    odd: list[Value] = [math.nan, math.inf, -math.inf, 1300, 1400, True, "x"]
    walk = dict.fromkeys(("t.h", "t.l", "t.r", "t.m"), 1250.0)
    seen: set[str] = set()
    for step in range(3000):
        t = step * 0.25 if rnd.random() > 0.02 else max(0.0, (step - 1) * 0.25)  # repeats
        tag = rnd.choice(list(walk))
        walk[tag] = min(1450.0, max(1050.0, walk[tag] + rnd.uniform(-30.0, 30.0)))
        sample: Value = rnd.choice(odd) if rnd.random() < 0.05 else walk[tag]
        quality = Quality.BAD if rnd.random() < 0.03 else Quality.GOOD
        got = inline.feed(tag, sample, t, quality)
        assert got == full.feed(tag, sample, t, quality), f"step {step}"
        seen.update(f"{e.alarm_id}:{e.transition.value}" for e in got)
        if step % 8 == 0:
            assert inline.tick(t) == full.tick(t)
        for d in defs:
            a, b = inline.alarms.status(d.id), full.alarms.status(d.id)
            assert a.snapshot() == b.snapshot(), f"step {step}, alarm {d.id}"
            assert a.pending_since_ns == b.pending_since_ns
    assert inline.tick(1000.0) == full.tick(1000.0)
    wanted = {f"{a}:{t}" for a in ("h", "l", "r", "hh", "ll") for t in ("activated", "cleared")}
    assert wanted <= seen
