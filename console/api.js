// The public API, with the bearer token: JSON calls, SSE over fetch for the POSTs, and the
// replay route through EventSource for resuming a run after a reload.

const TOKEN = "bridge.token";
const RUN = "bridge.run";

export const store = {
  get token() { return sessionStorage.getItem(TOKEN); },
  set token(t) { t ? sessionStorage.setItem(TOKEN, t) : sessionStorage.removeItem(TOKEN); },
  get run() { try { return JSON.parse(sessionStorage.getItem(RUN)); } catch { return null; } },
  set run(r) { r ? sessionStorage.setItem(RUN, JSON.stringify(r)) : sessionStorage.removeItem(RUN); },
  get(k) { return sessionStorage.getItem("bridge." + k); },
  set(k, v) { v == null ? sessionStorage.removeItem("bridge." + k) : sessionStorage.setItem("bridge." + k, v); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : "HTTP " + status);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra) {
  const h = Object.assign({}, extra);
  if (store.token) h.Authorization = "Bearer " + store.token;
  return h;
}

// `api("GET", "/v1/teams")`; a JSON body, or `{raw, type}`; answers `{status, headers, body}`.
export async function api(method, path, body, extraHeaders) {
  // Always revalidated: a dashboard's data may be held fresh for a while by the HTTP cache,
  // and the console must show a version the moment it is written.
  const init = { method, headers: headers(extraHeaders), cache: "no-cache" };
  if (body && body.raw !== undefined) {
    init.body = body.raw;
    init.headers["Content-Type"] = body.type;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, init);
  const type = r.headers.get("content-type") || "";
  const parsed = type.includes("json") ? await r.json().catch(() => null) : await r.text();
  if (!r.ok && r.status !== 304) throw new ApiError(r.status, typeof parsed === "object" ? parsed : { detail: parsed });
  return { status: r.status, headers: r.headers, body: parsed };
}

export const get = (p) => api("GET", p).then((r) => r.body);
export const post = (p, b) => api("POST", p, b).then((r) => r.body);

// Splits one `text/event-stream` block into {id, event, data}.
function block(text) {
  const e = { id: null, event: "message", data: [] };
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i === 0) continue;
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") e.id = value;
    else if (field === "event") e.event = value;
    else if (field === "data") e.data.push(value);
  }
  return e.data.length ? { id: e.id, event: e.event, data: e.data.join("\n") } : null;
}

// The service worker that holds a run's POST stream (console/sw.js), or null where there is
// none (a service worker needs a secure context: https, or localhost / 127.0.0.1).
async function holder() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    const reg = await navigator.serviceWorker.register("/console/sw.js", { scope: "/console/" });
    const w = reg.active || reg.waiting || reg.installing;
    if (w.state !== "activated") {
      await new Promise((done) => w.addEventListener("statechange", () => w.state === "activated" && done()));
    }
    return w;
  } catch {
    return null;
  }
}

// POSTs `body` to an SSE route and calls `on(event, data, id)` for each event as it arrives;
// resolves when the stream ends. Bridge stops a run whose client went away, so the POST is
// made by the service worker, which outlives a reload of this page: the reloaded page then
// follows the same run through the replay route (`replay`). Without a service worker the
// page makes the POST itself (a reload then ends the run, and the replay shows its end).
export async function stream(path, body, on) {
  const w = await holder();
  if (!w) return streamHere(path, body, on);
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (m) => {
      const d = m.data;
      if (d.type === "event") on(d.event, d.data, d.id);
      else if (d.type === "end") resolve();
      else reject(new ApiError(d.status, d.problem));
    };
    w.postMessage({ path, body, token: store.token }, [channel.port2]);
  });
}

async function streamHere(path, body, on) {
  const r = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const e = block(buf.slice(0, end));
      buf = buf.slice(end + 2);
      if (e) on(e.event, JSON.parse(e.data), e.id);
    }
  }
}

export const RUN_EVENTS = ["run", "token", "tool_call", "tool_result", "cost_update", "dashboard_created", "message", "complete", "error"];

// Replays a run from its start with EventSource (the replay token in the query, as
// EventSource cannot send headers); EventSource reconnects with Last-Event-ID by itself.
// Closes at the terminal event. Answers the EventSource.
export function replay(run, on) {
  const url = "/v1/chat/sessions/" + run.session + "/runs/" + run.run + "/events?token=" + encodeURIComponent(run.token);
  const es = new EventSource(url);
  for (const type of RUN_EVENTS) {
    es.addEventListener(type, (e) => {
      if (!(e instanceof MessageEvent)) return; // the connection's own error
      let data;
      try { data = JSON.parse(e.data); } catch { data = e.data; }
      on(type, data, e.lastEventId);
      if (type === "complete" || type === "error") es.close();
    });
  }
  return es;
}
