"""A clock, a configuration with one matte-temperature alarm, and a recording outbox writer for
the alarm engine's tests."""

from __future__ import annotations

from pathlib import Path

from edge_agent.alarms import AlarmEvent
from edge_agent.alarms.records import from_sample
from edge_agent.config import AgentConfig
from edge_agent.contracts.samples import Quality, Sample

S = 1_000_000_000
T0 = 1_800_000_000 * S


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def config(tmp_path: Path, **alarms: object) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "agent": {"site": "t", "state_dir": str(tmp_path)},
            "source": [
                {
                    "name": "fsf",
                    "protocol": "opcua",
                    "endpoint": "opc.tcp://127.0.0.1:4840/",
                    "tag": [{"id": "fsf.matte_temp", "node": "ns=2;s=m", "unit": "°C"}],
                }
            ],
            "alarm": [
                {
                    "id": "fsf.matte_temp.high",
                    "tag": "fsf.matte_temp",
                    "kind": "high",
                    "limit": 1300.0,
                    "priority": "high",
                    "message": "Matte temperature high",
                    **alarms,
                }
            ],
            "alarms": {"tick_s": 0.01},
        }
    )


class ListWriter:
    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    async def append(self, samples: list[Sample]) -> None:  # type: ignore[override]
        self.batches.append(list(samples))

    def events(self) -> list[AlarmEvent]:
        return [e for b in self.batches for s in b if (e := from_sample(s)) is not None]


def temp(value: float, t: float) -> Sample:
    ts = T0 + int(t * S)
    return Sample("fsf.matte_temp", value, Quality.GOOD, ts, ts)
