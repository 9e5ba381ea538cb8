// 案件详情: GET /api/cases/{n}; evidence with detection boxes, the drafted 案卷, the
// citizen reply (PUT /api/cases/{n}/reply), routing, triage, history, and the
// lifecycle actions the user may take (POST /api/cases/{n}/actions).
import { api, h, clear, fmtTime, fmtDue, riskChip, statusBadge, pageData, departments, toast, showError } from "./api.js";

const data = pageData();
const user = data.user || {};
const number = data.number;
const base = `/api/cases/${encodeURIComponent(number)}`;

const DEPARTMENT_ACTIONS = new Set(["签收", "处置完成", "退回"]);
const NEEDS_REASON = new Set(["不予立案", "退回", "核查不通过", "延期", "挂账", "作废"]);
const DANGER = new Set(["不予立案", "作废", "退回", "核查不通过", "挂账"]);
const PRIMARY = new Set(["立案", "派遣", "签收", "处置完成", "发起核查", "核查通过", "评价", "解除挂账"]);
const NOTE_LABEL = {
  不予立案: "不予立案原因", 退回: "退回原因", 核查不通过: "不通过原因", 延期: "延期原因", 挂账: "挂账原因",
  作废: "作废原因（重复、虚假上报…）", 处置完成: "处置说明", 评价: "评价意见（可选）",
};
const HINT = {
  立案: "确认该问题符合立案条件，立案后等待派遣。",
  派遣: "派遣给责任单位；留空则按权责规则自动选择单位。",
  签收: "责任单位签收案件，开始处置。",
  处置完成: "填写处置说明，并可附上处置后照片。",
  发起核查: "发起核查：由采集员或下一次巡查复核现场。",
  核查通过: "核查通过后结案。",
  延期: "处置时限顺延指定的工作时间（如 2工作日、4工作时）；批准人默认为当前用户。",
  评价: "对处置结果进行评价。",
};

let current = null;

const el = (id) => document.getElementById(id);
const deptNames = new Map(); // department id → name (from /api/departments)
const deptName = (id) => deptNames.get(id) || id;

// -- rendering ---------------------------------------------------------------------

function kv(dl, rows) {
  clear(dl);
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) continue;
    dl.append(h("dt", k), h("dd", v instanceof Node || Array.isArray(v) ? v : String(v)));
  }
  if (!dl.children.length) dl.append(h("dd.muted", "暂无"));
}

function isOverdue(c) {
  if (typeof c.overdue === "boolean") return c.overdue;
  return !!(c.deadline && ["派遣", "处置中"].includes(c.status) && new Date(c.deadline) < new Date());
}

function renderHead(c) {
  el("case-title").textContent = c.title || "";
  const b = clear(el("case-badges"));
  b.append(statusBadge(c.status), riskChip(c.risk_level), h("span.badge.st-plain", c.urgency || ""), h("span.badge.st-plain", c.source));
  if (isOverdue(c)) b.append(h("span.badge.st-over", "已超期"));
  if (c.waiting) {
    b.append(user.manages ? h("a.badge.st-hold", { href: "/review" }, "等待审核 →") : h("span.badge.st-hold", "等待审核"));
  }
  if (c.duplicate_of) b.append(h("a.badge.st-plain", { href: `/cases/${encodeURIComponent(c.duplicate_of)}` }, `重复于 ${c.duplicate_of}`));
  document.title = `案件 ${c.number} ${c.title || ""} · 巡检调度中心`;
}

