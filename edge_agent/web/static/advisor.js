// The Advisor page: per setpoint what it recommends and why (or why it holds), the inputs it
// used with their quality, the recent changes, and in closed loop the control audit.

import { age, badge, clock, el, value } from "./format.js";
import { Chart, range, timeLabel, timeTicks } from "./charts.js";
import { condition, follow, getJSON, serverNow, state, unitOf } from "./state.js";

let doc = null;
let audit = null;
let fetchedAt = 0;
let busy = false;

function $(id) {
  return document.getElementById(id);
}

function cond(s) {
  return s && s.quality ? (s.quality === "good" && serverNow() - s.acq_ms > 60000 ? "stale" : s.quality) : "nodata";
}

function verdict() {
  const v = doc.verdict;
  const validity = v.validity.value || "unknown";
  const margin = doc.heat_margin;
  const node = $("advisor-verdict");
  node.className = "verdict verdict-" + (validity === "valid" ? "ok" : "hold");
  node.replaceChildren(
    el("div", { class: "verdict-main" }, el("span", { class: "verdict-word", text: validity === "valid" ? "Advising" : validity === "hold" ? "Holding" : validity }),
      el("span", { class: "verdict-policy", text: `policy ${doc.policy.replaceAll("_", " ")} · ${doc.control_mode.replace("_", " ")} mode` })),
    el("div", { class: "verdict-reason", text: v.reason.value || v.validity.reason || "" }),
    el("div", { class: "verdict-margin" }, "heat margin ", el("strong", { text: `${value(margin.value)} MW` }), ` (reserve ${doc.reserve_mw} MW) `, badge(cond(margin))),
  );
}

function setpoints() {
  const head = ["Setpoint", "Present", "Measured", "Recommended", "Change", "Limits", "Quality", "Reason or hold reason"];
  const rows = [el("tr", {}, ...head.map((h) => el("th", { text: h })))];
  for (const sp of doc.setpoints) {
    const rec = sp.recommended;
    const present = sp.present.value;
    const change = typeof rec.value === "number" && typeof present === "number" ? rec.value - present : null;
    const unit = unitOf(sp.setpoint_tag);
    rows.push(
      el(
        "tr",
        { "data-tag": sp.advisor_tag, class: "row-" + cond(rec) },
        el("td", {}, el("div", { class: "sp-name", text: sp.name }), el("div", { class: "tag small", text: sp.setpoint_tag })),
        el("td", { class: "num", text: `${value(present)} ${unit}` }),
        el("td", { class: "num", text: sp.measured ? `${value(sp.measured.value)} ${unit}` : "—" }),
        el("td", { class: "num strong", text: `${value(rec.value)} ${unit}` }),
        el("td", { class: "num " + (change > 0 ? "up" : change < 0 ? "down" : ""), text: change === null ? "—" : (change > 0 ? "▲ +" : change < 0 ? "▼ " : "= ") + value(change) }),
        el("td", { class: "num small", text: `${value(sp.min)} … ${value(sp.max)}, step ≤ ${value(sp.max_step)}` }),
        el("td", {}, badge(cond(rec))),
        el("td", { class: "reason", text: short(rec.reason, 200), title: rec.reason || "" }),
      ),
    );
  }
  $("advisor-setpoints").replaceChildren(...rows);
}

function inputs() {
  const rows = [el("tr", {}, ...["Input", "Value", "Quality", "Reason", "Age"].map((h) => el("th", { text: h })))];
  for (const s of doc.inputs) {
    rows.push(
      el(
        "tr",
        { "data-tag": s.tag, class: "row-" + condition(s.tag, state.tags.get(s.tag)) },
        el("td", { class: "tag", text: s.tag }),
        el("td", { class: "num", text: `${value(s.value)} ${unitOf(s.tag)}` }),
        el("td", {}, badge(condition(s.tag, state.tags.get(s.tag)))),
        el("td", { class: "reason", text: s.reason || "" }),
        el("td", { class: "num", text: s.acq_ms ? age(s.acq_ms) : "—" }),
      ),
    );
  }
  $("advisor-inputs").replaceChildren(...rows);
}

