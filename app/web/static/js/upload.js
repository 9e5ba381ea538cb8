// 上传批次: pick (or drop) the files of one patrol; upload them with XMLHttpRequest to
// POST /api/batches (a bar per file from upload.onprogress), or, when a file is over
// 64 MB, through the resumable chunked API (POST /api/uploads, PUT chunks with
// Content-Range, resume on 409 {received}, POST /api/batches/from-uploads). Then
// follow the ingest job (EventSource /api/jobs/{id}/events) and show the report.
import { api, ApiError, errorDetail, h, clear, fmtBytes, pageData, toast, loginUrl } from "./api.js";
import { renderReport, FILE_STATUS } from "./report.js";

const data = pageData();
const CHUNK_THRESHOLD = data.chunk_threshold || 64 * 1024 * 1024;
const CHUNK = 8 * 1024 * 1024;

const input = document.getElementById("files");
const drop = document.getElementById("dropzone");
const listEl = document.getElementById("file-list");
const startBtn = document.getElementById("start-upload");
const clearBtn = document.getElementById("clear-files");
let files = []; // [{file, row, bar, pct, state}]
let busy = false;

function bar(label) {
  const b = h("div.bar", { role: "progressbar", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0 }, h("i"));
  return b;
}

function setBar(b, frac, text) {
  const pct = Math.max(0, Math.min(100, Math.round(frac * 1000) / 10));
  b.querySelector("i").style.width = `${pct}%`;
  b.setAttribute("aria-valuenow", String(Math.round(pct)));
  if (text !== undefined) b.nextElementSibling && (b.nextElementSibling.textContent = text);
}

function addFiles(list) {
  if (busy) return;
  for (const file of list) {
    if (files.some((f) => f.file.name === file.name && f.file.size === file.size)) continue;
    const b = bar(`${file.name} 上传进度`);
    const row = h("li.file-row", { "data-name": file.name },
      h("div.file-meta", h("span.file-name", file.name), h("span.muted.small", fmtBytes(file.size) + (file.size > CHUNK_THRESHOLD ? " · 分块上传" : ""))),
      h("div.bar-row", b, h("span.bar-value", "待上传")),
      h("button.btn.btn-ghost.btn-sm.remove", { type: "button", "aria-label": `移除 ${file.name}`, onclick: () => remove(file) }, "移除"));
    files.push({ file, row, bar: b });
    listEl.append(row);
  }
  refresh();
}

function remove(file) {
  if (busy) return;
  const i = files.findIndex((f) => f.file === file);
  if (i >= 0) {
    files[i].row.remove();
    files.splice(i, 1);
  }
  refresh();
}

function refresh() {
  startBtn.disabled = busy || !files.length;
  clearBtn.disabled = busy || !files.length;
  startBtn.textContent = files.length ? `开始上传（${files.length} 个文件，${fmtBytes(files.reduce((a, f) => a + f.file.size, 0))}）` : "开始上传";
}

input.addEventListener("change", () => {
  addFiles(input.files);
  input.value = "";
});
clearBtn.addEventListener("click", () => {
  files.forEach((f) => f.row.remove());
  files = [];
  refresh();
});
drop.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    input.click();
  }
});
for (const t of ["dragenter", "dragover"]) drop.addEventListener(t, (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
});
for (const t of ["dragleave", "drop"]) drop.addEventListener(t, () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  addFiles(ev.dataTransfer.files);
});

// -- uploading ---------------------------------------------------------------------

function options() {
  const o = {};
  const source = document.getElementById("up-source").value;
  const batch = document.getElementById("up-batch").value.trim();
  if (source) o.source = source;
  if (batch) o.batch = batch;
  return o;
}

/** One multipart POST of every file; per-file bars from how far the body has gone. */
function uploadMultipart() {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(options())) form.append(k, v);
    for (const f of files) form.append("files", f.file, f.file.name);
    const total = files.reduce((a, f) => a + f.file.size, 0) || 1;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/batches");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (ev) => {
      // the body is the files in order (plus small multipart headers): map bytes sent to files
      const sent = ev.lengthComputable ? (ev.loaded / ev.total) * total : ev.loaded;
      let start = 0;
      for (const f of files) {
        const frac = f.file.size ? (sent - start) / f.file.size : sent >= start ? 1 : 0;
        const clamped = Math.max(0, Math.min(1, frac));
        setBar(f.bar, clamped, clamped >= 1 ? "已上传" : `${Math.round(clamped * 100)}%`);
        start += f.file.size;
      }
    };
    xhr.upload.onload = () => files.forEach((f) => setBar(f.bar, 1, "已上传"));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = xhr.responseText;
      }
      if (xhr.status === 401) location.assign(loginUrl());
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, errorDetail(body, xhr.status), body));
    };
    xhr.onerror = () => reject(new Error("网络错误：上传中断"));
    xhr.send(form);
  });
}

