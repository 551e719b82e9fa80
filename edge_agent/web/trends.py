"""History for the charts from the database the InfluxDB sink writes to, when `web.trends` says so.

The sink's narrow schema (docs/influxdb.md) is one point per sample: measurement = unit, tag
`tag_id`, field `value` for numbers; a Bad sample has no `value`, so it leaves a gap here too.
The answer has the history ring's shape (bucket means on an absolute grid of `step`), so a page
cannot tell where its buckets came from except by the `source` it is told.

- `prometheus`: VictoriaMetrics stores the field as metric `<measurement>_value`;
  `avg_over_time(...[step])` at the end of each bucket is that bucket's mean.
- `influxql`: InfluxDB 1.x, `SELECT mean("value") ... GROUP BY time(step), "tag_id"`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import aiohttp

from edge_agent.config import AgentConfig

TIMEOUT_S = 5.0


class TrendError(Exception):
    """The database did not answer as expected (the caller falls back to the ring)."""


def _alternatives(tags: Sequence[str]) -> str:
    return "|".join(re.escape(t) for t in tags)


class TrendSource:
    def __init__(self, cfg: AgentConfig) -> None:
        assert cfg.influx is not None
        self.kind = cfg.web.trends
        self.url = cfg.influx.url.rstrip("/")
        self.db = cfg.influx.db
        auth = None
        if cfg.influx.username and cfg.influx.password:
            auth = aiohttp.BasicAuth(cfg.influx.username, cfg.influx.password.resolve())
        self._auth = auth
        self.name = "VictoriaMetrics" if self.kind == "prometheus" else "InfluxDB"

    async def series(
        self, tags: Sequence[str], first_epoch: int, slots: int, step_s: int
    ) -> dict[str, list[float | None]]:
        """Bucket means for buckets `first_epoch .. first_epoch + slots - 1` (epoch = t // step)."""
        out: dict[str, list[float | None]] = {t: [None] * slots for t in tags}
        if not tags:
            return out
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout, auth=self._auth) as http:
                if self.kind == "prometheus":
                    await self._prometheus(http, tags, first_epoch, slots, step_s, out)
                else:
                    await self._influxql(http, tags, first_epoch, slots, step_s, out)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            raise TrendError(f"{self.name} at {self.url}: {exc!r}") from exc
        return out

    async def _prometheus(
        self, http: aiohttp.ClientSession, tags: Sequence[str], first: int, slots: int,
        step_s: int, out: dict[str, list[float | None]],
    ) -> None:  # fmt: skip
        pattern = _alternatives(tags).replace("\\", "\\\\")  # a regex inside a PromQL string
        selector = f'{{__name__=~"[a-z0-9_]+_value",tag_id=~"{pattern}"}}'
        params = {
            "query": f"avg_over_time({selector}[{step_s}s])",
            "start": str((first + 1) * step_s),
            "end": str((first + slots) * step_s),
            "step": f"{step_s}s",
        }
        async with http.get(self.url + "/api/v1/query_range", params=params) as resp:
            body: Any = await resp.json(content_type=None)
        if resp.status != 200 or body.get("status") != "success":
            raise TrendError(f"query_range answered {resp.status}: {str(body)[:200]}")
        for result in body["data"]["result"]:
            values = out.get(result["metric"].get("tag_id", ""))
            if values is None:
                continue
            for ts, text in result["values"]:
                i = round(float(ts) / step_s) - 1 - first  # the bucket that ends at ts
                if 0 <= i < slots:
                    values[i] = float(text)

    async def _influxql(
        self, http: aiohttp.ClientSession, tags: Sequence[str], first: int, slots: int,
        step_s: int, out: dict[str, list[float | None]],
    ) -> None:  # fmt: skip
        start_ms, end_ms = first * step_s * 1000, (first + slots) * step_s * 1000
        query = (
            f'SELECT mean("value") FROM /.*/ WHERE "tag_id" =~ /^({_alternatives(tags)})$/ '
            f"AND time >= {start_ms}ms AND time < {end_ms}ms "
            f'GROUP BY time({step_s}s), "tag_id"'
        )
        params = {"db": self.db or "", "q": query, "epoch": "ms"}
        async with http.get(self.url + "/query", params=params) as resp:
            body: Any = await resp.json(content_type=None)
        if resp.status != 200:
            raise TrendError(f"/query answered {resp.status}: {str(body)[:200]}")
        for statement in body.get("results", []):
            if "error" in statement:
                raise TrendError(statement["error"])
            for series in statement.get("series", []):
                values = out.get(series.get("tags", {}).get("tag_id", ""))
                if values is None:
                    continue
                for ts_ms, mean in series["values"]:
                    i = int(ts_ms) // (step_s * 1000) - first
                    if mean is not None and 0 <= i < slots:
                        values[i] = float(mean)
