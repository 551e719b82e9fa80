// Small SVG charts: sparklines and time or year charts with bands and reference lines.
// Everything is drawn with attributes and classes (no inline style: the CSP forbids it).

const NS = "http://www.w3.org/2000/svg";

export function svgEl(name, attrs = {}) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// Buckets without any sample that a line may cross: a tag polled or computed less often than
// the bucket step leaves such holes between its points. A Bad bucket always breaks the line.
export const MAX_EMPTY = 6;

// Path through [x, y] points in pixel space (y: number, "bad" or null); never a fake value:
// a Bad bucket or a longer run of empty ones starts a new segment, and a lone point is a dot.
function pathOf(points) {
  let d = "";
  let pen = false;
  let empty = 0;
  let segment = 0;
  let last = null;
  const close = () => {
    if (segment === 1) d += "h0.01"; // a round cap makes a lone point visible
  };
  for (const [x, y] of points) {
    if (y === null) {
      empty += 1;
      if (empty > MAX_EMPTY && pen) {
        close();
        pen = false;
      }
      continue;
    }
    if (typeof y !== "number" || !Number.isFinite(y)) {
      if (pen) close();
      pen = false;
      empty = 0;
      continue;
    }
    if (!pen) segment = 0;
    d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
    pen = true;
    segment += 1;
    empty = 0;
    last = [x, y];
  }
  if (pen && last) close();
  return d;
}

export function sparkline(svg, points, width = 120, height = 22) {
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const ys = points.map((p) => p[1]).filter((v) => typeof v === "number");
  svg.replaceChildren();
  if (ys.length === 0) return;
  let lo = Math.min(...ys);
  let hi = Math.max(...ys);
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const n = points.length;
  const xy = points.map((p, i) => [
    (i / Math.max(1, n - 1)) * (width - 2) + 1,
    typeof p[1] === "number" ? height - 2 - ((p[1] - lo) / (hi - lo)) * (height - 4) : p[1],
  ]);
  svg.append(svgEl("path", { d: pathOf(xy), class: "spark" }));
  const last = xy.filter((p) => typeof p[1] === "number").pop();
  if (last) svg.append(svgEl("circle", { cx: last[0], cy: last[1], r: 1.8, class: "spark-dot" }));
}

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(+v.toFixed(10));
  return ticks;
}