function putChunk(id, blob, start, size, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `/api/uploads/${encodeURIComponent(id)}`);
    xhr.setRequestHeader("Content-Range", `bytes ${start}-${start + blob.size - 1}/${size}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (ev) => onProgress?.(ev.loaded);
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => reject(new Error("网络错误"));
    xhr.send(blob);
  });
}

/** One file through the chunked API; resumes where the server says it is (409 {received}). */
async function uploadChunked(f) {
  const size = f.file.size;
  const created = await api("/api/uploads", { json: { filename: f.file.name, size } });
  const id = created.upload_id || created.id;
  const chunk = created.chunk_size || CHUNK;
  let offset = created.received || 0;
  let failures = 0;
  while (offset < size) {
    const blob = f.file.slice(offset, Math.min(size, offset + chunk));
    let res;
    try {
      const at = offset;
      res = await putChunk(id, blob, offset, size, (loaded) =>
        setBar(f.bar, (at + loaded) / size, `${Math.round(((at + loaded) / size) * 100)}% · ${fmtBytes(at + loaded)}`));
    } catch (e) {
      if (++failures > 5) throw e;
      await new Promise((r) => setTimeout(r, 1000 * failures));
      // ask where the server is, then go on from there
      const st = await api(`/api/uploads/${encodeURIComponent(id)}`).catch(() => null);
      if (st && typeof st.received === "number") offset = st.received;
      continue;
    }
    if (res.status === 409 && res.body && typeof res.body.received === "number") {
      offset = res.body.received; // resume from what the server has
      f.row.dataset.resumed = String((parseInt(f.row.dataset.resumed || "0", 10) || 0) + 1);
    } else if (res.status >= 200 && res.status < 300) {
      f.row.dataset.chunks = String((parseInt(f.row.dataset.chunks || "0", 10) || 0) + 1);
      offset = res.body && typeof res.body.received === "number" ? res.body.received : offset + blob.size;
      failures = 0;
    } else {
      throw new ApiError(res.status, errorDetail(res.body, res.status), res.body);
    }
    setBar(f.bar, offset / size, `${Math.round((offset / size) * 100)}% · ${fmtBytes(offset)}`);
  }
  setBar(f.bar, 1, "已上传");
  return id;
}

async function uploadAllChunked() {
  const ids = [];
  for (const f of files) ids.push(await uploadChunked(f));
  return api("/api/batches/from-uploads", { json: { uploads: ids, ...options() } });
}

startBtn.addEventListener("click", async () => {
  if (!files.length || busy) return;
  busy = true;
  refresh();
  drop.setAttribute("aria-disabled", "true");
  files.forEach((f) => f.row.querySelector(".remove").remove());
  try {
    const big = files.some((f) => f.file.size > CHUNK_THRESHOLD);
    const res = big ? await uploadAllChunked() : await uploadMultipart();
    const jobId = res.job_id || res.job?.id || res.id;
    toast("上传完成，开始处理", "ok");
    follow(jobId, res.batch_id || res.batch?.id);
  } catch (e) {
    toast(e.message, "error", 8000);
    files.forEach((f) => f.row.querySelector(".bar-value").textContent === "已上传" || (f.row.querySelector(".bar-value").textContent = "失败"));
    busy = false;
    refresh();
  }
});

// -- processing --------------------------------------------------------------------

const procPanel = document.getElementById("progress-panel");
const batchBar = document.getElementById("batch-bar");
const batchPct = document.getElementById("batch-pct");
const stageEl = document.getElementById("job-stage");
const currentEl = document.getElementById("job-current");
const jobFiles = document.getElementById("job-files");
const STAGES = { queued: "排队中", ingest: "视频解析与检测", ingesting: "视频解析与检测", pipeline: "立案与派遣", cases: "立案与派遣", verify: "核查", verifying: "核查", done: "完成", failed: "失败" };
const fileBars = new Map();

function fileBar(path) {
  let fb = fileBars.get(path);
  if (!fb) {
    const b = bar(`${path} 处理进度`);
    const status = h("span.bar-value", "等待");
    const row = h("li.file-row", { "data-path": path }, h("div.file-meta", h("span.file-name", path), h("span.muted.small.file-obs")), h("div.bar-row", b, status));
    jobFiles.append(row);
    fb = { b, status, row };
    fileBars.set(path, fb);
  }
  return fb;
}

function showProgress(job) {
  const p = job.progress || {};
  const stage = job.status === "done" ? "done" : job.status === "failed" ? "failed" : p.stage || job.status;
  stageEl.textContent = STAGES[stage] || stage || "";
  const total = p.files_total || (p.files || []).length || 0;
  const cur = p.current || null;
  const curFrac = cur && cur.seconds ? Math.min(1, (cur.t || 0) / cur.seconds) : 0;
  for (const f of p.files || []) {
    const fb = fileBar(f.path || f.name);
    const st = f.status || "pending";
    const isCur = cur && (cur.name === f.path || cur.name === f.name || (f.path || "").endsWith(cur.name));
    const frac = ["done", "ok", "skipped", "duplicate", "failed", "error"].includes(st) ? 1 : isCur ? curFrac : 0;
    setBar(fb.b, frac);
    fb.status.textContent = (FILE_STATUS[st] || st) + (isCur && cur.seconds ? ` ${Math.round(curFrac * 100)}%` : "");
    fb.row.classList.toggle("failed", st === "failed" || st === "error");
    fb.row.querySelector(".file-obs").textContent = f.error ? f.error : f.observations != null ? `发现 ${f.observations} 处` : "";
  }
  if (cur && cur.name) currentEl.textContent = `正在处理 ${cur.name}${cur.seconds ? `：${(cur.t || 0).toFixed(1)} / ${cur.seconds.toFixed(1)} 秒` : ""}`;
  else currentEl.textContent = p.pipeline && p.pipeline.total ? `立案与派遣：${p.pipeline.done || 0} / ${p.pipeline.total}` : "";
  let frac;
  if (job.status === "done") frac = 1;
  else {
    const ingest = total ? ((p.files_done || 0) + curFrac) / total : 0;
    const pipe = p.pipeline && p.pipeline.total ? (p.pipeline.done || 0) / p.pipeline.total : 0;
    frac = Math.min(0.99, ingest * 0.75 + pipe * 0.25);
  }
  setBar(batchBar, frac);
  batchPct.textContent = `${Math.round(frac * 100)}%`;
}

function finish(job) {
  showProgress(job);
  busy = false;
  const panel = document.getElementById("report-panel");
  panel.hidden = false;
  if (job.status === "failed") {
    clear(document.getElementById("report")).append(h("p.form-error", { role: "alert" }, `处理失败：${job.error || "未知错误"}`));
    toast("批次处理失败", "error", 8000);
  } else {
    const r = job.result || {};
    renderReport(document.getElementById("report"), r);
    const bid = typeof r.batch === "string" ? r.batch : r.batch?.id || r.batch_id;
    const link = document.getElementById("report-link");
    if (bid) {
      link.href = `/batches/${encodeURIComponent(bid)}`;
      link.textContent = "批次报告页";
      // the job names its cases by number: add their titles and statuses from the batch report
      api(`/api/batches/${encodeURIComponent(bid)}`)
        .then((rep) => {
          const info = new Map((Array.isArray(rep.cases) ? rep.cases : []).map((c) => [c.number, c]));
          const named = (list) => (Array.isArray(list) ? list.map((n) => info.get(n) || n) : list);
          const cases = r.cases && !Array.isArray(r.cases)
            ? Object.fromEntries(Object.entries(r.cases).map(([k, v]) => [k, named(v)])) : r.cases;
          renderReport(document.getElementById("report"), { ...r, cases });
        })
        .catch(() => {});
    } else link.hidden = true;
    toast("批次处理完成", "ok");
  }
  panel.scrollIntoView({ block: "start" });
}

/** Once the files are up, the picker shrinks to one line (the bars are no longer news). */
function collapsePicker() {
  const panel = document.getElementById("picker-panel");
  const total = files.reduce((a, f) => a + f.file.size, 0);
  panel.classList.add("done");
  panel.append(h("div.uploaded-summary",
    h("span", `已上传 ${files.length} 个文件（${fmtBytes(total)}）：`, h("span.mono.small", files.map((f) => f.file.name).join("、"))),
    h("a.btn.btn-sm", { href: "/upload" }, "上传新批次")));
}

function follow(jobId) {
  procPanel.hidden = false;
  collapsePicker();
  const es = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events`);
  let ended = false;
  const onJob = (ev) => {
    try {
      return JSON.parse(ev.data);
    } catch {
      return null;
    }
  };
  es.addEventListener("progress", (ev) => {
    const job = onJob(ev);
    if (job) showProgress(job);
  });
  es.addEventListener("done", (ev) => {
    ended = true;
    es.close();
    const job = onJob(ev);
    if (job) finish(job);
  });
  es.addEventListener("error", async () => {
    if (ended) return;
    if (es.readyState === EventSource.CLOSED) {
      // the stream is gone for good: poll the job instead
      for (;;) {
        try {
          const job = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
          if (job.status === "done" || job.status === "failed") return finish(job);
          showProgress(job);
        } catch (e) {
          toast(e.message, "error");
          return;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  });
}

refresh();
