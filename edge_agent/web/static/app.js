// The page's frame: catalogue, push stream, tabs, and one render tick for whichever page shows.
// The push stream (EventSource) reconnects by itself; every (re)connect starts with a snapshot,
// and a new agent (another start time) makes the page fetch the catalogue again.

import { applyTags, getJSON, state } from "./state.js";
import { initPlant, renderPlant } from "./plant.js";
import { renderKpis } from "./kpis.js";
import { renderAdvisor } from "./advisor.js";
import { renderAlarms } from "./alarms.js";
import { renderDelivery } from "./delivery.js";

const PAGES = {
  plant: renderPlant, kpis: renderKpis, advisor: renderAdvisor, alarms: renderAlarms, delivery: renderDelivery,
};
let page = "plant";
let startedMs = null;
let lastSecond = 0;
let pending = false;
let pageChanged = true;

window.edgeView = state; // for the browser tests and the benchmark

function setLink(cls, text) {
  const node = document.getElementById("link");
  node.className = "link " + cls;
  document.getElementById("link-text").textContent = text;
}

async function loadMeta() {
  state.meta = await getJSON("/api/meta");
  state.byTag = new Map(state.meta.tags.map((t) => [t.tag, t]));
  state.structure = true;
  document.getElementById("site").textContent = `${state.meta.site} · ${state.meta.instance_id}`;
  document.title = `${state.meta.site} · edge agent`;
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => setLink("live", "live"));
  source.addEventListener("snapshot", async (e) => {
    const msg = JSON.parse(e.data);
    state.offsetMs = msg.now - Date.now();
    if (msg.started_ms !== startedMs) {
      startedMs = msg.started_ms;
      state.series = new Map(); // another agent: its ring, not our copy
      try {
        await loadMeta();
      } catch (err) {
        console.warn("catalogue not loaded", err);
      }
    }
    applyTags(msg.tags, true);
    setLink("live", "live");
    schedule();
  });
  source.addEventListener("tags", (e) => {
    const msg = JSON.parse(e.data);
    state.offsetMs = msg.now - Date.now();
    applyTags(msg.tags, false);
    schedule();
  });
  source.addEventListener("error", () => {
    setLink("down", source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  });
}

function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(render);
}

function render() {
  pending = false;
  const now = Date.now();
  const secondPassed = now - lastSecond >= 1000;
  if (secondPassed) lastSecond = now;
  const changed = state.changed;
  state.changed = new Set();
  const structure = state.structure || pageChanged;
  state.structure = false;
  pageChanged = false;
  try {
    PAGES[page](changed, structure, secondPassed);
  } catch (err) {
    console.error(err);
  }
  document.getElementById("footer-text").textContent = state.meta
    ? `${state.tags.size.toLocaleString("en-US")} tags · history ${Math.round(state.meta.history.seconds / 60)} min in ${state.meta.history.step_s} s buckets · read-only view`
    : "";
}

function showPage() {
  const wanted = (location.hash || "#plant").slice(1);
  page = PAGES[wanted] ? wanted : "plant";
  for (const name of Object.keys(PAGES)) {
    document.getElementById("page-" + name).hidden = name !== page;
  }
  for (const a of document.querySelectorAll("#tabs a")) {
    a.classList.toggle("active", a.dataset.page === page);
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  pageChanged = true;
  schedule();
}

window.addEventListener("hashchange", showPage);
setInterval(schedule, 1000); // ages, staleness, polled pages
initPlant();
showPage();
connect();
