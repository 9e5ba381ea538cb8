// 统计看板: GET /api/dashboard?days=N → rate tiles and SVG charts.
import { api, h, clear, fmtPct, fmtTime } from "./api.js";
import { barChart, stackedByDay, hBars } from "./charts.js";

const RATE_NAMES = {
  handling_rate: "处置率", on_time_rate: "按期处置率", closure_rate: "结案率", dispatch_accuracy: "派遣准确率",
  rework_rate: "返工率", satisfaction_rate: "满意率", satisfied_rate: "满意率", filing_rate: "立案率",
};
const RATE_GOOD_LOW = new Set(["rework_rate"]);

const daysSel = document.getElementById("days");

function tile(label, value, { kind = "", hint = "", href } = {}) {
  const body = [h("div.tile-value", value), h("div.tile-label", label), hint ? h("div.tile-hint.muted.small", hint) : null];
  return href ? h(`a.tile${kind ? "." + kind : ""}`, { href }, body) : h(`div.tile${kind ? "." + kind : ""}`, body);
}

function rateKind(key, v) {
  if (v === null || v === undefined) return "";
  const good = RATE_GOOD_LOW.has(key) ? v <= 0.1 : v >= 0.9;
  const bad = RATE_GOOD_LOW.has(key) ? v > 0.25 : v < 0.7;
  return good ? "tile-good" : bad ? "tile-bad" : "tile-warn";
}

function render(d) {
  const p = d.period || {};
  document.getElementById("period").textContent = p.since || p.start
    ? `统计周期：${fmtTime(p.since || p.start).slice(0, 10)} 至 ${fmtTime(p.until || p.end).slice(0, 10)}${p.days ? `（${p.days} 天）` : ""}`
    : "";
  const tiles = clear(document.getElementById("tiles"));
  const intake = (d.intake_by_source || []).reduce((a, r) => a + r.count, 0);
  tiles.append(tile("期内受理", intake, { hint: "各来源合计" }));
  tiles.append(tile("在办案件", d.open_cases ?? "—", { href: "/?status=open" }));
  const overdue = (d.overdue_by_department || []).reduce((a, r) => a + (r.overdue || 0), 0);
  tiles.append(tile("已超期", overdue, { kind: overdue ? "tile-bad" : "tile-good", href: "/?overdue=true" }));
  tiles.append(tile("待审核", d.review_waiting ?? "—", { kind: d.review_waiting ? "tile-warn" : "", href: "/review" }));
  const rates = d.rates || {};
  for (const [k, v] of Object.entries(rates)) {
    if (typeof v !== "number" && v !== null) continue;
    if (!(k in RATE_NAMES) && !k.endsWith("_rate")) continue;
    tiles.append(tile(RATE_NAMES[k] || k, fmtPct(v), { kind: rateKind(k, v), hint: v === null ? "期内无分母" : "" }));
  }
  if ("mean_rating" in rates) tiles.append(tile("平均评分", rates.mean_rating == null ? "—" : rates.mean_rating.toFixed(2), { hint: "1–5 分" }));
  if ("mean_handling_hours" in rates) tiles.append(tile("平均处置用时", rates.mean_handling_hours == null ? "—" : `${rates.mean_handling_hours.toFixed(1)}`, { hint: "工作小时" }));

  barChart(document.getElementById("chart-source"), (d.intake_by_source || []).map((r) => ({ label: r.source, value: r.count })), { title: "按来源受理" });
  stackedByDay(document.getElementById("chart-day"), d.intake_by_day || [], { title: "每日受理", since: p.since, until: p.until });
  const od = (d.overdue_by_department || []).filter((r) => r.overdue || r.due_soon).sort((a, b) => b.overdue - a.overdue || b.due_soon - a.due_soon);
  hBars(document.getElementById("chart-overdue"), od.map((r) => ({
    label: r.name || r.department_id,
    parts: [{ key: "已超期", value: r.overdue || 0, color: "#d93026" }, { key: "即将超期", value: r.due_soon || 0, color: "#f08c00" }],
  })), { title: "各单位超期", emptyText: "没有超期或即将超期的案件" });

  const hs = clear(document.getElementById("hot-spots"));
  const spots = d.hot_spots || [];
  if (!spots.length) hs.append(h("p.empty", "期内没有重复发生的热点"));
  else hs.append(h("table.data.compact",
    h("thead", h("tr", h("th", "问题"), h("th", "地点"), h("th", "次数"), h("th", "最近"))),
    h("tbody", spots.slice(0, 10).map((x) => h("tr",
      h("td", x.title || x.code),
      h("td.small", x.place || x.address || ""),
      h("td", h("strong", x.count)),
      h("td.small", x.centre ? h("a.mono", { href: `/cases/${encodeURIComponent(x.cases?.at(-1) || x.centre)}` }, x.cases?.at(-1) || x.centre) : fmtTime(x.last_at)))))));
}

async function load() {
  try {
    render(await api("/api/dashboard", { query: { days: daysSel.value } }));
  } catch (e) {
    clear(document.getElementById("tiles")).append(h("p.form-error", { role: "alert" }, e.message));
  }
}

const qs = new URLSearchParams(location.search);
if (qs.get("days")) daysSel.value = qs.get("days");
daysSel.addEventListener("change", () => {
  history.replaceState(null, "", `?days=${daysSel.value}`);
  load();
});
load();