function renderInfo(c) {
  const dept = c.department_name ? `${c.department_name}（${c.department_id}）` : c.department_id;
  const names = c.areas || {};
  const area = [[c.district_id, names.district], [c.street_id, names.street], [c.grid_id, names.grid]]
    .filter(([id]) => id).map(([id, name]) => name || id).join(" / ");
  kv(el("case-info"), [
    ["类别", `${c.title || ""}（${c.kind || ""} ${c.code}）`],
    ["描述", c.description],
    ["地址", c.address],
    ["区划", area],
    ["坐标", c.lat != null ? `${c.lat.toFixed(5)}, ${c.lon.toFixed(5)}` : ""],
    ["责任单位", dept || "未派遣"],
    ["处置时限", c.deadline ? h("span", fmtTime(c.deadline), " ", h(`span.${isOverdue(c) ? "due-over" : "muted"}`, ["派遣", "处置中"].includes(c.status) ? fmtDue(c.deadline) : "")) : ""],
    ["上报人", [c.reporter_name, c.reporter_phone].filter(Boolean).join(" ")],
    ["返工次数", c.rework_count ? String(c.rework_count) : ""],
    ["评价", c.rating ? "★".repeat(c.rating) + "☆".repeat(5 - c.rating) : ""],
    ["上报时间", fmtTime(c.created_at)],
    ["结案时间", c.closed_at ? fmtTime(c.closed_at) : ""],
  ]);
}

function renderRouting(c) {
  const r = c.routing || c.route || {};
  const rec = c.record || {};
  if (!r.rule && !r.principle && c.waiting) {
    // held at the review gate: what the pipeline proposes
    return kv(el("routing"), [
      ["拟派单位", c.waiting.department_name ? `${c.waiting.department_name}（${c.waiting.department_id}）` : c.waiting.department_id || "—"],
      ["派遣规则", rec.route_rule],
      ["派遣原则", rec.route_principle],
      ["状态", "等待人工审核后派遣"],
    ]);
  }
  kv(el("routing"), [
    ["责任单位", r.department_name || c.department_name || c.department_id || ""],
    ["派遣规则", r.rule || r.rule_id || c.route_rule],
    ["派遣原则", r.principle || c.route_principle],
    ["说明", r.note || r.basis || c.route_note],
    ["推理过程", Array.isArray(r.trail) && r.trail.length ? h("ol.trail", r.trail.map((t) => h("li", t))) : ""],
  ]);
}

function renderTriage(c) {
  const t = c.triage;
  if (!t) return kv(el("triage"), [["说明", "非流水线创建的案件，没有自动分拣记录"]]);
  const cands = (t.candidates || []).slice(0, 4).map((x) => h("li", `${x.name}（${x.code}）`, h("span.muted", ` ${(x.score * 100).toFixed(0)}%`)));
  const reasons = (c.waiting && c.waiting.reasons) || [];
  kv(el("triage"), [
    ["分类", t.name ? `${t.name}（${t.code}）` : "未能分类"],
    ["置信度", t.confidence != null ? `${(t.confidence * 100).toFixed(0)}%` : ""],
    ["判定方式", { offline: "离线规则", llm: "大模型", detector: "视觉检测" }[t.policy] || t.policy],
    ["风险 / 紧急", [t.risk_level, t.urgency].filter(Boolean).join(" / ")],
    ["理由", t.reason],
    ["候选", cands.length ? h("ul.plain", cands) : ""],
    ["审核原因", reasons.length ? h("ul.plain", reasons.map((r) => h("li", r))) : ""],
  ]);
}

