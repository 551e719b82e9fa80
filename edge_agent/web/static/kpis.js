// The KPIs page: recycled-feed ratio now and per window against the trajectory in the
// configuration, the heat margin with the advisor's reserve band, CO2.

import { badge, el, value } from "./format.js";
import { Chart, range, timeLabel, timeTicks } from "./charts.js";
import { condition, followTrends, serverNow, state } from "./state.js";

const RR = "kpi.recycled_ratio.";
const WINDOW_LABEL = { hour: "hour", shift: "shift", day: "day", month: "month", fiscal_year: "fiscal year" };
const TREND_TAGS = [RR + "now", RR + "hour", RR + "target", "kpi.heat_margin_mw", "kpi.co2.tph", "kpi.co2.per_t_cu"];

function $(id) {
  return document.getElementById(id);
}

function num(tag) {
  const s = state.tags.get(tag);
  return s && typeof s[0] === "number" && s[1] !== "b" ? s[0] : null;
}

function card(label, tag, unit, note) {
  const s = state.tags.get(tag);
  const cond = condition(tag, s);
  return el(
    "div",
    { class: "card card-" + cond, "data-tag": tag },
    el("div", { class: "card-label", text: label }),
    el("div", { class: "card-value" }, el("span", { class: "big", text: s ? value(s[1] === "b" ? null : s[0]) : "—" }), " ", el("span", { class: "card-unit", text: unit })),
    el("div", { class: "card-foot" }, badge(cond), " ", el("span", { class: "card-note", text: (s && s[2]) || note || "" })),
  );
}

function cards() {
  const list = [
    card("Recycled ratio now", RR + "now", "%"),
    card("Shift", RR + "shift", "%"),
    card("Day", RR + "day", "%"),
    card("Month", RR + "month", "%"),
    card("Fiscal year", RR + "fiscal_year", "%"),
    card("Target this fiscal year", RR + "target", "%"),
    card("Gap to target", RR + "gap", "pp"),
    card("Heat margin", "kpi.heat_margin_mw", "MW", state.meta && state.meta.reserve_mw !== null ? `reserve ${state.meta.reserve_mw} MW` : ""),
    card("CO₂", "kpi.co2.tph", "t/h"),
    card("CO₂ per t Cu", "kpi.co2.per_t_cu", "t/t"),
  ];
  $("kpi-cards").replaceChildren(...list);
}

function fiscalPosition() {
  const fy = state.meta.fiscal_year;
  const now = new Date(serverNow());
  const start = (state.meta.fiscal_start_month || 4) - 1;
  const months = (now.getMonth() - start + 12) % 12 + now.getDate() / 31;
  return fy + months / 12;
}

function trajectory() {
  const targets = Object.entries(state.meta.targets).map(([y, p]) => [Number(y), p]);
  const svg = $("chart-trajectory");
  if (targets.length === 0) {
    new Chart(svg, { x: [0, 1], y: [0, 1] }).message("no recycled-ratio targets configured");
    return;
  }
  const nowX = fiscalPosition();
  const x0 = Math.min(targets[0][0], Math.floor(nowX));
  const x1 = Math.max(targets[targets.length - 1][0], Math.ceil(nowX));
  const windows = ["shift", "day", "month", "fiscal_year"].map((w) => [w, num(RR + w)]);
  const peak = Math.max(...targets.map((t) => t[1]), ...windows.map((w) => w[1] || 0), num(RR + "now") || 0);
  const chart = new Chart(svg, {
    x: [x0, x1],
    y: [0, Math.ceil((peak * 1.15) / 10) * 10],
    xTicks: targets.map((t) => t[0]),
    xLabel: (v) => "FY" + v,
    yLabel: (v) => v + "%",
    yUnit: "%",
  });
  chart.line(targets, "trajectory");
  targets.forEach(([year, pct], i) => {
    const last = i === targets.length - 1 && i > 0;
    chart.marker(year, pct, "milestone", `${pct}% in FY${year}`, "circle", last ? "end" : "start");
  });
  chart.vline(nowX, "now-line", "now");
  const shapes = { shift: "circle", day: "circle", month: "diamond", fiscal_year: "diamond" };
  const legend = [el("span", { class: "key key-trajectory", text: "target trajectory (config)" })];
  // The windows all end now; they stand side by side around the now line so none hides another.
  const spread = (x1 - x0) / 80;
  windows.forEach(([w, v], i) => {
    if (v === null) return;
    const label = w === "fiscal_year" ? `FY so far ${value(v)}%` : "";
    chart.marker(nowX + (i - 1.5) * spread, v, "win win-" + w, label, shapes[w]);
    legend.push(el("span", { class: "key key-" + w, text: `${WINDOW_LABEL[w]} ${value(v)}%` }));
  });
  $("legend-trajectory").replaceChildren(...legend);
}

