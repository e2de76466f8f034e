// The console: sign in, teams, connections (validate, scan with progress), the catalog, chat,
// generation, and dashboards (grid, parameters, YAML with problems, save with If-Match,
// versions). Public API only; the bearer token and a run's replay token in sessionStorage.

import { api, get, post, stream, replay, store, ApiError } from "./api.js";
import { el, render, fmt } from "./tiles.js";

const $ = (id) => document.getElementById(id);
const state = { teams: [], connections: [], dashboards: [], spec: null, version: null, slug: null };
window.bridgeConsole = { state, events: [] }; // read by the browser test

function show(id, value) {
  const out = $(id);
  out.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
}
const failed = (id) => (e) => show(id, e instanceof ApiError ? `${e.status} ${e.problem.code || ""}: ${e.message}` : String(e));

// --- sign in --------------------------------------------------------------------------------

async function signedIn() {
  try {
    state.teams = (await get("/v1/teams")).teams;
  } catch (e) {
    store.token = null;
    $("signin-msg").textContent = e instanceof ApiError && e.status === 401 ? "That token was refused." : String(e);
    return false;
  }
  const claims = JSON.parse(atob(store.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  $("who").textContent = claims.email || claims.sub;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  fillTeams();
  return true;
}

$("dev-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const r = await api("POST", "/console-dev/token", { email: $("dev-email").value });
    store.token = r.body.token;
    await signedIn();
  } catch (err) {
    $("signin-msg").textContent = err.status === 403 ? "Dev tokens exist in development only: paste a token." : err.message;
  }
});
$("paste-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  store.token = $("paste-token").value.trim();
  await signedIn();
});
$("sign-out").addEventListener("click", () => { sessionStorage.clear(); location.reload(); });

// --- teams and connections ----------------------------------------------------------------

function options(select, items, label, chosen, key = (i) => i.id) {
  select.replaceChildren(...items.map((i) => el("option", { value: key(i), text: label(i) })));
  if (chosen && items.some((i) => key(i) === chosen)) select.value = chosen;
}

function fillTeams() {
  options($("team-pick"), state.teams, (t) => `${t.name} (${t.role || "member"})`, store.get("team"));
  store.set("team", $("team-pick").value || null);
  loadConnections();
  loadDashboards();
}
$("team-pick").addEventListener("change", () => { store.set("team", $("team-pick").value); loadConnections(); loadDashboards(); });

$("team-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const t = await post("/v1/teams", { name: $("team-name").value });
    store.set("team", t.id);
    state.teams = (await get("/v1/teams")).teams;
    fillTeams();
    show("setup-out", { created_team: t.name, id: t.id });
  } catch (err) { failed("setup-out")(err); }
});

async function loadConnections() {
  const team = store.get("team");
  if (!team) return options($("conn-pick"), [], () => "");
  state.connections = (await get(`/v1/teams/${team}/connections`)).connections;
  options($("conn-pick"), state.connections, (c) => `${c.name} (${c.warehouse_type}, ${c.status})`, store.get("connection"));
  store.set("connection", $("conn-pick").value || null);
  loadDatasets();
}
$("conn-pick").addEventListener("change", () => {
  store.set("connection", $("conn-pick").value);
  // Sessions belong to one connection: the next message or prompt starts a new one.
  store.set("chat-session", null);
  store.set("gen-session", null);
  loadDatasets();
});

async function createConnection(body) {
  const team = store.get("team");
  if (!team) throw new Error("create or pick a team first");
  const c = await post(`/v1/teams/${team}/connections`, body);
  store.set("connection", c.id);
  store.set("chat-session", null);
  store.set("gen-session", null);
  await loadConnections();
  return c;
}

$("demo-connect").addEventListener("click", async () => {
  show("setup-out", "Loading the demo warehouse…");
  try {
    // The URL is used once, to create the connection, and not kept.
    const demo = await post("/console-dev/demo-warehouse");
    const c = await createConnection({ name: demo.name, warehouse_type: "postgres", credentials: { url: demo.url } });
    show("setup-out", { connected: c.name, id: c.id, status: c.status });
    await validate();
    await scan();
  } catch (err) { failed("setup-out")(err); }
});

$("conn-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const type = $("conn-type").value;
  const raw = $("conn-cred").value.trim();
  let credentials;
  try {
    credentials = type === "postgres" ? { url: raw } : JSON.parse(raw);
    const c = await createConnection({ name: $("conn-name").value, warehouse_type: type, credentials });
    $("conn-cred").value = "";
    show("setup-out", { connected: c.name, id: c.id });
  } catch (err) { failed("setup-out")(err); }
});

