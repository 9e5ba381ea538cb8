// 审核队列: GET /api/review (cases held at the review gate); approve, edit
// (department, urgency) or reject (with a reason): POST /api/review/{n}.
import { api, h, clear, itemsOf, fmtTime, riskChip, departments, toast, showError } from "./api.js";

const list = document.getElementById("review-list");
const countEl = document.getElementById("review-count");
const dialog = document.getElementById("review-dialog");
const form = document.getElementById("review-form");
let pending = null; // {number, decision, item}

function unpack(item) {
  const c = item.case || item;
  const w = item.waiting || item.review || {};
  return {
    c,
    number: c.number || item.case_number || w.case_number,
    reasons: item.reasons || w.reasons || [],
    department: item.department_id ?? w.department_id ?? c.department_id,
    departmentName: item.department_name || w.department_name || c.department_name,
    name: c.title || w.name || item.name,
    code: c.code || w.code || item.code,
  };
}

function card(item) {
  const r = unpack(item);
  const c = r.c;
  const href = `/cases/${encodeURIComponent(r.number)}`;
  return h("article.review-card", { "data-number": r.number },
    h("div.review-main",
      h("div.review-title", h("a.mono", { href }, r.number), " ", h("strong", r.name || ""), " ", h("span.muted.small", r.code || ""), " ", riskChip(c.risk_level), c.urgency ? h("span.badge.st-plain", c.urgency) : null),
      c.text || c.description ? h("p.review-desc", c.text || c.description) : null,
      h("div.small.muted", [c.address, c.source, c.created_at ? fmtTime(c.created_at) : ""].filter(Boolean).join(" · ")),
      h("div.small", "拟派单位：", h("strong", r.departmentName ? `${r.departmentName}（${r.department}）` : r.department || "—")),
      r.reasons.length ? h("ul.reasons", r.reasons.map((x) => h("li", x))) : null),
    h("div.review-buttons",
      h("button.btn.btn-primary", { type: "button", "data-decision": "approve", onclick: () => decide(r, "approve") }, "通过"),
      h("button.btn", { type: "button", "data-decision": "edit", onclick: () => ask(r, "edit") }, "修改后通过"),
      h("button.btn.btn-danger", { type: "button", "data-decision": "reject", onclick: () => ask(r, "reject") }, "驳回")));
}

async function load() {
  try {
    const items = itemsOf(await api("/api/review"));
    clear(list);
    countEl.textContent = `${items.length} 件`;
    if (!items.length) list.append(h("p.empty", "没有等待审核的案件"));
    items.forEach((it) => list.append(card(it)));
  } catch (e) {
    clear(list).append(h("p.empty.error-text", e.message));
  }
}

async function send(r, decision, extra = {}) {
  const body = { decision, ...extra };
  await api(`/api/review/${encodeURIComponent(r.number)}`, { method: "POST", json: body });
  const done = { approve: "已通过", edit: "已修改并通过", reject: "已驳回" }[decision];
  toast(`${r.number} ${done}`, "ok");
  await load();
}

async function decide(r, decision) {
  const btns = list.querySelectorAll(`[data-number="${CSS.escape(r.number)}"] button`);
  btns.forEach((b) => (b.disabled = true));
  try {
    await send(r, decision);
  } catch (e) {
    toast(e.message, "error");
    btns.forEach((b) => (b.disabled = false));
  }
}

function ask(r, decision) {
  pending = { r, decision };
  form.reset();
  const edit = decision === "edit";
  form.querySelectorAll("[data-for]").forEach((l) => (l.hidden = !edit && l.dataset.for !== "note"));
  document.getElementById("review-dialog-title").textContent = `${edit ? "修改后通过" : "驳回"} · ${r.number}`;
  document.getElementById("review-hint").textContent = edit
    ? `修改责任单位或紧急程度后派遣。当前拟派：${r.department || "—"}`
    : "驳回后案件不予立案；请写明原因（会记入案件历史）。";
  document.getElementById("rv-note-label").textContent = edit ? "审核意见（可选）" : "驳回原因（必填）";
  document.getElementById("rv-note").required = !edit;
  const submit = document.getElementById("rv-submit");
  submit.textContent = edit ? "修改并通过" : "驳回";
  submit.className = edit ? "btn btn-primary" : "btn btn-danger";
  showError(document.getElementById("review-error"), null);
  dialog.showModal();
  (edit ? document.getElementById("rv-dept") : document.getElementById("rv-note")).focus();
}

document.getElementById("rv-cancel").addEventListener("click", () => dialog.close());

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const { r, decision } = pending;
  const f = form.elements;
  const note = f.note.value.trim();
  const errEl = document.getElementById("review-error");
  const extra = {};
  if (note) extra.note = note;
  if (decision === "reject" && !note) return showError(errEl, new Error("驳回需要填写原因"));
  if (decision === "edit") {
    const edits = {};
    if (f.department_id.value.trim()) edits.department_id = f.department_id.value.trim();
    if (f.urgency.value) edits.urgency = f.urgency.value;
    if (!Object.keys(edits).length) return showError(errEl, new Error("请修改责任单位或紧急程度；不修改请直接「通过」"));
    Object.assign(extra, edits); // POST /api/review/{n}: {decision, note, department_id, urgency}
  }
  try {
    await send(r, decision, extra);
    dialog.close();
  } catch (e) {
    showError(errEl, e);
  }
});

departments().then((ds) => {
  const dl = document.getElementById("rv-dept-list");
  for (const d of ds) dl.append(h("option", { value: d.id }, d.name || d.id));
});

load();