function evidenceFigure(ev, i) {
  const url = ev.url || (/^https?:|^\//.test(ev.uri || "") ? ev.uri : null);
  if (ev.kind === "text" || !url) {
    return h("figure.ev-text", h("blockquote", ev.note || ev.uri), h("figcaption.muted.small", [ev.kind === "text" ? "文字" : ev.kind, ev.captured_at || ev.added_at ? ` · ${fmtTime(ev.captured_at || ev.added_at)}` : ""].join("")));
  }
  if (ev.kind === "video") {
    return h("figure.ev", h("video", { src: url, controls: true, preload: "metadata" }), h("figcaption.small", ev.note || "视频"));
  }
  const img = h("img", { src: url, alt: ev.note || `证据图片 ${i + 1}`, loading: "lazy" });
  const wrap = h("div.ev-frame", h("a", { href: url, target: "_blank", rel: "noopener", title: "查看原图" }, img));
  // the detection box, as fractions (0–1) of the image's width and height
  const box = ev.box || ev.bbox;
  if (Array.isArray(box) && box.length === 4) {
    const [x1, y1, x2, y2] = box.map(Number);
    const pct = (v) => `${(Math.max(0, Math.min(1, v)) * 100).toFixed(2)}%`;
    const label = ev.label || ev.class_name || "";
    wrap.append(h("div.ev-box", {
      style: `left:${pct(x1)};top:${pct(y1)};width:${pct(x2 - x1)};height:${pct(y2 - y1)}`,
      title: "检测框", "aria-label": "检测框",
    }, label ? h("span.ev-box-label", label) : null));
    wrap.classList.add("has-box");
  }
  const cap = [ev.note, ev.captured_at ? fmtTime(ev.captured_at) : "", ev.added_by ? `由 ${ev.added_by} 添加` : ""].filter(Boolean).join(" · ");
  return h("figure.ev", wrap, h("figcaption.small", cap || "图片"));
}

function renderEvidence(c) {
  const box = clear(el("evidence"));
  const list = c.evidence || [];
  el("ev-count").textContent = list.length ? `${list.length} 项` : "";
  if (!list.length) box.append(h("p.empty", "暂无证据"));
  list.forEach((ev, i) => box.append(evidenceFigure(ev, i)));
}

const RECORD_FIELDS = [
  ["name", "案卷标题"], ["major_name", "大类"], ["code", "类别代码"], ["kind", "类型"], ["source", "来源"],
  ["address", "地址"], ["district_name", "区"], ["street_name", "街道"], ["grid_name", "单元网格"],
  ["description", "问题描述"], ["filing_basis", "立案依据"], ["closing_condition", "结案条件"],
  ["department_name", "责任单位"], ["route_principle", "派遣原则"], ["time_limit", "处置时限"], ["deadline_text", "截止时间"],
  ["urgency", "紧急程度"], ["risk_level", "风险等级"],
];
const FLAG_NAMES = {
  prompt_injection: "文本含可疑指令（已按普通文本处理）", triage_abstained: "未能自动分类", route_ambiguous: "派遣规则有歧义",
  no_owner: "无责任主体", urgency_raised: "紧急程度已上调",
};

function renderRecord(c) {
  const box = clear(el("record"));
  const r = c.record;
  if (!r) {
    box.append(h("p.empty", "无起草的案卷（非流水线创建的案件）"));
    return;
  }
  if (typeof r === "string") {
    box.append(h("pre.record-text", r));
    return;
  }
  const dl = h("dl.kv.record-kv");
  for (const [k, label] of RECORD_FIELDS) {
    if (r[k] === undefined || r[k] === null || r[k] === "") continue;
    dl.append(h("dt", label), h("dd", String(r[k])));
  }
  box.append(dl);
  if (r.flags && r.flags.length) {
    box.append(h("div.flags", r.flags.map((f) => h("span.badge.st-hold", FLAG_NAMES[f] || f))));
  }
}

const CITIZEN_SOURCES = new Set(["市民", "热线"]);

function renderReply(c) {
  const r = c.reply;
  const ta = el("reply-text");
  const panel = ta.closest(".panel");
  const st = el("reply-state");
  const citizen = CITIZEN_SOURCES.has(c.source);
  ta.value = typeof r === "string" ? r : r?.text || "";
  const canEdit = citizen && (user.role === "admin" || user.role === "dispatcher");
  ta.readOnly = !canEdit;
  el("reply-save").hidden = !canEdit;
  panel.classList.toggle("reply-none", !citizen);
  if (!citizen) {
    ta.hidden = true;
    st.textContent = "";
    panel.querySelector(".row-end .muted").textContent = `来源为${c.source}，没有需要回复的市民。`;
    return;
  }
  ta.hidden = false;
  st.textContent = r && r.edited_by ? `${r.edited_by} 修改于 ${fmtTime(r.edited_at)}` : r ? "流水线起草" : "暂无草稿";
}

const ACTION_ICON = { 立案: "✓", 派遣: "➜", 签收: "✓", 处置完成: "✔", 发起核查: "⌕", 核查通过: "✓", 评价: "★" };

function renderHistory(c) {
  const ol = clear(el("history"));
  const hist = [...(c.history || [])].reverse();
  if (!hist.length) ol.append(h("li.muted", "暂无记录"));
  for (const e of hist) {
    const change = e.from_status && e.from_status !== e.to_status ? `${e.from_status} → ${e.to_status}` : e.to_status;
    const extra = [];
    if (e.data && typeof e.data === "object") {
      const dept = e.data.department || e.data.department_id;
      if (dept) extra.push(`单位 ${deptName(dept)}`);
      if (e.data.returned_by) extra.push(`退回单位 ${deptName(e.data.returned_by)}`);
      if (e.data.deadline) extra.push(`时限 ${fmtTime(e.data.deadline)}`);
      if (e.data.via) extra.push(`经由 ${e.data.via}`);
    }
    ol.append(h("li.tl-item", { "data-action": e.action },
      h("span.tl-dot", { "aria-hidden": "true" }, ACTION_ICON[e.action] || ""),
      h("div.tl-body",
        h("div.tl-head", h("strong", e.action), " ", h("span.muted.small", change)),
        h("div.small.muted", `${fmtTime(e.at)} · ${e.actor}`),
        e.note ? h("div.tl-note", e.note) : null,
        extra.length ? h("div.small.muted", extra.join(" · ")) : null)));
  }
}

function visibleActions(c) {
  if (user.role === "viewer") return [];
  let list = c.allowed_actions || [];
  list = list.map((a) => (typeof a === "string" ? a : a.action || a.name)).filter(Boolean);
  if (user.role === "department") {
    if (c.department_id !== user.department_id) return [];
    list = list.filter((a) => DEPARTMENT_ACTIONS.has(a));
  }
  return list;
}

function renderActions(c) {
  const box = clear(el("case-actions"));
  const acts = visibleActions(c);
  if (user.role === "viewer") {
    box.append(h("span.muted.small", "只读用户：仅可查看"));
    return;
  }
  if (!acts.length) {
    box.append(h("span.muted.small", user.role === "department" && c.department_id !== user.department_id ? "本案不在本单位名下" : "当前状态无可执行操作"));
    return;
  }
  for (const a of acts) {
    const cls = DANGER.has(a) ? "btn btn-danger" : PRIMARY.has(a) ? "btn btn-primary" : "btn";
    box.append(h("button", { type: "button", class: `${cls} action-btn`, "data-action": a, onclick: () => openAction(a) }, a));
  }
}

function render(c) {
  current = c;
  el("case-grid").hidden = false;
  renderHead(c);
  renderInfo(c);
  renderRouting(c);
  renderTriage(c);
  renderEvidence(c);
  renderRecord(c);
  renderReply(c);
  renderHistory(c);
  renderActions(c);
}

/** GET /api/cases/{n} answers {case, department_name, overdue, routing, triage, record, reply, waiting, allowed_actions}. */
function flatten(d) {
  if (!d || !d.case) return d;
  const { case: c, ...rest } = d;
  return { ...c, ...rest };
}

async function load() {
  try {
    render(flatten(await api(base)));
    showError(el("case-error"), null);
  } catch (e) {
    showError(el("case-error"), e);
    if (e.status === 404 || e.status === 403) el("case-grid").hidden = true;
  }
}

// -- actions -----------------------------------------------------------------------

const dialog = el("action-dialog");
const aform = el("action-form");
let pendingAction = null;

function fieldsFor(action) {
  const f = new Set();
  if (action === "派遣") f.add("department_id");
  if (action === "延期") f.add("extend").add("approver");
  if (action === "评价") f.add("rating");
  if (action === "处置完成") f.add("photos");
  f.add("note");
  return f;
}

function openAction(action) {
  pendingAction = action;
  const fields = fieldsFor(action);
  aform.reset();
  aform.querySelectorAll("[data-for]").forEach((l) => (l.hidden = !fields.has(l.dataset.for)));
  el("action-dialog-title").textContent = `${action} · ${number}`;
  el("action-hint").textContent = HINT[action] || (NEEDS_REASON.has(action) ? "此操作需要填写原因。" : "确认执行此操作？");
  const required = NEEDS_REASON.has(action) || (action === "处置完成" && user.role === "department");
  el("act-note-label").textContent = (NOTE_LABEL[action] || "说明（可选）") + (required ? "（必填）" : "");
  el("act-note").required = required;
  el("act-extend").required = action === "延期";
  el("act-approver").placeholder = `默认：${user.name}`;
  showError(el("action-error"), null);
  el("act-submit").textContent = action;
  el("act-submit").className = DANGER.has(action) ? "btn btn-danger" : "btn btn-primary";
  dialog.showModal();
  (fields.has("department_id") ? el("act-dept") : fields.has("extend") ? el("act-extend") : el("act-note")).focus();
}

el("act-cancel").addEventListener("click", () => dialog.close());

aform.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const action = pendingAction;
  const f = aform.elements;
  const note = f.note.value.trim();
  if (el("act-note").required && !note) return showError(el("action-error"), new Error("请填写" + (NOTE_LABEL[action] || "说明")));
  if (action === "延期" && !f.extend.value.trim()) return showError(el("action-error"), new Error("延期需要填写延长的时间，如 2工作日"));
  const body = { action };
  if (note) body.note = note;
  if (fieldsFor(action).has("department_id") && f.department_id.value.trim()) body.department_id = f.department_id.value.trim();
  if (action === "延期") {
    body.extend = f.extend.value.trim();
    if (f.approver.value.trim()) body.approver = f.approver.value.trim();
  }
  if (action === "评价") body.rating = parseInt(f.rating.value, 10);
  const submit = el("act-submit");
  submit.disabled = true;
  try {
    const files = action === "处置完成" ? [...el("act-photos").files] : [];
    let res;
    if (files.length) {
      // the action with its photos in one multipart request
      const form = new FormData();
      for (const [k, v] of Object.entries(body)) form.append(k, String(v));
      for (const file of files) form.append("photos", file, file.name);
      res = await api(`${base}/actions`, { form, method: "POST" });
    } else {
      res = await api(`${base}/actions`, { json: body, method: "POST" });
    }
    dialog.close();
    toast(`已${action}：${number}`, "ok");
    if (res && res.case) render(flatten(res));
    else await load();
  } catch (e) {
    showError(el("action-error"), e);
  } finally {
    submit.disabled = false;
  }
});

// -- reply -------------------------------------------------------------------------

el("reply-save").addEventListener("click", async () => {
  const text = el("reply-text").value.trim();
  if (!text) return toast("回复不能为空", "error");
  const btn = el("reply-save");
  btn.disabled = true;
  try {
    const res = await api(`${base}/reply`, { method: "PUT", json: { text } });
    toast("回复已保存", "ok");
    current.reply = res;
    renderReply(current);
    await load(); // the edit is in the history now
  } catch (e) {
    toast(e.message, "error");
  } finally {
    btn.disabled = false;
  }
});

departments().then((list) => {
  const dl = el("act-dept-list");
  for (const d of list) {
    deptNames.set(d.id, d.short || d.name || d.id);
    dl.append(h("option", { value: d.id }, d.name || d.id));
  }
  if (current) renderHistory(current);
});

load();
// keep the page fresh while it is open (another user may act on the case)
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !dialog.open) load();
});
