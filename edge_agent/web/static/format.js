// Numbers, ages and quality badges as people read them.

import { serverNow } from "./state.js";

const WORDS = {
  good: ["✓", "Good"],
  uncertain: ["?", "Uncertain"],
  bad: ["✕", "Bad"],
  stale: ["◌", "Stale"],
  nodata: ["–", "No data"],
};

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

export function value(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") return v;
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.001 || a >= 1e7)) return v.toExponential(3);
  const digits = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function age(acqMs) {
  const s = Math.max(0, (serverNow() - acqMs) / 1000);
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

export function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

// A badge: symbol + word, so the meaning never rests on colour alone.
export function badge(cond) {
  const [symbol, word] = WORDS[cond] || WORDS.nodata;
  const node = el("span", { class: "q q-" + cond });
  node.append(el("span", { class: "sym", "aria-hidden": "true", text: symbol }), word);
  return node;
}

export function setBadge(node, cond) {
  if (node.dataset.cond === cond) return;
  node.dataset.cond = cond;
  node.replaceChildren(badge(cond));
}