// A chart frame: `opts` = {x: [lo, hi], y: [lo, hi], xTicks, xLabel(v), yLabel(v), yUnit}.
export class Chart {
  constructor(svg, opts) {
    this.svg = svg;
    this.w = 560;
    this.h = 240;
    this.m = { l: 52, r: 34, t: 22, b: 28 };
    this.o = opts;
    svg.setAttribute("viewBox", `0 0 ${this.w} ${this.h}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    svg.replaceChildren();
    this.drawAxes();
  }

  x(v) {
    const [lo, hi] = this.o.x;
    return this.m.l + ((v - lo) / (hi - lo || 1)) * (this.w - this.m.l - this.m.r);
  }

  y(v) {
    const [lo, hi] = this.o.y;
    return this.h - this.m.b - ((v - lo) / (hi - lo || 1)) * (this.h - this.m.t - this.m.b);
  }

  drawAxes() {
    const { svg, o } = this;
    for (const t of niceTicks(o.y[0], o.y[1])) {
      svg.append(svgEl("line", { x1: this.m.l, x2: this.w - this.m.r, y1: this.y(t), y2: this.y(t), class: "grid" }));
      const label = svgEl("text", { x: this.m.l - 6, y: this.y(t) + 4, class: "tick", "text-anchor": "end" });
      label.textContent = (o.yLabel || String)(t);
      svg.append(label);
    }
    for (const t of o.xTicks || niceTicks(o.x[0], o.x[1], 6)) {
      const label = svgEl("text", { x: this.x(t), y: this.h - 8, class: "tick", "text-anchor": "middle" });
      label.textContent = (o.xLabel || String)(t);
      svg.append(label);
      svg.append(svgEl("line", { x1: this.x(t), x2: this.x(t), y1: this.h - this.m.b, y2: this.h - this.m.b + 4, class: "axis" }));
    }
    svg.append(svgEl("line", { x1: this.m.l, x2: this.w - this.m.r, y1: this.h - this.m.b, y2: this.h - this.m.b, class: "axis" }));
    if (o.yUnit) {
      const unit = svgEl("text", { x: this.m.l - 6, y: 11, class: "tick unit", "text-anchor": "end" });
      unit.textContent = o.yUnit;
      svg.append(unit);
    }
  }

  band(y0, y1, cls, label) {
    const top = this.y(Math.min(Math.max(y1, this.o.y[0]), this.o.y[1]));
    const bottom = this.y(Math.max(Math.min(y0, this.o.y[1]), this.o.y[0]));
    if (bottom - top <= 0) return;
    this.svg.append(svgEl("rect", { x: this.m.l, y: top, width: this.w - this.m.l - this.m.r, height: bottom - top, class: cls }));
    if (label) this.text(this.w - this.m.r - 4, top + 12, label, "band-label", "end");
  }

  hline(v, cls, label) {
    if (v < this.o.y[0] || v > this.o.y[1]) return;
    this.svg.append(svgEl("line", { x1: this.m.l, x2: this.w - this.m.r, y1: this.y(v), y2: this.y(v), class: cls }));
    if (label) this.text(this.m.l + 4, this.y(v) - 4, label, "ref-label");
  }

  vline(v, cls, label) {
    this.svg.append(svgEl("line", { x1: this.x(v), x2: this.x(v), y1: this.m.t, y2: this.h - this.m.b, class: cls }));
    if (label) this.text(this.x(v) + 4, this.m.t + 10, label, "ref-label");
  }

  line(points, cls) {
    const xy = points.map(([x, y]) => [this.x(x), typeof y === "number" ? this.y(y) : y]);
    const path = svgEl("path", { d: pathOf(xy), class: cls });
    this.svg.append(path);
    return path;
  }

  marker(x, y, cls, label, shape = "circle", anchor = "start") {
    const px = this.x(x);
    const py = this.y(y);
    const node =
      shape === "diamond"
        ? svgEl("path", { d: `M${px} ${py - 6}L${px + 6} ${py}L${px} ${py + 6}L${px - 6} ${py}Z`, class: cls })
        : svgEl("circle", { cx: px, cy: py, r: 4.5, class: cls });
    this.svg.append(node);
    if (label) this.text(anchor === "end" ? px - 8 : px + 8, py + 4, label, "marker-label", anchor);
  }

  text(x, y, content, cls, anchor = "start") {
    const t = svgEl("text", { x, y, class: cls, "text-anchor": anchor });
    t.textContent = content;
    this.svg.append(t);
  }

  message(content) {
    this.text(this.w / 2, this.h / 2, content, "chart-message", "middle");
  }
}

// y range over several point lists, padded, including `extra` values (reference lines).
export function range(lists, extra = [], pad = 0.08) {
  const ys = lists.flat().map((p) => p[1]).filter((v) => typeof v === "number" && Number.isFinite(v));
  ys.push(...extra.filter((v) => v !== null && v !== undefined && Number.isFinite(v)));
  if (ys.length === 0) return [0, 1];
  let lo = Math.min(...ys);
  let hi = Math.max(...ys);
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

export function timeLabel(ms) {
  if (Date.now() - ms > 86400000) {
    return new Date(ms).toLocaleDateString("en-GB", { day: "2-digit", month: "short" });
  }
  return new Date(ms).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
}

export function timeTicks(lo, hi) {
  const span = hi - lo;
  const minute = 60000;
  const steps = [minute, 2 * minute, 5 * minute, 10 * minute, 15 * minute, 30 * minute, 60 * minute,
    2 * 60 * minute, 3 * 60 * minute, 6 * 60 * minute, 12 * 60 * minute, 24 * 60 * minute];
  const step = steps.find((s) => span / s <= 7) || steps[steps.length - 1];
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) ticks.push(t);
  return ticks;
}