async function validate() {
  const c = store.get("connection");
  const v = await post(`/v1/connections/${c}/validate`);
  show("setup-out", { validation: v.status, outcome: v.outcome, checks: v.checks });
  await loadConnections();
  return v;
}
$("validate").addEventListener("click", () => validate().catch(failed("setup-out")));

async function scan() {
  const c = store.get("connection");
  const started = await post(`/v1/connections/${c}/scan`);
  const bar = $("scan-progress");
  bar.hidden = false;
  for (;;) {
    const s = await get(`/v1/connections/${c}/scans/${started.scan_id}`);
    bar.max = s.datasets_total || 1;
    bar.value = s.datasets_scanned;
    show("setup-out", `Scan ${s.status}: ${s.datasets_scanned}/${s.datasets_total ?? "?"} datasets, ${s.tables_scanned} tables` +
      (s.errors.length ? `\n${JSON.stringify(s.errors)}` : ""));
    if (s.status !== "running") {
      document.body.dataset.scan = s.status;
      await loadDatasets();
      return s;
    }
    await new Promise((r) => setTimeout(r, 400));
  }
}
$("scan").addEventListener("click", () => scan().catch(failed("setup-out")));

// --- catalog -------------------------------------------------------------------------------

function pickable(list, items, label, onPick) {
  list.replaceChildren(...items.map((i) => {
    const b = el("button", { type: "button", text: label(i) });
    b.addEventListener("click", () => {
      for (const o of list.querySelectorAll("button")) o.classList.remove("on");
      b.classList.add("on");
      onPick(i);
    });
    return el("li", null, b);
  }));
}

async function loadDatasets() {
  const c = store.get("connection");
  if (!c) return;
  const ds = (await get(`/v1/connections/${c}/datasets`).catch(() => ({ datasets: [] }))).datasets;
  $("tables").replaceChildren();
  $("columns").replaceChildren();
  pickable($("datasets"), ds, (d) => d.name, async (d) => {
    const ts = (await get(`/v1/datasets/${d.id}/tables`)).tables;
    pickable($("tables"), ts, (t) => `${t.name}${t.row_count != null ? " · " + fmt(t.row_count) + " rows" : ""}`, async (t) => {
      const cols = (await get(`/v1/tables/${t.id}/columns`)).columns;
      $("columns").replaceChildren(
        el("tr", null, el("th", { text: "column" }), el("th", { text: "type" }), el("th", { text: "description" })),
        ...cols.map((c) => el("tr", null, el("td", { text: c.name }), el("td", { text: c.type || c.data_type || "" }), el("td", { text: c.description || "" }))));
    });
  });
}

// --- runs: chat and generate, live and resumed ---------------------------------------------

function logLine(log, cls, text) {
  const line = el("div", { class: "ev " + cls, text });
  log.append(line);
  log.scrollTop = log.scrollHeight;
  return line;
}

// One run's events into its log; the same for the live stream and for a replay.
function runHandler(kind) {
  const log = $(kind === "chat" ? "chat-log" : "gen-log");
  let answer = null;
  return (event, data, id) => {
    window.bridgeConsole.events.push({ kind, event, id });
    const saved = store.run;
    if (saved && id) { saved.last = id; store.run = saved; }
    if (event === "run") {
      store.run = { kind, session: data.session_id, run: data.run_id, token: data.replay_token, last: id };
      if (kind === "generate") store.set("gen-session", data.session_id);
      logLine(log, "meta", `run ${data.run_id}`);
      $("gen-status").textContent = kind === "generate" ? "Running…" : $("gen-status").textContent;
    } else if (event === "token") {
      if (!answer) answer = logLine(log, "answer", "");
      answer.textContent += data.text;
    } else if (event === "tool_call") {
      answer = null;
      logLine(log, "call", `→ ${data.tool}(${JSON.stringify(data.args)})`);
    } else if (event === "tool_result") {
      const text = JSON.stringify(data.result);
      logLine(log, data.is_error ? "error" : "result", `← ${data.tool}${data.cached ? " (cached)" : ""}: ${text.length > 400 ? text.slice(0, 400) + "…" : text}`);
    } else if (event === "cost_update") {
      const cost = `${data.tokens} tokens, $${Number(data.cost_usd).toFixed(4)}${data.cost_known ? "" : " (unpriced model)"}`;
      if (kind === "generate") $("gen-cost").textContent = cost;
      logLine(log, "meta", "cost: " + cost);
    } else if (event === "dashboard_created") {
      logLine(log, "created", `dashboard ${data.slug} v${data.version}`);
      document.body.dataset.created = data.slug;
      openDashboard(data.slug, true);
    } else if (event === "complete" || event === "error") {
      if (saved) sessionCost(kind, saved.session);
      store.run = null;
      logLine(log, event === "error" ? "error" : "meta", event === "error" ? `error: ${data.message || data.code || JSON.stringify(data)}` : "complete");
      if (kind === "generate") $("gen-status").textContent = event === "complete" ? "Done." : "Failed.";
      document.body.dataset.run = event;
    }
  };
}