function short(text, n = 120) {
  if (!text) return "";
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function changes() {
  const rows = [el("tr", {}, ...["Time", "Tag", "Value", "Quality", "Reason"].map((h) => el("th", { text: h })))];
  for (const c of doc.changes.slice(0, 14)) {
    rows.push(
      el(
        "tr",
        {},
        el("td", { class: "num", text: clock(c.ts_ms) }),
        el("td", { class: "tag", text: c.tag.replace("kpi.advisor.", "") }),
        el("td", { class: typeof c.value === "string" ? "text" : "num", text: short(value(c.value)) }),
        el("td", {}, badge(c.quality)),
        el("td", { class: "reason", text: short(c.reason), title: c.reason || "" }),
      ),
    );
  }
  if (rows.length === 1) rows.push(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "no changes yet" })));
  $("advisor-changes").replaceChildren(...rows);
}

function charts() {
  const holder = $("advisor-charts");
  const now = serverNow();
  const span = state.meta.history.seconds * 1000;
  const figures = doc.setpoints.map((sp) => {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    const rec = state.series.get(sp.advisor_tag);
    const pres = state.series.get(sp.setpoint_tag);
    const lists = [rec ? rec.points() : [], pres ? pres.points() : []];
    const chart = new Chart(svg, { x: [now - span, now], y: range(lists, [sp.min, sp.max], 0.05), xTicks: timeTicks(now - span, now), xLabel: timeLabel, yLabel: value, yUnit: unitOf(sp.setpoint_tag) });
    chart.band(sp.min, sp.max, "band-limits");
    chart.line(lists[1], "series b");
    chart.line(lists[0], "series a");
    return el("figure", { class: "chart small" }, el("figcaption", { text: sp.name }), svg,
      el("div", { class: "legend" }, el("span", { class: "key key-a", text: "recommended" }), el("span", { class: "key key-b", text: "present setpoint" }), el("span", { class: "key key-limits", text: "limits" })));
  });
  holder.replaceChildren(...figures);
}

function auditTable() {
  const holder = $("advisor-audit");
  if (!audit || audit.control_mode !== "closed_loop") {
    holder.replaceChildren(el("p", { class: "note", text: "Advisory mode: the agent writes nothing to the plant. In closed-loop mode ([control] mode = \"closed_loop\") every write and every refusal, with its reason, is listed here." }));
    if (!audit || audit.records.length === 0) return;
  }
  const rows = [el("tr", {}, ...["Time", "Origin", "Tag", "Requested", "Written", "Result", "Reason"].map((h) => el("th", { text: h })))];
  for (const r of audit.records.slice(0, 50)) {
    rows.push(
      el(
        "tr",
        { class: "result-" + r.result },
        el("td", { class: "num", text: clock(r.ts_ns / 1e6) }),
        el("td", { text: r.origin }),
        el("td", { class: "tag", text: r.tag }),
        el("td", { class: "num", text: value(r.requested) }),
        el("td", { class: "num", text: value(r.written) }),
        el("td", { class: "result", text: r.result }),
        el("td", { class: "reason", text: r.detail || r.reason || "" }),
      ),
    );
  }
  if (rows.length === 1) rows.push(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "no control attempts yet" })));
  holder.append(el("table", { class: "tags compact" }, ...rows));
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    [doc, audit] = await Promise.all([getJSON("/api/advisor"), getJSON("/api/audit")]);
    fetchedAt = Date.now();
    if (!doc.configured) {
      $("advisor-verdict").replaceChildren(el("p", { class: "note", text: "The advisor is not configured ([kpi.advisor] in the configuration)." }));
      return;
    }
    await follow(doc.setpoints.flatMap((sp) => [sp.advisor_tag, sp.setpoint_tag]));
    verdict();
    setpoints();
    inputs();
    changes();
    charts();
    auditTable();
  } finally {
    busy = false;
  }
}

export function renderAdvisor(changed, structure) {
  if (!state.meta) return;
  if (structure || Date.now() - fetchedAt >= 1000) refresh().catch((err) => console.warn(err));
}
