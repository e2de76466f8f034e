// Holds a run's POST stream for the console page (api.js `stream`): Bridge stops a run whose
// client went away, and this worker outlives a reload of the page, so the run goes on and
// the reloaded page follows it through the replay route. Events are passed to the page that
// asked, while it is there. No fetch handler: the page's own requests go to the network.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("message", (e) => e.waitUntil(run(e.data, e.ports[0])));

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

async function run({ path, body, token }, port) {
  const send = (m) => { try { port.postMessage(m); } catch { /* the page is gone */ } };
  let r;
  try {
    r = await fetch(path, {
      method: "POST",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    return send({ type: "fail", status: 0, problem: { detail: String(err) } });
  }
  if (!r.ok) return send({ type: "fail", status: r.status, problem: await r.json().catch(() => null) });
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
      if (e) send({ type: "event", event: e.event, data: JSON.parse(e.data), id: e.id });
    }
  }
  send({ type: "end" });
}
