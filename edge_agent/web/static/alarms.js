// The Alarms page: what needs the operator (active, unacknowledged first, by priority), what is
// taken out of annunciation (shelved with its expiry and reason, suppressed, out of service), and
// the latest events. Polled from /api/alarms once a second; the view is read-only: operators act
// through the MQTT commands (docs/alarms.md, "Operator commands").

import { clock, el, value } from "./format.js";
import { getJSON, serverNow } from "./state.js";

let fetchedAt = 0;
let busy = false;

const STATES = {
  active_unack: ["!", "Active, unacknowledged"],
  active_ack: ["●", "Active, acknowledged"],
  returned_unack: ["↩", "Returned, unacknowledged"],
  normal: ["✓", "Normal"],
  shelved: ["◇", "Shelved"],
  suppressed: ["○", "Suppressed by design"],
  out_of_service: ["✕", "Out of service"],
};

function $(id) {
  return document.getElementById(id);
}

function stateBadge(state) {
  const [symbol, word] = STATES[state] || ["?", state];
  return el("span", { class: "alarm-state alarm-" + state },
    el("span", { class: "sym", "aria-hidden": "true", text: symbol }), word);
}

function since(ms) {
  if (!ms) return "—";
  const s = Math.max(0, (serverNow() - ms) / 1000);
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function until(ms) {
  const s = Math.max(0, (ms - serverNow()) / 1000);
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function shown(a) {
  return a.value === null || a.value === undefined ? "—" : value(a.value) + (a.unit ? " " + a.unit : "");
}

function table(id, head, rows, empty) {
  const node = $(id);
  const header = el("tr", {}, ...head.map((h) => el("th", { text: h })));
  node.replaceChildren(header, ...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: String(head.length), text: empty }))]));
}

function activeRows(list) {
  return list.map((a) =>
    el("tr", { "data-alarm": a.id, class: a.acknowledged ? "" : "unack" },
      el("td", {}, el("span", { class: "prio prio-" + a.priority, text: a.priority })),
      el("td", { class: "state" }, stateBadge(a.state)),
      el("td", {}, el("strong", { text: a.id }), a.source ? el("span", { class: "kind", text: " opc ua " + a.source }) : ""),
      el("td", { class: "message", text: a.message }),
      el("td", { class: "num value", text: shown(a) }),
      el("td", { class: "num", text: since(a.active_since_ms) }),
    ),
  );
}

function removedRows(list) {
  return list.map((a) =>
    el("tr", { "data-alarm": a.id },
      el("td", { class: "state" }, stateBadge(a.state)),
      el("td", {}, el("strong", { text: a.id })),
      el("td", { class: "message", text: a.message }),
      el("td", { class: "until", text: a.shelved_until_ms ? `${clock(a.shelved_until_ms)} (in ${until(a.shelved_until_ms)})` : "—" }),
      el("td", { class: "reason", text: a.shelve_reason || "" }),
    ),
  );
}

function historyRows(list) {
  return list.map((e) =>
    el("tr", { "data-event": e.id, "data-transition": e.transition },
      el("td", { class: "num", text: clock(e.ts_ms) }),
      el("td", {}, el("strong", { text: e.id })),
      el("td", { class: "transition", text: e.transition.replaceAll("_", " ") }),
      el("td", { class: "state" }, stateBadge(e.state)),
      el("td", {}, el("span", { class: "prio prio-" + e.priority, text: e.priority })),
      el("td", { class: "reason", text: [e.operator, e.reason].filter(Boolean).join(": ") }),
    ),
  );
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const doc = await getJSON("/api/alarms");
    fetchedAt = Date.now();
    const unack = doc.active.filter((a) => !a.acknowledged).length;
    const summary = $("alarms-summary");
    summary.className = "verdict verdict-" + (doc.active.length ? "hold" : "ok");
    summary.replaceChildren(
      el("div", { class: "verdict-main" },
        el("span", { class: "verdict-word", text: doc.configured ? `${doc.active.length} active` : "No alarms configured" }),
        el("span", { class: "verdict-policy", text: doc.configured ? `${unack} unacknowledged · ${doc.removed.length} shelved, suppressed or out of service · ${doc.total} alarms` : "" })),
      el("div", { class: "verdict-reason", text: doc.commands ? "Acknowledge and shelve over MQTT: {root}/{site}/_alarms/{id}/{action}" : "Operator commands are off ([alarms.commands] or [mqtt])." }),
    );
    table("alarms-active", ["Priority", "State", "Alarm", "Message", "Value", "Since"], activeRows(doc.active), "No active alarm.");
    table("alarms-removed", ["State", "Alarm", "Message", "Until", "Reason"], removedRows(doc.removed), "None shelved, suppressed or out of service.");
    table("alarms-history", ["Time", "Alarm", "Transition", "State", "Priority", "Operator"], historyRows(doc.history), "No event since the agent started.");
    $("alarm-count").textContent = doc.active.length ? String(doc.active.length) : "";
  } finally {
    busy = false;
  }
}

export function renderAlarms(changed, structure) {
  if (structure || Date.now() - fetchedAt >= 1000) refresh().catch((err) => console.warn(err));
}
