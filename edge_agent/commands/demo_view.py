"""The demo's terminal view: a live frame on a terminal, a summary line without one.

The frame shows the tags per unit, the KPIs, sources and sinks with the outbox, the last
warnings with the component that raised them (the agent's log goes to a file meanwhile), and,
on the key `b`, every tag that is not Good with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import termios
import tty
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.contracts.status import ComponentStatus
from edge_agent.runtime import Agent
from edge_agent.status_board import StatusBoard
from edge_agent.tagstore import TagStore

QUALITY_STYLE = {Quality.GOOD: "green", Quality.UNCERTAIN: "yellow", Quality.BAD: "red"}
LEVEL_STYLE = {"warning": "yellow", "error": "red", "critical": "bold red"}
# The context keys that name the component an event came from, most specific first.
COMPONENT_KEYS = ("source", "sink", "service", "component", "logger")
# Fields of an event that are its frame, not its message.
_FRAME_KEYS = {"event", "level", "timestamp", "logger", *COMPONENT_KEYS}
TOGGLE_NOT_GOOD = "b"


# ------------------------------------------------------------------------- the log, tapped


@dataclass(frozen=True)
class LogWarning:
    time: str  # HH:MM:SS, UTC
    level: str
    component: str
    event: str
    detail: str


class WarningTap(io.TextIOBase):
    """A text stream for the JSON log that passes every line on and keeps the last warnings.

    The view owns the terminal, so the agent logs to a file; this is how the warnings that
    matter (why a sink is unreachable) still reach the person watching.
    """

    def __init__(self, stream: TextIO, keep: int = 5) -> None:
        self.stream = stream
        self.last: deque[LogWarning] = deque(maxlen=keep)
        self._partial = ""

    def write(self, text: str) -> int:  # type: ignore[override]
        self.stream.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._take(line)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def _take(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("level") not in LEVEL_STYLE:
            return
        component = next((str(event[k]) for k in COMPONENT_KEYS if event.get(k)), "agent")
        detail = " ".join(f"{k}={v}" for k, v in event.items() if k not in _FRAME_KEYS)
        stamp = str(event.get("timestamp", ""))[11:19]
        self.last.append(
            LogWarning(stamp, str(event["level"]), component, str(event.get("event")), detail)
        )


# ------------------------------------------------------------------------------ the frame


def _fmt(sample: Sample | None, reason_chars: int = 28) -> str:
    if sample is None:
        return "–"
    if sample.value is None:
        reason = sample.reason or "bad"
        return reason if len(reason) <= reason_chars else reason[: reason_chars - 1] + "…"
    if isinstance(sample.value, bool):
        return str(sample.value)
    if isinstance(sample.value, str):  # the advisor's reason can list twenty tags
        return sample.value if len(sample.value) <= 100 else sample.value[:99] + "…"
    if isinstance(sample.value, int):
        return f"{sample.value:,}"
    return f"{sample.value:,.3g}" if abs(sample.value) < 1000 else f"{sample.value:,.0f}"


def _quality(sample: Sample | None) -> Text:
    if sample is None:
        return Text("absent", style="dim")
    return Text(sample.quality.value, style=QUALITY_STYLE[sample.quality])


def _unit_table(unit: str, tags: list[tuple[str, str]], snapshot: dict[str, Sample]) -> Table:
    table = Table(title=unit, title_style="bold", expand=False, pad_edge=False)
    table.add_column("tag", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("unit", style="dim", no_wrap=True)
    table.add_column("quality", no_wrap=True)
    for tag, eng_unit in tags:
        sample = snapshot.get(tag)
        table.add_row(tag.split(".", 1)[1], _fmt(sample), eng_unit, _quality(sample))
    return table


def _kpi_panel(snapshot: dict[str, Sample]) -> Panel:
    def row(label: str, tag: str, unit: str = "") -> tuple[str, str, str, Text]:
        sample = snapshot.get(tag)
        return label, _fmt(sample), unit, _quality(sample)

    table = Table(show_header=False, box=None, pad_edge=False)
    for _ in range(4):
        table.add_column()
    rows = [
        row("recycled ratio now", "kpi.recycled_ratio.now", "%"),
        row("recycled ratio day", "kpi.recycled_ratio.day", "%"),
        row("recycled ratio fiscal year", "kpi.recycled_ratio.fiscal_year", "%"),
        row("  target", "kpi.recycled_ratio.target", "%"),
        row("  gap to target", "kpi.recycled_ratio.gap", "pp"),
        row("heat margin", "kpi.heat_margin_mw", "MW"),
        row("advisor", "kpi.advisor.validity"),
        row("  policy", "kpi.advisor.policy"),
        row("  reason", "kpi.advisor.reason"),
    ]
    rows += [
        row(f"  recommends {tag.removeprefix('kpi.advisor.')}", tag)
        for tag in sorted(snapshot)
        if tag.startswith("kpi.advisor.") and tag.endswith("_sp")
    ]
    rows += [
        row("CO2", "kpi.co2.tph", "t/h"),
        row("CO2 per t Cu", "kpi.co2.per_t_cu", "t/t"),
    ]
    for r in rows:
        table.add_row(*r)
    if not any(t.startswith("kpi.") for t in snapshot):
        table.add_row("(no kpi.* tags yet)", "", "", Text(""))
    return Panel(table, title="KPIs", border_style="cyan")


def _delivery_panel(statuses: list[ComponentStatus]) -> Panel:
    table = Table(box=None, pad_edge=False)
    for col in ("component", "state", "published", "depth", "oldest s"):
        table.add_column(col)
    for s in statuses:
        if s.kind not in ("sink", "outbox", "source"):
            continue
        style = "green" if s.healthy else "red"
        published = s.counters.get("samples_published_total", s.counters.get("samples_read_total"))
        table.add_row(
            f"{s.kind} {s.name}",
            Text(s.state, style=style),
            "" if published is None else f"{published:,.0f}",
            f"{s.gauges['depth_samples']:,.0f}" if "depth_samples" in s.gauges else "",
            f"{s.gauges['oldest_age_seconds']:.0f}" if "oldest_age_seconds" in s.gauges else "",
        )
    return Panel(table, title="sources, sinks, outbox", border_style="magenta")


def summary_line(store: TagStore, board: StatusBoard) -> str:
    """The headless view: one plain line."""
    snap = store.snapshot()
    parts = [board.summary()]
    for label, tag in (
        ("recycled", "kpi.recycled_ratio.now"),
        ("heat_margin_mw", "kpi.heat_margin_mw"),
        ("advisor", "kpi.advisor.validity"),
        ("co2_tph", "kpi.co2.tph"),
    ):
        if tag in snap:
            parts.append(f"{label}={_fmt(snap[tag], reason_chars=0) if snap[tag].good else 'bad'}")
    sinks = [f"{s.name} {s.state}" for s in board.statuses() if s.kind == "sink"]
    return "demo: " + "; ".join(parts + sinks)


def not_good(snapshot: dict[str, Sample]) -> list[Sample]:
    """Tags whose latest sample is not Good: Bad first, then Uncertain, each by tag id."""
    order = {Quality.BAD: 0, Quality.UNCERTAIN: 1}
    rest = [s for s in snapshot.values() if s.quality is not Quality.GOOD]
    return sorted(rest, key=lambda s: (order[s.quality], s.tag))


def _not_good_panel(snapshot: dict[str, Sample]) -> Panel:
    table = Table(box=None, pad_edge=False)
    for col in ("tag", "quality", "reason"):
        table.add_column(col, no_wrap=True)
    for sample in not_good(snapshot):
        table.add_row(sample.tag, _quality(sample), sample.reason or "")
    title = f"tags not good ({TOGGLE_NOT_GOOD} hides)"
    return Panel(table, title=title, border_style="red")


def _warnings_panel(warnings: list[LogWarning]) -> Panel:
    table = Table(box=None, pad_edge=False, show_header=False)
    for _ in range(4):
        table.add_column(no_wrap=True)
    table.add_column(overflow="ellipsis", no_wrap=True)
    for w in warnings:
        level = Text(w.level, style=LEVEL_STYLE.get(w.level, ""))
        table.add_row(w.time, level, w.component, w.event, w.detail)
    if not warnings:
        table.add_row("", Text("none", style="dim"), "", "", "")
    return Panel(table, title="last warnings (full log: agent.log)", border_style="yellow")


def render(
    cfg: AgentConfig,
    store: TagStore,
    board: StatusBoard,
    header: str,
    warnings: list[LogWarning] | None = None,
    show_not_good: bool = False,
) -> Group:
    """One frame of the live view."""
    snapshot = store.snapshot()
    units: dict[str, list[tuple[str, str]]] = {}
    for tag in cfg.tags().values():
        units.setdefault(tag.id.split(".", 1)[0], []).append((tag.id, tag.unit))
    tables = [_unit_table(unit, tags, snapshot) for unit, tags in units.items()]
    others = len(not_good(snapshot))
    hint = f"   ({TOGGLE_NOT_GOOD}: list the {others} tags not good)" if others else ""
    parts: list[RenderableType] = [
        Text(header, style="bold"),
        Text(board.summary() + hint, style="dim"),
        Columns([_kpi_panel(snapshot), _delivery_panel(board.statuses())]),
        _warnings_panel(warnings or []),
    ]
    if show_not_good:
        parts.append(_not_good_panel(snapshot))
    parts.append(Columns(tables))
    return Group(*parts)


# ------------------------------------------------------------------------------- running


async def headless(agent: Agent) -> None:
    while True:
        await asyncio.sleep(5.0)
        print(summary_line(agent.store, agent.board), flush=True)


class ViewState:
    """What the keys toggle."""

    def __init__(self) -> None:
        self.show_not_good = False

    def key(self, char: str) -> None:
        if char.lower() == TOGGLE_NOT_GOOD:
            self.show_not_good = not self.show_not_good


@contextlib.contextmanager
def keys(on_key: Callable[[str], None]) -> Iterator[None]:
    """Single keys from the terminal, without Enter and without echo, while the view runs."""
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()
    tty.setcbreak(fd)
    loop.add_reader(fd, lambda: on_key(sys.stdin.read(1)))
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def live(agent: Agent, header: str, tap: WarningTap | None) -> None:
    state = ViewState()

    def frame() -> Group:
        warnings = list(tap.last) if tap is not None else []
        return render(agent.cfg, agent.store, agent.board, header, warnings, state.show_not_good)

    with keys(state.key), Live(frame(), console=Console(), refresh_per_second=2) as view:
        while True:
            await asyncio.sleep(0.5)
            view.update(frame())
