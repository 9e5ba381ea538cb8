// Hand-drawn SVG charts (no library): bars, stacked bars by day, horizontal stacked bars.
import { s, h, clear } from "./api.js";

export const SOURCE_COLORS = { 车巡: "#2f6fdb", 机巡: "#7048e8", 市民: "#2f9e44", 热线: "#f08c00", 采集员: "#0c8599" };
const FALLBACK = ["#2f6fdb", "#2f9e44", "#f08c00", "#7048e8", "#0c8599", "#c2255c", "#5c940d"];

export function colorOf(key, i) {
  return SOURCE_COLORS[key] || FALLBACK[i % FALLBACK.length];
}

/** An axis for counts: a round step (1, 2, 5 × 10^k, at least 1) and a top that is a multiple of it. */
function niceScale(v, ticks = 4) {
  const raw = Math.max(v, 1) / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw);
  step = Math.max(1, step);
  return { max: Math.max(step, Math.ceil(v / step) * step), step };
}

function niceMax(v) {
  return niceScale(v).max;
}

function empty(box, text = "暂无数据") {
  clear(box).append(h("p.empty", text));
}

function legend(keys) {
  return h("div.legend", keys.map((k, i) => h("span.legend-item", h("i.swatch", { style: `background:${colorOf(k, i)}` }), k)));
}

function yAxis(svg, { x, top, height, max, width }) {
  const { step } = niceScale(max);
  for (let v = 0; v <= max + 1e-9; v += step) {
    const y = top + height - (v / max) * height;
    svg.append(s("line", { x1: x, x2: x + width, y1: y, y2: y, class: "grid-line" }));
    svg.append(s("text", { x: x - 6, y, class: "axis-label", "text-anchor": "end", dy: "0.32em" }, Number.isInteger(v) ? v : v.toFixed(1)));
  }
}

/** Vertical bars: items [{label, value, color?}]. */
export function barChart(box, items, { title = "", height = 220 } = {}) {
  if (!items.length || items.every((d) => !d.value)) return empty(box);
  clear(box);
  const W = 420, H = height, L = 36, R = 8, T = 14, B = 30;
  const max = niceMax(Math.max(...items.map((d) => d.value)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": title });
  yAxis(svg, { x: L, top: T, height: H - T - B, max, width: W - L - R });
  const bw = (W - L - R) / Math.max(items.length, 4);
  const off = L + ((W - L - R) - bw * items.length) / 2;
  items.forEach((d, i) => {
    const bh = ((H - T - B) * d.value) / max;
    const barW = Math.min(bw * 0.6, 56);
    const x = off + i * bw + (bw - barW) / 2;
    const y = H - B - bh;
    const g = s("g", { class: "bar-g" });
    g.append(s("rect", { x, y, width: barW, height: Math.max(0, bh), rx: 3, fill: d.color || colorOf(d.label, i) }, s("title", {}, `${d.label}：${d.value}`)));
    g.append(s("text", { x: x + barW / 2, y: y - 4, class: "bar-value", "text-anchor": "middle" }, d.value));
    g.append(s("text", { x: x + barW / 2, y: H - B + 16, class: "axis-label", "text-anchor": "middle" }, d.label));
    svg.append(g);
  });
  box.append(svg);
}

function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** Stacked bars per day: rows [{day, source, count}]; every day from `since` to `until` gets a slot. */
export function stackedByDay(box, rows, { title = "", height = 240, since, until } = {}) {
  if (!rows.length) return empty(box);
  clear(box);
  let days = [...new Set(rows.map((r) => r.day))].sort();
  if (since && until) {
    const all = [];
    const end = new Date(until);
    for (let d = new Date(since); d <= end && all.length < 400; d.setDate(d.getDate() + 1)) all.push(isoDay(d));
    if (all.length) days = [...new Set([...all, ...days])].sort();
  }
  const keys = [...new Set(rows.map((r) => r.source))];
  const by = new Map(days.map((d) => [d, Object.fromEntries(keys.map((k) => [k, 0]))]));
  for (const r of rows) by.get(r.day)[r.source] += r.count;
  const totals = days.map((d) => keys.reduce((a, k) => a + by.get(d)[k], 0));
  const W = 760, H = height, L = 36, R = 8, T = 14, B = 30;
  const max = niceMax(Math.max(1, ...totals));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": title });
  yAxis(svg, { x: L, top: T, height: H - T - B, max, width: W - L - R });
  const bw = (W - L - R) / days.length;
  const every = Math.ceil(days.length / 10);
  days.forEach((day, i) => {
    let y = H - B;
    const x = L + i * bw + bw * 0.15;
    keys.forEach((k, j) => {
      const v = by.get(day)[k];
      if (!v) return;
      const bh = ((H - T - B) * v) / max;
      y -= bh;
      svg.append(s("rect", { x, y, width: Math.max(1, Math.min(bw * 0.7, 40)), height: bh, fill: colorOf(k, j) }, s("title", {}, `${day} ${k}：${v}`)));
    });
    if (i % every === 0) svg.append(s("text", { x: x + bw * 0.35, y: H - B + 16, class: "axis-label", "text-anchor": "middle" }, day.slice(5)));
  });
  box.append(svg, legend(keys));
}

/** Horizontal stacked bars: items [{label, parts: [{key, value, color}]}]. */
export function hBars(box, items, { title = "", emptyText } = {}) {
  if (!items.length) return empty(box, emptyText);
  clear(box);
  const row = 28, L = 150, R = 36, T = 8;
  const W = 460, H = T * 2 + row * items.length;
  const max = niceMax(Math.max(1, ...items.map((d) => d.parts.reduce((a, p) => a + p.value, 0))));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": title });
  items.forEach((d, i) => {
    const y = T + i * row;
    svg.append(s("text", { x: L - 8, y: y + row / 2, class: "axis-label", "text-anchor": "end", dy: "0.32em" }, d.label.length > 11 ? d.label.slice(0, 10) + "…" : d.label, s("title", {}, d.label)));
    let x = L;
    let total = 0;
    for (const p of d.parts) {
      if (!p.value) continue;
      const w = ((W - L - R) * p.value) / max;
      svg.append(s("rect", { x, y: y + 5, width: w, height: row - 10, rx: 2, fill: p.color }, s("title", {}, `${d.label} ${p.key}：${p.value}`)));
      x += w;
      total += p.value;
    }
    svg.append(s("text", { x: x + 6, y: y + row / 2, class: "bar-value", dy: "0.32em" }, total));
  });
  const keys = items[0].parts.map((p) => p.key);
  box.append(svg, h("div.legend", items[0].parts.map((p) => h("span.legend-item", h("i.swatch", { style: `background:${p.color}` }), p.key))));
  return keys;
}