function trend(svgId, legendId, lines, opts = {}) {
  const now = serverNow();
  const span = (state.trendRange || state.meta.history.seconds) * 1000;
  const data = lines.map((l) => [l, state.trends.get(l.tag) ? state.trends.get(l.tag).points() : []]);
  const y = range(data.map((d) => d[1]), opts.extra || []);
  const chart = new Chart($(svgId), {
    x: [now - span, now],
    y,
    xTicks: timeTicks(now - span, now),
    xLabel: timeLabel,
    yUnit: opts.unit,
    yLabel: (v) => value(v),
  });
  if (opts.bands) opts.bands(chart);
  for (const [l, points] of data) chart.line(points, "series " + l.cls);
  if (!data.some((d) => d[1].some((p) => typeof p[1] === "number"))) chart.message("no history yet");
  $(legendId).replaceChildren(
    ...lines.map((l) => el("span", { class: "key key-" + l.cls, text: `${l.label} ${value(num(l.tag))}` })),
    ...(opts.legend || []),
    el("span", { class: "source", text: sourceNote() }),
  );
}

function sourceNote() {
  if (state.trendSource === "ring" || !state.trendSource) return "from the agent's memory";
  return "from " + state.trendSource;
}

function windowsTable() {
  const rows = [el("tr", {}, ...["Window", "Recycled ratio", "Quality", "Coverage", "CO₂", "CO₂ per t Cu"].map((h) => el("th", { text: h })))];
  for (const w of state.meta.windows) {
    const tag = RR + w;
    const s = state.tags.get(tag);
    const cov = num(RR + w + "_coverage");
    rows.push(
      el(
        "tr",
        { "data-tag": tag },
        el("td", { text: WINDOW_LABEL[w] || w }),
        el("td", { class: "num", text: s ? value(s[0]) + " %" : "—" }),
        el("td", {}, badge(condition(tag, s)), " ", el("span", { class: "reason", text: (s && s[2]) || "" })),
        el("td", { class: "num", text: cov === null ? "—" : (cov * 100).toFixed(1) + " %" }),
        el("td", { class: "num", text: value(num(`kpi.co2.${w}_t`)) + " t" }),
        el("td", { class: "num", text: value(num(`kpi.co2.${w}_per_t_cu`)) }),
      ),
    );
  }
  $("kpi-windows").replaceChildren(...rows);
}

let rangeS = 0;
let fetchedAt = 0;

function rangeControl() {
  const select = $("kpi-range");
  $("kpi-range-bar").hidden = state.meta.trends === "ring";
  if (state.meta.trends === "ring") return;
  select.options[0].textContent = `last ${Math.round(state.meta.history.seconds / 60)} min`;
  if (!select.dataset.bound) {
    select.dataset.bound = "1";
    select.addEventListener("change", () => {
      rangeS = Number(select.value);
      fetchedAt = 0;
      refreshTrends();
    });
  }
}

function refreshTrends() {
  fetchedAt = Date.now();
  followTrends(TREND_TAGS, rangeS).then(draw).catch((err) => console.warn(err));
}

export function renderKpis(changed, structure, secondPassed) {
  if (!state.meta) return;
  if (structure) rangeControl();
  // A database answers for longer windows; refresh them every minute, the ring's once.
  if (structure || (rangeS && Date.now() - fetchedAt > 60000)) refreshTrends();
  else if (secondPassed) draw();
}

function draw() {
  cards();
  trajectory();
  const target = num(RR + "target");
  trend("chart-ratio", "legend-ratio", [
    { tag: RR + "now", label: "now", cls: "a" },
    { tag: RR + "hour", label: "hour window", cls: "b" },
  ], {
    unit: "%",
    extra: target === null ? [] : [target],
    bands: (c) => target !== null && c.hline(target, "target-line", `target ${value(target)} %`),
  });
  const reserve = state.meta.reserve_mw;
  trend("chart-margin", "legend-margin", [{ tag: "kpi.heat_margin_mw", label: "heat margin", cls: "a" }], {
    unit: "MW",
    extra: reserve === null ? [0] : [0, reserve * 1.6, -reserve * 0.6],
    bands: (c) => {
      if (reserve !== null) c.band(0, reserve, "band-reserve", `reserve 0–${reserve} MW`);
      c.band(-1e9, 0, "band-deficit", "deficit");
      c.hline(0, "zero-line");
    },
    legend: reserve === null ? [] : [el("span", { class: "key key-reserve", text: `reserve band ${reserve} MW (advisor)` })],
  });
  trend("chart-co2", "legend-co2", [
    { tag: "kpi.co2.tph", label: "CO₂ t/h", cls: "a" },
  ], { unit: "t/h", legend: [el("span", { class: "key", text: `per t Cu ${value(num("kpi.co2.per_t_cu"))} t/t · per t input ${value(num("kpi.co2.per_t_input"))} t/t` })] });
  windowsTable();
}
