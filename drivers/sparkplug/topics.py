"""The Sparkplug B topic namespace: `spBv1.0/{group}/{verb}/{edge node}[/{device}]`."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "spBv1.0"


@dataclass(frozen=True, slots=True)
class Topics:
    group: str
    node: str

    def node_topic(self, verb: str) -> str:
        return f"{NAMESPACE}/{self.group}/{verb}/{self.node}"

    def device_topic(self, verb: str, device: str) -> str:
        return f"{NAMESPACE}/{self.group}/{verb}/{self.node}/{device}"

    def subscriptions(self, primary_host_id: str | None) -> list[str]:
        """What the edge node subscribes to (QoS 1) before its NBIRTH."""
        subs = [self.node_topic("NCMD"), self.device_topic("DCMD", "+")]
        if primary_host_id is not None:
            subs.append(state_topic(primary_host_id))
        return subs

    def parse_command(self, topic: str) -> tuple[str, str | None] | None:
        """(`NCMD`, None) or (`DCMD`, device) for our own command topics; None for anything else."""
        parts = topic.split("/")
        if parts[:2] != [NAMESPACE, self.group] or len(parts) < 4 or parts[3] != self.node:
            return None
        if parts[2] == "NCMD" and len(parts) == 4:
            return "NCMD", None
        if parts[2] == "DCMD" and len(parts) == 5:
            return "DCMD", parts[4]
        return None


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"
