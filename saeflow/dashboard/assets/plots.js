// DOM and SVG building blocks. Text always goes in through textContent, never as markup.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function link(href, text, className) {
  const a = el("a", className, text);
  a.href = href;
  return a;
}

const SVGNS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// ---------------------------------------------------------------- numbers

function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(digits - 1);
  return String(Number(v.toPrecision(digits)));
}

function fmtInt(v) {
  return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US");
}

// Large counts for axis ticks: 2M, 500k.
function fmtCompact(v) {
  const a = Math.abs(v);
  for (const [unit, size] of [["B", 1e9], ["M", 1e6], ["k", 1e3]]) if (a >= size) return fmt(v / size) + unit;
  return fmt(v);
}

function fmtPct(v) {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : fmt(100 * v) + "%";
}

function fmtDensity(v) {
  if (Number.isNaN(v)) return "–";
  return v >= 1e-3 || v === 0 ? fmtPct(v) : v.toExponential(1);
}

// About n round tick values covering [lo, hi].
function ticks(lo, hi, n = 4) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

const SERIES_COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];

// ---------------------------------------------------------------- plots

const PAD = {left: 48, right: 12, top: 10, bottom: 34};

function frame(width, height, title) {
  const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, width, height, class: "plot", role: "img"});
  if (title) svg.appendChild(svgEl("title", {}, title));
  return svg;
}

function axes(svg, width, height, x, y, xTicks, yTicks, xLabel, xFormat = fmt) {
  const bottom = height - PAD.bottom;
  for (const t of yTicks) {
    svg.appendChild(svgEl("line", {x1: PAD.left, x2: width - PAD.right, y1: y(t), y2: y(t), class: "grid"}));
    svg.appendChild(svgEl("text", {x: PAD.left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end"}, fmt(t)));
  }
  for (const t of xTicks) {
    svg.appendChild(svgEl("text", {x: x(t), y: bottom + 14, class: "tick", "text-anchor": "middle"}, xFormat(t)));
  }
  svg.appendChild(svgEl("line", {x1: PAD.left, x2: width - PAD.right, y1: bottom, y2: bottom, class: "axis"}));
  if (xLabel) svg.appendChild(svgEl("text", {x: (PAD.left + width - PAD.right) / 2, y: height - 4, class: "axis-label", "text-anchor": "middle"}, xLabel));
}

// series: [{name, color, x: [], y: []}]; nulls in y break nothing, they are skipped.
function linePlot(series, {width = 320, height = 190, xLabel = "", title = ""} = {}) {
  const svg = frame(width, height, title);
  const xs = series.flatMap(s => s.x), ys = series.flatMap(s => s.y).filter(v => v !== null && Number.isFinite(v));
  if (!ys.length) return svg;
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
  if (y1 === y0) y1 = y0 + 1;
  const x = v => PAD.left + (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5) * (width - PAD.left - PAD.right);
  const y = v => height - PAD.bottom - (v - y0) / (y1 - y0) * (height - PAD.top - PAD.bottom);
  axes(svg, width, height, x, y, ticks(x0, x1, 3), ticks(y0, y1, 4), xLabel, fmtCompact);
  for (const s of series) {
    const points = s.x.map((v, i) => [v, s.y[i]]).filter(([, v]) => v !== null && Number.isFinite(v));
    const d = points.map(([a, b], i) => `${i ? "L" : "M"}${x(a).toFixed(1)},${y(b).toFixed(1)}`).join("");
    svg.appendChild(svgEl("path", {d, class: "line", stroke: s.color})).appendChild(svgEl("title", {}, s.name));
  }
  return svg;
}

// Bars of equal width per bin (so linear and log-spaced edges both read well); markers are
// vertical lines at x values, placed by interpolation inside their bin.
function histogramPlot(edges, counts, {width = 320, height = 170, xLabel = "", markers = [], title = "", color = "#64748b"} = {}) {
  const svg = frame(width, height, title);
  const n = counts.length;
  if (!n) return svg;
  const top = Math.max(1, ...counts);
  const plotW = width - PAD.left - PAD.right, plotH = height - PAD.top - PAD.bottom;
  const bx = i => PAD.left + i / n * plotW;
  const y = v => height - PAD.bottom - v / top * plotH;
  const edgeTicks = [0, Math.round(n / 2), n];
  axes(svg, width, height, i => bx(i), y, edgeTicks, ticks(0, top, 3), xLabel, i => fmt(edges[i]));
  for (let i = 0; i < n; i++) {
    if (!counts[i]) continue;
    const bar = svgEl("rect", {x: bx(i) + 0.5, width: Math.max(1, plotW / n - 1), y: y(counts[i]), height: y(0) - y(counts[i]), fill: color});
    bar.appendChild(svgEl("title", {}, `${fmt(edges[i])} – ${fmt(edges[i + 1])}: ${fmtInt(counts[i])}`));
    svg.appendChild(bar);
  }
  markers.forEach((m, k) => {
    let i = 0;
    while (i < n - 1 && edges[i + 1] < m.x) i++;
    const frac = edges[i + 1] > edges[i] ? Math.min(1, Math.max(0, (m.x - edges[i]) / (edges[i + 1] - edges[i]))) : 0;
    const px = bx(i + frac);
    svg.appendChild(svgEl("line", {x1: px, x2: px, y1: PAD.top, y2: height - PAD.bottom, class: "marker"}));
    const label = svgEl("text", {x: px + 3, y: PAD.top + 10 + 11 * k, class: "marker-label"}, m.label);
    label.appendChild(svgEl("title", {}, `${m.label} = ${fmt(m.x, 4)}`));
    svg.appendChild(label);
  });
  return svg;
}
