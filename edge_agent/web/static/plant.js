// The Plant page: every tag, filtered and paged, so 10 000 tags cost 100 rows of DOM.
// Rows are rebuilt when the filter, the page or the set of tags changes; otherwise only the
// cells of visible rows whose tag changed are written.

import { age, badge, el, setBadge, value } from "./format.js";
import { sparkline, svgEl } from "./charts.js";
import { condition, follow, serverNow, state, unitOf } from "./state.js";

const PAGE = 100;
const view = { query: "", unit: "", quality: "", page: 0, rows: new Map(), list: [], sparkAt: 0 };

function $(id) {
  return document.getElementById(id);
}

export function initPlant() {
  $("plant-search").addEventListener("input", (e) => {
    view.query = e.target.value.trim().toLowerCase();
    view.page = 0;
    rebuild();
  });
  $("plant-unit").addEventListener("change", (e) => {
    view.unit = e.target.value;
    view.page = 0;
    rebuild();
  });
  $("plant-quality").addEventListener("change", (e) => {
    view.quality = e.target.value;
    view.page = 0;
    rebuild();
  });
  $("plant-prev").addEventListener("click", () => turn(-1));
  $("plant-next").addEventListener("click", () => turn(1));
}

function turn(by) {
  const pages = Math.max(1, Math.ceil(view.list.length / PAGE));
  view.page = Math.min(pages - 1, Math.max(0, view.page + by));
  rebuild();
}

export function fillUnits() {
  const select = $("plant-unit");
  const units = new Set();
  for (const tag of state.tags.keys()) units.add(tag.split(".", 1)[0]);
  for (const entry of state.byTag.keys()) units.add(entry.split(".", 1)[0]);
  const have = new Set([...select.options].map((o) => o.value));
  for (const unit of [...units].sort()) {
    if (!have.has(unit)) select.append(el("option", { value: unit, text: unit }));
  }
}

function matches(tag) {
  if (view.unit && !tag.startsWith(view.unit + ".")) return false;
  if (view.query) {
    const entry = state.byTag.get(tag);
    const text = entry ? tag + " " + entry.description : tag;
    if (!text.toLowerCase().includes(view.query)) return false;
  }
  if (view.quality) {
    const cond = condition(tag, state.tags.get(tag));
    if (view.quality === "problem") return cond !== "good";
    if (view.quality === "stale") return cond === "stale";
    if (view.quality === "b") return cond === "bad";
    if (view.quality === "u") return cond === "uncertain";
  }
  return true;
}

function allTags() {
  const tags = new Set(state.tags.keys());
  for (const t of state.byTag.keys()) tags.add(t);
  return [...tags].sort();
}

function rebuild() {
  view.list = allTags().filter(matches);
  const pages = Math.max(1, Math.ceil(view.list.length / PAGE));
  view.page = Math.min(view.page, pages - 1);
  const visible = view.list.slice(view.page * PAGE, (view.page + 1) * PAGE);
  const body = $("plant-rows");
  view.rows = new Map();
  const rows = visible.map((tag) => {
    const row = makeRow(tag);
    view.rows.set(tag, row);
    return row.tr;
  });
  body.replaceChildren(...rows);
  $("plant-empty").hidden = visible.length > 0;
  const first = view.list.length ? view.page * PAGE + 1 : 0;
  $("plant-range").textContent = `${first}–${view.page * PAGE + visible.length} of ${view.list.length.toLocaleString("en-US")}`;
  $("plant-prev").disabled = view.page === 0;
  $("plant-next").disabled = view.page >= pages - 1;
  counts();
  for (const tag of visible) write(tag);
  follow(visible).then(drawSparks).catch(() => {});
}

function makeRow(tag) {
  const entry = state.byTag.get(tag) || { description: "", unit: "" };
  const cells = {
    value: el("td", { class: "num value" }),
    quality: el("td", { class: "quality" }),
    reason: el("td", { class: "reason" }),
    age: el("td", { class: "num age" }),
    spark: svgEl("svg", { class: "sparkline", "aria-hidden": "true" }),
  };
  const tr = el(
    "tr",
    { "data-tag": tag },
    el("td", { class: "tag", text: tag }),
    el("td", { class: "desc", text: entry.description || "" }),
    cells.value,
    el("td", { class: "unit", text: unitOf(tag) }),
    cells.quality,
    cells.reason,
    cells.age,
    el("td", { class: "spark-cell" }, cells.spark),
  );
  return { tr, cells };
}

function write(tag) {
  const row = view.rows.get(tag);
  if (!row) return;
  const s = state.tags.get(tag);
  const cond = condition(tag, s);
  row.tr.className = "row-" + cond;
  setBadge(row.cells.quality, cond);
  if (!s) {
    row.cells.value.textContent = "—";
    row.cells.reason.textContent = "no sample yet";
    return;
  }
  const text = value(s[0]);
  if (row.cells.value.textContent !== text) row.cells.value.textContent = text;
  row.cells.value.classList.toggle("text", typeof s[0] === "string");
  const reason = s[2] || (cond === "stale" ? "no new sample" : "");
  if (row.cells.reason.textContent !== reason) {
    row.cells.reason.textContent = reason;
    row.cells.reason.title = reason;
  }
  row.cells.age.textContent = age(s[4]);
  return s;
}

function counts() {
  let bad = 0;
  let uncertain = 0;
  let stale = 0;
  for (const [tag, s] of state.tags) {
    const c = condition(tag, s);
    if (c === "bad") bad++;
    else if (c === "uncertain") uncertain++;
    else if (c === "stale") stale++;
  }
  const node = $("plant-counts");
  node.replaceChildren(
    `${state.tags.size.toLocaleString("en-US")} tags `,
    badge("bad"), ` ${bad} `, badge("uncertain"), ` ${uncertain} `, badge("stale"), ` ${stale}`,
  );
}

function drawSparks() {
  for (const [tag, row] of view.rows) {
    const series = state.series.get(tag);
    if (series) sparkline(row.cells.spark, series.points());
  }
  view.sparkAt = Date.now();
}

// Called by the app's render tick while this page is shown.
export function renderPlant(changed, structure, secondPassed) {
  if (structure || (view.quality && secondPassed)) {
    fillUnits();
    rebuild();
    return;
  }
  for (const tag of changed) {
    const s = write(tag);
    // How long from acquisition to the screen: the benchmark reads these.
    if (s && state.latencies.length < 100000) state.latencies.push(serverNow() - s[4]);
  }
  if (secondPassed) {
    for (const [tag, row] of view.rows) {
      const s = state.tags.get(tag);
      if (s) {
        row.cells.age.textContent = age(s[4]);
        const cond = condition(tag, s);
        if (cond === "stale") write(tag);
      }
    }
    counts();
  }
  if (Date.now() - view.sparkAt > 5000) drawSparks();
}
