// 调度对话: the dispatch agent over /api/chat. A thread's id is kept in localStorage
// (per user) so a reload resumes it. Replies stream as server-sent events read from
// the POST's body: `delta` (tokens), `reply` (a whole message), `waiting` (a planned
// change to confirm or cancel), `done`, `error`.
import { api, h, clear, pageData, toast } from "./api.js";
import { postStream } from "./sse.js";

const data = pageData();
const user = data.user || {};
const KEY = `xunjian.chat.thread.${user.name || "anon"}`;

const log = document.getElementById("chat-log");
const form = document.getElementById("chat-form");
const text = document.getElementById("chat-text");
const send = document.getElementById("chat-send");
const label = document.getElementById("thread-label");
let threadId = null;
let busy = false;

/** Text with case numbers turned into links; **bold** and `code` kept simple. */
function rich(str) {
  const frag = document.createDocumentFragment();
  const parts = String(str ?? "").split(/(\*\*[^*\n]+\*\*|`[^`\n]+`|\d{6}-\d{8}-\d{4})/g);
  for (const p of parts) {
    if (!p) continue;
    if (/^\d{6}-\d{8}-\d{4}$/.test(p)) frag.append(h("a.mono", { href: `/cases/${p}` }, p));
    else if (p.startsWith("**") && p.endsWith("**") && p.length > 4) frag.append(h("strong", p.slice(2, -2)));
    else if (p.startsWith("`") && p.endsWith("`") && p.length > 2) frag.append(h("code", p.slice(1, -1)));
    else frag.append(document.createTextNode(p));
  }
  return frag;
}

function bubble(role, content, cls = "") {
  const who = role === "user" ? user.name || "我" : role === "assistant" ? "调度助手" : "系统";
  const body = h("div.msg-body");
  if (content) body.append(rich(content));
  const el = h(`div.msg.msg-${role}${cls ? "." + cls : ""}`, { "data-role": role }, h("div.msg-who", who), body);
  log.append(el);
  log.scrollTop = log.scrollHeight;
  return el;
}

function setBody(el, content) {
  const body = el.querySelector(".msg-body");
  clear(body).append(rich(content));
  log.scrollTop = log.scrollHeight;
}

function planCard(w) {
  const plan = w.plan || {};
  const lines = String(w.text || plan.description || "").split("\n").filter((l) => !/\/confirm|\/cancel/.test(l));
  const warnings = w.warnings || plan.warnings || [];
  const card = h("div.msg.msg-plan", { "data-role": "plan", "data-case": plan.case_number || "" },
    h("div.msg-who", "待确认的操作"),
    h("div.msg-body", rich(lines.filter((l) => !warnings.some((x) => l.includes(x))).join("\n"))),
    warnings.length ? h("ul.plan-warnings", warnings.map((x) => h("li", x))) : null,
    h("div.plan-buttons",
      h("button.btn.btn-primary.btn-sm", { type: "button", "data-decision": "confirm", onclick: () => answer("confirm", card) }, "确认执行"),
      h("button.btn.btn-sm", { type: "button", "data-decision": "cancel", onclick: () => answer("cancel", card) }, "取消")));
  log.append(card);
  log.scrollTop = log.scrollHeight;
  return card;
}

function settlePlans(decision) {
  log.querySelectorAll(".msg-plan:not(.settled)").forEach((c) => {
    c.classList.add("settled");
    c.querySelectorAll("button").forEach((b) => b.remove());
    c.querySelector(".plan-buttons")?.append(h("span.muted.small", decision === "confirm" ? "已确认" : decision === "cancel" ? "已取消" : "已处理"));
  });
}

function setBusy(on) {
  busy = on;
  send.disabled = on;
  send.textContent = on ? "回复中…" : "发送";
  log.setAttribute("aria-busy", on ? "true" : "false");
}

/** The plan's text, without the "type /confirm" line (buttons do that here). */
function planKey(w) {
  const text = String((w && (w.plan?.description || w.text)) || "");
  return text.split("\n")[0].trim();
}

/** A reply that only repeats the waiting plan (command mode says it in words) gives way to the plan card. */
function dropEcho(bubbles, w) {
  const key = planKey(w);
  if (!key) return;
  for (const b of bubbles) if (b.isConnected && b.textContent.includes(key)) b.remove();
}

/** Run one streamed turn: assistant text as it comes, the plan when one waits. */
async function turn(url, body) {
  setBusy(true);
  let live = null; // the bubble the deltas go into
  let liveText = "";
  const said = []; // this turn's assistant bubbles
  const typing = bubble("assistant", "", "typing");
  typing.querySelector(".msg-body").append(h("span.dots", { "aria-label": "正在输入" }, h("i"), h("i"), h("i")));
  const dropTyping = () => typing.isConnected && typing.remove();
  try {
    await postStream(url, body, {
      delta(d) {
        dropTyping();
        if (!live) {
          live = bubble("assistant", "");
          said.push(live);
          liveText = "";
        }
        liveText += d.text || "";
        setBody(live, liveText);
      },
      reply(d) {
        dropTyping();
        if (live) setBody(live, d.text);
        else said.push(bubble("assistant", d.text));
        live = null;
      },
      waiting(d) {
        dropTyping();
        live = null;
        dropEcho(said, d);
        planCard(d);
      },
      done(d) {
        dropTyping();
        if (d && d.thread_id && d.thread_id !== threadId) remember(d.thread_id);
      },
      error(d) {
        dropTyping();
        bubble("system", d.detail || "出错了", "msg-error");
      },
      json(t) {
        // a non-streaming answer: a Turn {thread_id, replies, waiting}
        dropTyping();
        (t.replies || []).forEach((r) => said.push(bubble("assistant", r)));
        if (t.waiting) {
          dropEcho(said, t.waiting);
          planCard(t.waiting);
        }
      },
    });
  } catch (e) {
    dropTyping();
    bubble("system", e.message, "msg-error");
    if (e.status === 404 || e.status === 403) {
      // the thread is gone or not ours: start a fresh one next time
      localStorage.removeItem(KEY);
    }
  } finally {
    dropTyping();
    setBusy(false);
    text.focus();
  }
}

async function answer(decision, card) {
  if (busy) return;
  card?.querySelectorAll("button").forEach((b) => (b.disabled = true));
  bubble("user", decision === "confirm" ? "确认" : "取消");
  settlePlans(decision);
  await turn(`/api/chat/threads/${encodeURIComponent(threadId)}/answer`, { decision, args: {} });
}

const MODES = { llm: "大模型", commands: "命令模式（未配置大模型）" };

function remember(id, mode) {
  threadId = id;
  localStorage.setItem(KEY, id);
  label.textContent = id;
  label.title = "会话编号（刷新页面后继续这个会话）";
  if (mode) {
    const m = document.getElementById("chat-mode");
    m.textContent = MODES[mode] || mode;
    m.dataset.mode = mode;
  }
}

async function newThread() {
  const t = await api("/api/chat/threads", { method: "POST", json: {} });
  remember(t.thread_id, t.mode);
  clear(log);
  bubble("assistant", "您好，我是调度助手。可以查询案件、解释派遣依据、汇总超期和考核指标；改派、延期等修改会先给出计划，由您确认后执行。\n" +
    (t.mode === "commands" ? "当前未配置大模型：常见的查询和改派可直接用中文说（如「江北环卫所有哪些超期的案件？」，按关键词理解），其余请用命令，如 /cases overdue、/assign 案件编号 单位；输入 /help 查看全部命令。" : "输入 /help 查看命令。"));
}

async function resume(id) {
  const t = await api(`/api/chat/threads/${encodeURIComponent(id)}`, { noRedirect: false });
  remember(t.thread_id || id, t.mode);
  clear(log);
  const shown = [];
  for (const m of t.messages || []) {
    if ((m.role === "user" || m.role === "assistant") && m.content && !m.tool_calls) shown.push(bubble(m.role, m.content));
  }
  if (t.waiting) {
    dropEcho(shown.filter((b) => b.dataset.role === "assistant").slice(-1), t.waiting);
    planCard(t.waiting);
  }
  if (!log.children.length) bubble("assistant", "会话已恢复。输入 /help 查看命令。");
}

async function start() {
  const saved = localStorage.getItem(KEY);
  if (saved) {
    try {
      await resume(saved);
      return;
    } catch (e) {
      localStorage.removeItem(KEY);
    }
  }
  try {
    await newThread();
  } catch (e) {
    bubble("system", `无法开始会话：${e.message}`, "msg-error");
  }
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const msg = text.value.trim();
  if (!msg || busy) return;
  if (!threadId) await start();
  text.value = "";
  bubble("user", msg);
  settlePlans("superseded");
  await turn(`/api/chat/threads/${encodeURIComponent(threadId)}/messages`, { text: msg });
});

text.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    form.requestSubmit();
  }
});

document.getElementById("new-thread").addEventListener("click", async () => {
  if (busy) return;
  try {
    await newThread();
    toast("已开始新会话", "ok");
  } catch (e) {
    toast(e.message, "error");
  }
});

document.querySelectorAll(".cmd").forEach((b) =>
  b.addEventListener("click", () => {
    text.value = b.dataset.cmd;
    form.requestSubmit();
  }),
);

start();