// The session's totals as Bridge keeps them (every model call of every run in it).
async function sessionCost(kind, session) {
  try {
    const s = await get(`/v1/chat/sessions/${session}`);
    const lower = s.unpriced_calls > 0 ? " (at least: some calls are unpriced)" : "";
    $(kind === "chat" ? "chat-cost" : "gen-cost").textContent =
      `${s.total_tokens} tokens, $${Number(s.total_cost_usd).toFixed(6)}${lower} · ${s.provider}/${s.model}`;
  } catch { /* the run's own cost_update stays shown */ }
}

$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const msg = $("chat-msg").value;
  $("chat-msg").value = "";
  const log = $("chat-log");
  logLine(log, "user", msg);
  try {
    let session = store.get("chat-session");
    if (!session) {
      const s = await post("/v1/chat/sessions", { team_id: store.get("team"), connection_id: store.get("connection") });
      session = s.id;
      store.set("chat-session", session);
    }
    await stream(`/v1/chat/sessions/${session}/stream`, { message: msg }, runHandler("chat"));
  } catch (err) { logLine(log, "error", err.message); }
});

$("gen-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { connection_id: store.get("connection"), prompt: $("gen-prompt").value };
  const session = store.get("gen-session");
  if (session) body.session_id = session;
  document.body.dataset.run = "running";
  try {
    await stream("/v1/dashboards/generate", body, runHandler("generate"));
  } catch (err) {
    logLine($("gen-log"), "error", err.message);
    document.body.dataset.run = "error";
  }
});

// A run this tab started and a reload interrupted: replayed from its start through
// EventSource with its replay token, then followed live to its end.
function resume() {
  const run = store.run;
  if (!run) return;
  tab(run.kind === "chat" ? "chat" : "generate");
  const log = $(run.kind === "chat" ? "chat-log" : "gen-log");
  logLine(log, "meta", `resuming run ${run.run} (after a reload)`);
  document.body.dataset.resumed = run.run;
  document.body.dataset.run = "running";
  replay(run, runHandler(run.kind));
}

// --- dashboards ----------------------------------------------------------------------------

async function loadDashboards() {
  const team = store.get("team");
  if (!team) return;
  state.dashboards = (await get(`/v1/teams/${team}/dashboards`)).dashboards;
  options($("dash-pick"), state.dashboards, (d) => `${d.title} (${d.slug} v${d.version})`, state.slug, (d) => d.slug);
}
$("dash-refresh").addEventListener("click", () => loadDashboards());

$("new-create").addEventListener("click", async () => {
  try {
    const r = await api("POST", `/v1/teams/${store.get("team")}/dashboards`, { raw: $("new-yaml").value, type: "application/yaml" });
    $("new-msg").textContent = `created ${r.body.slug} v${r.body.version}`;
    await openDashboard(r.body.slug);
  } catch (e) {
    const where = (e.problem && e.problem.errors ? e.problem.errors : []).map((x) => x.field + ": " + x.message).join("; ");
    $("new-msg").textContent = e.message + (where ? " — " + where : "");
  }
});
$("dash-pick").addEventListener("change", () => openDashboard($("dash-pick").value));

function paramInputs(spec) {
  const form = $("params");
  form.replaceChildren();
  for (const p of spec.parameters || []) {
    const id = "param-" + p.id;
    let input;
    if (p.allowed) {
      input = el("select", { id, name: p.id }, ...p.allowed.map((v) => el("option", { value: String(v), text: String(v) })));
    } else {
      input = el("input", { id, name: p.id, type: p.type === "date" ? "date" : p.type === "number" || p.type === "integer" ? "number" : "text" });
    }
    if (p.default != null) input.value = String(p.default);
    input.addEventListener("change", () => loadData());
    form.append(el("label", null, (p.label || p.id) + " ", input));
  }
}

