// The batch report (a finished ingest job's result, or GET /api/batches/{id}).
import { h, clear, fmtTime } from "./api.js";

export const FILE_STATUS = {
  pending: "等待", queued: "等待", running: "处理中", processing: "处理中", done: "完成", ok: "完成",
  skipped: "已跳过（处理过）", duplicate: "重复（已处理过）", failed: "失败", error: "失败",
};

function caseLinks(list, label) {
  if (list === undefined || list === null) return null;
  if (typeof list === "number") return h("div.report-cases", h("strong", label), ` ${list} 件`);
  const items = Array.isArray(list) ? list : [];
  return h("div.report-cases", { "data-kind": label },
    h("strong", label), ` ${items.length} 件`,
    items.length
      ? h("ul.case-links", items.map((c) => {
          const num = typeof c === "string" ? c : c.number || c.case_number || c.case;
          const title = typeof c === "object" ? c.title || c.name || c.code || "" : "";
          const status = typeof c === "object" && c.status ? h("span.badge.st-plain", c.status) : null;
          return h("li", h("a.mono", { href: `/cases/${encodeURIComponent(num)}` }, num), title ? ` ${title} ` : " ", status);
        }))
      : null);
}

function stat(label, value) {
  return h("div.stat", h("div.stat-value", value ?? "—"), h("div.stat-label", label));
}

const count = (x) => (Array.isArray(x) ? x.length : typeof x === "number" ? x : x && typeof x === "object" ? Object.keys(x).length : x);

/** Render `result` ({batch, files, frames, observations, cases: {opened, attached, waiting}, verifications, errors}). */
export function renderReport(box, result) {
  clear(box);
  if (!result) {
    box.append(h("p.empty", "暂无报告"));
    return;
  }
  const batch = result.batch || {};
  const batchId = typeof batch === "string" ? batch : batch.id || result.batch_id;
  const source = { vehicle: "车巡", drone: "机巡" }[result.source] || result.source;
  const linked = Array.isArray(result.cases) ? result.cases : null; // GET /api/batches/{id}: the cases, with status
  const cases = linked ? {} : result.cases || {};
  const errors = result.errors || [];
  const files = Array.isArray(result.files) ? result.files : [];
  box.append(
    h("div.report-head",
      h("div", h("span.muted", "批次 "), h("strong.mono", batchId || "—"),
        source ? h("span.badge.st-plain", source) : null,
        result.created_at ? h("span.muted.small", ` ${fmtTime(result.created_at)}`) : null)),
    h("div.stats", linked
      ? [stat("文件", count(result.files)), stat("抽帧", count(result.frames)), stat("观测", count(result.observations)),
        stat("问题", count(result.issues)), stat("关联案件", linked.length), stat("核查", count(result.verifications)),
        stat("错误", count(result.errors))]
      : [stat("文件", count(result.files)), stat("抽帧", count(result.frames)), stat("发现问题", count(result.issues ?? result.observations)),
        stat("新立案件", count(cases.opened)), stat("并入已有案件", count(cases.attached)), stat("待审核", count(cases.waiting)),
        stat("核查", count(result.verifications))]),
    linked
      ? h("div.report-case-lists.one", caseLinks(linked, "关联案件"))
      : h("div.report-case-lists", caseLinks(cases.opened, "新立案件"), caseLinks(cases.attached, "并入已有案件"), caseLinks(cases.waiting, "待审核")),
  );
  if (result.seconds) box.querySelector(".report-head").append(h("span.muted.small", ` · 用时 ${Math.round(result.seconds)} 秒`));
  if (files.length && typeof files[0] === "object") {
    box.append(h("table.data.compact",
      h("thead", h("tr", h("th", "文件"), h("th", "状态"), h("th", "抽帧"), h("th", "发现"), h("th", "说明"))),
      h("tbody", files.map((f) => h("tr",
        h("td.mono.small", f.path || f.name),
        h("td", h(`span.badge.${f.status === "failed" ? "st-over" : f.status === "done" ? "st-done" : "st-plain"}`, FILE_STATUS[f.status] || f.status || "")),
        h("td", f.frames ?? f.stats?.frames ?? ""),
        h("td", f.observations ?? ""),
        h("td.small", f.error || f.note || ""))))));
  }
  if (errors.length) {
    box.append(h("div.report-errors", h("strong", `错误 ${errors.length} 条`),
      h("ul", errors.map((e) => h("li", typeof e === "string" ? e : `${e.path || e.file || ""} ${e.error || e.detail || JSON.stringify(e)}`)))));
  }
}
