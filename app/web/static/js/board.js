// 案件看板: the filtered, paged case table (GET /api/cases) beside the map
// (GET /api/map/areas, GET /api/map/cases). Filters live in the URL query.
import { api, h, clear, itemsOf, fmtTime, fmtDue, riskChip, statusBadge, pageData, departments, toast } from "./api.js";
import { CityMap } from "./map.js";

const PAGE = 20;
const OPEN = ["上报", "立案", "派遣", "处置中", "处置完成", "核查", "挂账"];
const WITH_DEPARTMENT = new Set(["派遣", "处置中"]);
const data = pageData();
const user = data.user || {};

const form = document.getElementById("filters");
const body = document.getElementById("cases-body");
const count = document.getElementById("cases-count");
const prev = document.getElementById("prev-page");
const next = document.getElementById("next-page");
const pageInfo = document.getElementById("page-info");
const mapStatus = document.getElementById("map-status");

let offset = 0;
let selectedNumber = null;

function readFilters() {
  const f = form.elements;
  return {
    status: f.status.value,
    source: f.source.value,
    department_id: user.role === "department" ? user.department_id : f.department_id.value.trim(),
    code: f.code.value.trim(),
    q: f.q.value.trim(),
    overdue: f.overdue.checked,
  };
}

function writeFilters(q) {
  const f = form.elements;
  f.status.value = q.get("status") || "";
  f.source.value = q.get("source") || "";
  if (user.role !== "department") f.department_id.value = q.get("department_id") || "";
  f.code.value = q.get("code") || "";
  f.q.value = q.get("q") || "";
  f.overdue.checked = q.get("overdue") === "true";
  offset = Math.max(0, parseInt(q.get("offset") || "0", 10) || 0);
}

function apiQuery(filters) {
  const q = { ...filters, limit: PAGE, offset };
  q.status = filters.status === "open" ? OPEN : filters.status || undefined;
  q.overdue = filters.overdue ? "true" : undefined;
  return q;
}

function syncUrl(filters) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v && !(k === "department_id" && user.role === "department")) qs.set(k, v === true ? "true" : v);
  if (offset) qs.set("offset", offset);
  const url = location.pathname + (qs.toString() ? `?${qs}` : "");
  history.replaceState(null, "", url);
}

function isOverdue(c) {
  if (typeof c.overdue === "boolean") return c.overdue;
  return !!(c.deadline && WITH_DEPARTMENT.has(c.status) && new Date(c.deadline) < new Date());
}

function row(c) {
  const overdue = isOverdue(c);
  const href = `/cases/${encodeURIComponent(c.number)}`;
  const dept = c.department_name || c.department || c.department_id;
  const tr = h(
    "tr",
    { class: (overdue ? "overdue " : "") + (c.number === selectedNumber ? "selected" : ""), "data-number": c.number },
    h("td.cell-case",
      h("a.mono.small", { href }, c.number),
      h("div.cell-title", c.title || c.code, " ", h("span.muted.small", c.code)),
      h("div.muted.small.cell-address", { title: c.address || c.description || "" }, c.address || c.description || "")),
    h("td", c.source),
    h("td", statusBadge(c.status)),
    h("td.cell-dept", { title: dept ? `${dept}（${c.department_id}）` : "" }, dept || h("span.muted", "未派遣")),
    h("td", riskChip(c.risk_level)),
    h(
      "td.small",
      c.deadline ? [h("div.nowrap", { title: fmtTime(c.deadline) }, fmtTime(c.deadline).slice(5)), h(`div.${overdue ? "due-over" : "muted"}`, overdue ? (fmtDue(c.deadline).startsWith("超期") ? fmtDue(c.deadline) : "已超期") : WITH_DEPARTMENT.has(c.status) ? fmtDue(c.deadline) : "")] : h("span.muted", "—"),
    ),
  );
  tr.addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    location.assign(href);
  });
  return tr;
}

async function loadCases() {
  const filters = readFilters();
  syncUrl(filters);
  clear(body).append(h("tr", h("td.empty", { colspan: 6 }, "加载中…")));
  try {
    const res = await api("/api/cases", { query: apiQuery(filters) });
    const items = itemsOf(res);
    const total = Array.isArray(res) ? null : res.total ?? null;
    clear(body);
    if (!items.length) body.append(h("tr", h("td.empty", { colspan: 6 }, "没有符合条件的案件")));
    items.forEach((c) => body.append(row(c)));
    const overdue = items.filter(isOverdue).length;
    count.textContent = (total != null ? `共 ${total} 件` : `本页 ${items.length} 件`) + (overdue ? `，本页超期 ${overdue} 件` : "");
    const page = Math.floor(offset / PAGE) + 1;
    const pages = total != null ? Math.max(1, Math.ceil(total / PAGE)) : null;
    pageInfo.textContent = pages ? `第 ${page} / ${pages} 页` : `第 ${page} 页`;
    prev.disabled = offset === 0;
    next.disabled = total != null ? offset + PAGE >= total : items.length < PAGE;
  } catch (e) {
    clear(body).append(h("tr", h("td.empty.error-text", { colspan: 6 }, e.message)));
    count.textContent = "";
  }
  loadMapCases(filters);
}

// -- map ---------------------------------------------------------------------------

const map = new CityMap(document.getElementById("map"), {
  tileUrl: data.tile_url,
  onCaseClick: (c) => {
    selectedNumber = c.number;
    body.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
    const tr = body.querySelector(`tr[data-number="${CSS.escape(c.number)}"]`);
    if (tr) {
      tr.classList.add("selected");
      const wrap = tr.closest(".table-wrap"); // scroll the table only, not the page
      const top = tr.offsetTop - wrap.clientHeight / 2 + tr.offsetHeight / 2;
      wrap.scrollTo({ top: Math.max(0, top) });
    }
  },
});

document.getElementById("layer-street").addEventListener("change", (e) => map.setLayer("street", e.target.checked));
document.getElementById("layer-grid").addEventListener("change", (e) => map.setLayer("grid", e.target.checked));

let mapAreasLoaded = api("/api/map/areas")
  .then((a) => map.setAreas(a))
  .catch((e) => {
    mapStatus.textContent = `区划加载失败：${e.message}`;
  });

async function loadMapCases(filters) {
  await mapAreasLoaded;
  try {
    const q = apiQuery(filters);
    delete q.limit;
    delete q.offset;
    const res = await api("/api/map/cases", { query: q });
    map.setCases(res);
    const n = map.cases.length;
    mapStatus.textContent = n ? `地图上 ${n} 件案件` : "地图上暂无案件";
    mapStatus.dataset.count = n;
  } catch (e) {
    mapStatus.textContent = `案件点加载失败：${e.message}`;
  }
}

// -- wiring ------------------------------------------------------------------------

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  offset = 0;
  loadCases();
});
form.addEventListener("reset", () => {
  setTimeout(() => {
    offset = 0;
    loadCases();
  });
});
form.elements.overdue.addEventListener("change", () => {
  offset = 0;
  loadCases();
});
for (const name of ["status", "source"]) form.elements[name].addEventListener("change", () => {
  offset = 0;
  loadCases();
});
prev.addEventListener("click", () => {
  offset = Math.max(0, offset - PAGE);
  loadCases();
});
next.addEventListener("click", () => {
  offset += PAGE;
  loadCases();
});

departments().then((list) => {
  const dl = document.getElementById("dept-list");
  for (const d of list) dl.append(h("option", { value: d.id }, d.name || d.id));
});

writeFilters(new URLSearchParams(location.search));
loadCases().catch((e) => toast(e.message, "error"));