async function loadData() {
  const q = new URLSearchParams(new FormData($("params"))).toString();
  const want = Number(String(state.version).replace(/"/g, ""));
  let data;
  // Right after a new version is written the data route may still answer the one before
  // (its dashboard is cached for a moment): asked again until it serves this version.
  for (let i = 0; i < 20; i++) {
    data = await get(`/v1/dashboards/${state.slug}/data${q ? "?" + q : ""}`);
    if (!want || data.version >= want) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  render($("grid"), state.spec, data);
  document.body.dataset.rendered = state.slug;
}

async function openDashboard(slug, fromRun) {
  state.slug = slug;
  tab("dashboards");
  await loadDashboards().catch(() => {});
  $("dash-pick").value = slug;
  const r = await api("GET", `/v1/dashboards/${slug}/yaml`);
  state.version = r.headers.get("etag");
  $("yaml").value = r.body;
  $("yaml-msg").textContent = "";
  showProblems([]);
  try {
    state.spec = window.jsyaml.load(r.body);
  } catch (e) {
    $("grid").replaceChildren(el("p", { class: "error", text: "The YAML does not parse: " + e.message }));
    return;
  }
  $("dash-title").textContent = `${state.spec.title} (v${state.version.replace(/"/g, "")})`;
  paramInputs(state.spec);
  await loadData().catch((e) => $("grid").replaceChildren(el("p", { class: "error", text: e.message })));
  loadVersions();
  if (fromRun) $("grid").scrollIntoView();
}

async function loadVersions() {
  const vs = (await get(`/v1/dashboards/${state.slug}/versions`)).versions;
  $("versions").replaceChildren(...vs.map((v) => {
    const b = el("button", { type: "button", text: `v${v.version} · ${v.author_email || "?"} · ${new Date(v.created_at).toLocaleString()} · ${v.size_bytes} B` });
    b.addEventListener("click", async () => {
      const r = await api("GET", `/v1/dashboards/${state.slug}/yaml?version=${v.version}`);
      $("yaml").value = r.body;
      $("yaml-msg").textContent = `showing v${v.version}; saving writes it as a new version`;
    });
    return el("li", null, b);
  }));
}

// The problems beside the YAML, each naming its line; a click selects that line.
function showProblems(problems) {
  $("problems").replaceChildren(...problems.map((p) => {
    const b = el("button", { type: "button", class: "problem", text: `line ${p.line ?? "?"}${p.column ? ":" + p.column : ""} ${p.path ? "(" + p.path + ") " : ""}${p.message}` });
    b.addEventListener("click", () => selectLine(p.line));
    return el("li", null, b);
  }));
}

function selectLine(line) {
  const ta = $("yaml");
  const lines = ta.value.split("\n");
  const start = lines.slice(0, Math.max(0, (line || 1) - 1)).reduce((n, l) => n + l.length + 1, 0);
  ta.focus();
  ta.setSelectionRange(start, start + (lines[(line || 1) - 1] || "").length);
}

async function checkYaml() {
  const v = await post("/v1/dashboards/validate", { yaml: $("yaml").value });
  showProblems([...(v.errors || []), ...(v.warnings || []).map((w) => Object.assign({}, w, { message: "warning: " + w.message }))]);
  $("yaml-msg").textContent = v.valid ? "valid" : `${v.errors.length} problem(s)`;
  return v;
}
$("yaml-check").addEventListener("click", () => checkYaml().catch((e) => ($("yaml-msg").textContent = e.message)));

$("yaml-save").addEventListener("click", async () => {
  try {
    const v = await checkYaml();
    if (!v.valid) return;
    const r = await api("PUT", `/v1/dashboards/${state.slug}/yaml`, { raw: $("yaml").value, type: "application/yaml" }, { "If-Match": state.version });
    await openDashboard(state.slug);
    $("yaml-msg").textContent = `saved as v${r.body.version}`;
  } catch (e) {
    $("yaml-msg").textContent = e.status === 412 ? "Someone saved a newer version: reload it first (412)." : e.message;
  }
});

// --- tabs and start ------------------------------------------------------------------------

function tab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + name;
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => tab(b.dataset.tab));

async function start() {
  if (store.token && (await signedIn())) resume();
  document.body.dataset.ready = "1";
}
if (document.readyState === "complete") start();
else window.addEventListener("load", start);
