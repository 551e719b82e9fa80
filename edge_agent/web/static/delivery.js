// The Delivery and health page: /healthz's verdict, every source, sink and the outbox with its
// depth and oldest sample, the last error of each, and the running configuration (masked).

import { el, value } from "./format.js";
import { getJSON } from "./state.js";

let fetchedAt = 0;
let configShown = false;
let busy = false;

function $(id) {
  return document.getElementById(id);
}

function seconds(v) {
  if (v === undefined || v === null) return "—";
  if (v < 120) return value(v) + " s";
  if (v < 7200) return value(v / 60) + " min";
  return value(v / 3600) + " h";
}

function components(doc) {
  const head = ["Component", "State", "Read / published", "Outbox depth", "Oldest waiting", "Last error or detail"];
  const rows = [el("tr", {}, ...head.map((h) => el("th", { text: h })))];
  for (const c of doc.components) {
    const moved = c.counters.samples_published_total ?? c.counters.samples_read_total ?? c.counters.samples_written_total;
    const depth = c.gauges.depth_samples ?? c.gauges.backlog_samples;
    const oldest = c.gauges.oldest_age_seconds ?? c.gauges.backlog_age_seconds;
    rows.push(
      el(
        "tr",
        { class: c.healthy ? "row-good" : "row-bad", "data-component": `${c.kind}:${c.name}` },
        el("td", {}, el("span", { class: "kind", text: c.kind }), " ", el("strong", { text: c.name })),
        el("td", {}, el("span", { class: "state " + (c.healthy ? "state-ok" : "state-bad"), text: (c.healthy ? "✓ " : "✕ ") + c.state })),
        el("td", { class: "num", text: moved === undefined ? "—" : value(moved) }),
        el("td", { class: "num", text: depth === undefined ? "—" : value(depth) }),
        el("td", { class: "num", text: oldest === undefined ? "—" : seconds(oldest) }),
        el("td", { class: "reason", text: c.detail || "" }),
      ),
    );
  }
  $("delivery-components").replaceChildren(...rows);
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const doc = await getJSON("/api/delivery");
    fetchedAt = Date.now();
    const ok = doc.status === "ok";
    const verdict = $("delivery-verdict");
    verdict.className = "verdict verdict-" + (ok ? "ok" : "hold");
    verdict.replaceChildren(
      el("div", { class: "verdict-main" }, el("span", { class: "verdict-word", text: ok ? "Healthy" : "Degraded" }),
        el("span", { class: "verdict-policy", text: `/healthz answers ${doc.http_status} · ${doc.browsers} browser(s) connected` })),
      el("div", { class: "verdict-reason", text: doc.summary }),
    );
    const note = $("delivery-note");
    note.replaceChildren(...(doc.influx.configured ? [] : [el("p", { class: "note", text: doc.influx.hint })]));
    components(doc);
    if (!configShown) {
      const config = await getJSON("/api/config");
      $("delivery-config").textContent = JSON.stringify(config, null, 2);
      configShown = true;
    }
  } finally {
    busy = false;
  }
}

export function renderDelivery(changed, structure) {
  if (structure) configShown = false;
  if (structure || Date.now() - fetchedAt >= 1000) refresh().catch((err) => console.warn(err));
}
