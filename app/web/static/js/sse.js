// Server-sent events over fetch (EventSource only does GET): POST a JSON body and
// read the answer's `text/event-stream` body as it arrives.

/** Yields {event, data} (data parsed as JSON when it is JSON) from a fetch Response. */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buf += decoder.decode(value, { stream: true });
    if (done) buf += decoder.decode();
    buf = buf.replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = parseBlock(block);
      if (ev) yield ev;
    }
    if (done) {
      const ev = parseBlock(buf);
      if (ev) yield ev;
      return;
    }
  }
}

function parseBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const j = line.indexOf(":");
    const field = j < 0 ? line : line.slice(0, j);
    let value = j < 0 ? "" : line.slice(j + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const raw = data.join("\n");
  try {
    return { event, data: JSON.parse(raw) };
  } catch {
    return { event, data: raw };
  }
}

/**
 * POST `body` as JSON to `url` asking for an event stream; call `on[event](data)` for
 * each event. A JSON answer (an endpoint without streaming) is passed to `on.json`.
 * Errors (HTTP 4xx/5xx) throw with the API's detail.
 */
export async function postStream(url, body, on, { signal } = {}) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (res.status === 401) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    throw new Error("登录已过期，请重新登录");
  }
  const type = res.headers.get("content-type") || "";
  if (!res.ok) {
    const data = type.includes("json") ? await res.json().catch(() => null) : await res.text();
    const detail = data && typeof data === "object" && typeof data.detail === "string" ? data.detail : `请求失败（HTTP ${res.status}）`;
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  if (!type.includes("event-stream")) {
    const data = await res.json();
    on.json?.(data);
    return;
  }
  for await (const { event, data } of readEvents(res)) on[event]?.(data);
}
