"""The demo's terminal view: the last warnings with their component, the tags not Good on `b`."""

from __future__ import annotations

import io
import json

from rich.console import Console

from edge_agent.commands.demo_view import ViewState, WarningTap, not_good, render
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore

CFG = AgentConfig.model_validate(
    {
        "source": [
            {
                "name": "fsf", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840/",
                "tag": [{"id": "fsf.matte_temp", "node": "s=a", "unit": "°C"},
                        {"id": "fsf.slag_temp", "node": "s=b", "unit": "°C"},
                        {"id": "fsf.o2_flow", "node": "s=c", "unit": "Nm³/h"}],
            }
        ]
    }
)  # fmt: skip


def line(**event: object) -> str:
    return json.dumps({"timestamp": "2026-12-01T11:34:54.723600Z", **event}) + "\n"


def test_the_tap_passes_every_line_on_and_keeps_the_last_warnings() -> None:
    file = io.StringIO()
    tap = WarningTap(file, keep=2)
    text = (
        line(event="agent_started", level="info")
        + line(event="source_unavailable", level="error", source="kiln", error="refused")
        + line(event="Failed to connect", level="warning", logger="pymodbus.logging")
    )
    tap.write(text[:50])  # a line may arrive in pieces
    tap.write(text[50:])
    tap.write(line(event="influx_unreachable", level="warning", url="http://db:8086"))
    assert file.getvalue().count("\n") == 4
    warnings = list(tap.last)
    assert [(w.component, w.event) for w in warnings] == [
        ("pymodbus.logging", "Failed to connect"),
        ("agent", "influx_unreachable"),
    ]
    assert warnings[1].detail == "url=http://db:8086"
    assert warnings[1].time == "11:34:54"


def frame_text(show_not_good: bool, tap: WarningTap | None = None) -> str:
    store = TagStore()
    store.update(
        [
            Sample("fsf.matte_temp", 1250.0, Quality.GOOD, 1),
            Sample.bad("fsf.slag_temp", "BadSensorFailure", acq_ns=1),
            Sample("fsf.o2_flow", 31000.0, Quality.UNCERTAIN, 1, None, "coverage 0.40 < 0.90"),
        ]
    )
    warnings = list(tap.last) if tap else []
    group = render(CFG, store, StatusBoard(store), "header", warnings, show_not_good)
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(group)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def test_the_frame_says_how_many_tags_are_not_good_and_lists_them_on_b() -> None:
    state = ViewState()
    closed = frame_text(state.show_not_good)
    assert "1/3 tags good" in closed
    assert "(b: list the 2 tags not good)" in closed
    assert "tags not good (b hides)" not in closed
    state.key("b")
    opened = frame_text(state.show_not_good)
    listing = opened.split("tags not good (b hides)")[1]
    assert listing.index("fsf.slag_temp") < listing.index("fsf.o2_flow")  # Bad first
    assert "BadSensorFailure" in listing
    assert "coverage 0.40 < 0.90" in listing
    state.key("B")
    assert not state.show_not_good


def test_the_frame_shows_the_last_warnings_with_their_component() -> None:
    tap = WarningTap(io.StringIO())
    tap.write(line(event="influx_unreachable", level="warning", sink="influx", error="refused"))
    text = frame_text(False, tap)
    assert "last warnings" in text
    row = next(r for r in text.splitlines() if "influx_unreachable" in r)
    assert "11:34:54" in row
    assert "influx" in row.split("influx_unreachable")[0]
    assert "error=refused" in row


def test_not_good_orders_bad_before_uncertain() -> None:
    snap = {
        "a": Sample("a", 1.0, Quality.UNCERTAIN, 1),
        "b": Sample.bad("b", "x", acq_ns=1),
        "c": Sample("c", 1.0, Quality.GOOD, 1),
    }
    assert [s.tag for s in not_good(snap)] == ["b", "a"]
