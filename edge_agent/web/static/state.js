// What the page knows: the latest sample per tag (from the push stream), the catalogue (from
// /api/meta), the server's clock offset, and a short client-side history per tag that the
// pages draw, seeded from /api/history and extended by every pushed sample.

export const Q = { g: "good", u: "uncertain", b: "bad" };

export const state = {
  meta: null,
  byTag: new Map(), // tag -> catalogue entry
  tags: new Map(), // tag -> [value, q, reason, ts_ms, acq_ms]
  offsetMs: 0, // server clock - our clock
  changed: new Set(), // tags changed since the pages last rendered
  structure: true, // the set of tags changed (re-filter, re-page)
  series: new Map(), // tag -> Series (the ring's window: sparklines)
  trends: new Map(), // tag -> Series over the KPI page's chosen range
  trendRange: 0, // seconds; 0: the ring's window
  trendSource: "",
  latencies: [], // sample acquisition -> DOM, ms (read by the benchmark)
};

export function serverNow() {
  return Date.now() + state.offsetMs;
}

export function applyTags(tags, snapshot) {
  if (snapshot) {
    state.tags = new Map();
    state.structure = true;
  }
  for (const [tag, s] of Object.entries(tags)) {
    if (!state.tags.has(tag)) state.structure = true;
    state.tags.set(tag, s);
    state.changed.add(tag);
    const series = state.series.get(tag);
    if (series) series.add(s);
    const trend = state.trends.get(tag);
    if (trend) trend.add(s);
  }
}

// One tag's buckets, aligned with the agent's ring (bucket = floor(ts / step)).
export class Series {
  constructor(startMs, stepMs, values) {
    this.step = stepMs;
    this.slots = values.length;
    this.last = Math.floor(startMs / stepMs) + values.length - 1;
    this.sum = values.map((v) => (typeof v === "number" ? v : 0));
    this.cnt = values.map((v) => (typeof v === "number" ? 1 : 0));
    this.bad = values.map((v) => typeof v === "string"); // "nan": only Bad samples in the bucket
  }

  add(s) {
    const [value, q, , ts] = s;
    if (typeof value === "string" || typeof value === "boolean") return;
    const epoch = Math.floor(ts / this.step);
    this.advance(epoch);
    const i = this.slots - 1 - (this.last - epoch);
    if (i < 0) return;
    if (q === "b" || typeof value !== "number" || !Number.isFinite(value)) {
      this.bad[i] = true;
      return;
    }
    this.sum[i] += value;
    this.cnt[i] += 1;
  }

  advance(epoch) {
    if (epoch <= this.last) return;
    const shift = Math.min(epoch - this.last, this.slots);
    this.sum.splice(0, shift);
    this.cnt.splice(0, shift);
    this.bad.splice(0, shift);
    for (let k = 0; k < shift; k++) {
      this.sum.push(0);
      this.cnt.push(0);
      this.bad.push(false);
    }
    this.last = epoch;
  }

  // [[t_ms, value | "bad" | null], ...] oldest first, up to now (null: no sample at all).
  points() {
    this.advance(Math.floor(serverNow() / this.step));
    const first = this.last - this.slots + 1;
    return this.sum.map((s, i) => [
      (first + i) * this.step,
      this.cnt[i] ? s / this.cnt[i] : this.bad[i] ? "bad" : null,
    ]);
  }
}

// Fetch the ring's buckets for tags we do not follow yet (or all of `tags` with `refresh`).
export async function follow(tags, refresh = false) {
  const wanted = tags.filter((t) => refresh || !state.series.has(t));
  for (let i = 0; i < wanted.length; i += 200) {
    const part = wanted.slice(i, i + 200);
    const query = part.map((t) => "tag=" + encodeURIComponent(t)).join("&");
    const doc = await getJSON("/api/history?" + query);
    for (const [tag, values] of Object.entries(doc.series)) {
      state.series.set(tag, new Series(doc.start_ms, doc.step_ms, values));
    }
  }
}

// The KPI page's trends over `seconds` (from the database when the agent reads one).
export async function followTrends(tags, seconds) {
  const query = tags.map((t) => "tag=" + encodeURIComponent(t)).join("&");
  const doc = await getJSON(`/api/history?${query}${seconds ? "&seconds=" + seconds : ""}`);
  const trends = new Map();
  for (const [tag, values] of Object.entries(doc.series)) {
    trends.set(tag, new Series(doc.start_ms, doc.step_ms, values));
  }
  state.trends = trends;
  state.trendRange = seconds;
  state.trendSource = doc.source;
}

export async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

export function unitOf(tag) {
  const entry = state.byTag.get(tag);
  return entry ? entry.unit : "";
}

export function isStale(tag, s) {
  const entry = state.byTag.get(tag);
  const maxAge = entry && entry.max_age_s ? entry.max_age_s : 60;
  return serverNow() - s[4] > maxAge * 1000;
}

// One word for a sample's condition: good, uncertain, bad, stale, or "no data".
export function condition(tag, s) {
  if (!s) return "nodata";
  if (isStale(tag, s)) return "stale";
  return Q[s[1]];
}
