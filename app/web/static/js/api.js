// Shared helpers: the JSON API (session cookie), small DOM builders, formatting.

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail || `请求失败（HTTP ${status}）`);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

/** The detail of an error answer: {"detail": "..."} or FastAPI's list form. */
export function errorDetail(body, status) {
  if (body && typeof body === "object") {
    const d = body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d) && d.length) return d.map((e) => e.msg || JSON.stringify(e)).join("；");
  }
  if (typeof body === "string" && body.trim()) return body.trim().slice(0, 300);
  return `请求失败（HTTP ${status}）`;
}

export function loginUrl() {
  const here = location.pathname + location.search;
  return `/login?next=${encodeURIComponent(here)}`;
}

/**
 * Call the JSON API. opts: {method, json, form (FormData), query (object), headers, signal}.
 * Returns the parsed JSON (or null for 204); throws ApiError with the API's `detail`.
 * A 401 (session expired) sends the browser to the login page.
 */
export async function api(path, opts = {}) {
  let url = path;
  if (opts.query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) {
      if (v === undefined || v === null || v === "" || v === false) continue;
      if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
      else qs.append(k, String(v));
    }
    const s = qs.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  let body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  } else if (opts.form) {
    body = opts.form;
  }
  const res = await fetch(url, {
    method: opts.method || (body ? "POST" : "GET"),
    headers,
    body,
    credentials: "same-origin",
    signal: opts.signal,
  });
  if (res.status === 401 && !opts.noRedirect) {
    location.assign(loginUrl());
    throw new ApiError(401, "登录已过期，请重新登录");
  }
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) throw new ApiError(res.status, errorDetail(data, res.status), data);
  return data;
}

/** The page's data, rendered by the server into <script id="page-data">. */
export function pageData() {
  const el = document.getElementById("page-data");
  try {
    return el ? JSON.parse(el.textContent) : {};
  } catch {
    return {};
  }
}

/** h("div.cls#id", {attrs}, ...children): a tiny element builder. Strings are text (never HTML). */
export function h(tag, attrs, ...children) {
  const m = tag.match(/^([a-z0-9-]+)?((?:[.#][^.#\s]+)*)$/i);
  const el = document.createElement((m && m[1]) || "div");
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][^.#\s]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (attrs !== undefined && attrs !== null && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVGNS = "http://www.w3.org/2000/svg";
/** An SVG element with attributes. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// -- formatting ------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

/** "2025-03-01 14:05" in the browser's time zone. */
export function fmtTime(iso, { seconds = false } = {}) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const t = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return seconds ? `${t}:${pad(d.getSeconds())}` : t;
}

/** "3 小时后" / "超期 2 天". */
export function fmtDue(iso, now = Date.now()) {
  if (!iso) return "";
  const ms = new Date(iso).getTime() - now;
  const abs = Math.abs(ms);
  const hours = abs / 3.6e6;
  const span = hours >= 48 ? `${Math.round(hours / 24)} 天` : hours >= 1 ? `${Math.round(hours)} 小时` : `${Math.max(1, Math.round(abs / 6e4))} 分钟`;
  return ms < 0 ? `超期 ${span}` : `剩 ${span}`;
}

export function fmtBytes(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function fmtPct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return `${(x * 100).toFixed(1)}%`;
}

export const RISKS = ["红", "橙", "黄", "蓝", "绿"];
export const RISK_COLORS = { 红: "#d93026", 橙: "#f08c00", 黄: "#e6b800", 蓝: "#2f6fdb", 绿: "#2f9e44" };

export function riskChip(level) {
  if (!level) return h("span.muted", "—");
  return h(`span.chip.risk-${level}`, { title: `风险等级：${level}`, "aria-label": `风险${level}` }, level);
}

const STATUS_CLASS = {
  上报: "st-new", 立案: "st-new", 派遣: "st-work", 处置中: "st-work", 处置完成: "st-check", 核查: "st-check",
  结案: "st-done", 已评价: "st-done", 挂账: "st-hold", 不予立案: "st-void", 作废: "st-void",
};
export function statusBadge(status) {
  return h(`span.badge.${STATUS_CLASS[status] || "st-new"}`, status || "—");
}

/** The item list of a paged answer: a list, or {items|cases|results: [...]} */
export function itemsOf(data) {
  if (Array.isArray(data)) return data;
  if (!data || typeof data !== "object") return [];
  for (const k of ["items", "cases", "results", "data", "features"]) if (Array.isArray(data[k])) return data[k];
  return [];
}

// -- toasts ----------------------------------------------------------------------

export function toast(text, kind = "info", ms = 4000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const t = h(`div.toast.toast-${kind}`, { role: kind === "error" ? "alert" : "status" }, text);
  box.append(t);
  setTimeout(() => t.classList.add("leaving"), ms);
  setTimeout(() => t.remove(), ms + 400);
}

export function showError(el, err) {
  if (!el) return toast(err.message || String(err), "error");
  el.textContent = err ? (err.message || String(err)) : "";
  el.hidden = !err;
}

/** Departments (for selects); [] when the API has no such list. */
let _depts;
export async function departments() {
  if (!_depts) {
    _depts = api("/api/departments", { noRedirect: true })
      .then((d) => itemsOf(d).length ? itemsOf(d) : (Array.isArray(d) ? d : []))
      .catch(() => []);
  }
  return _depts;
}
