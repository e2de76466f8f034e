//! A real browser resuming a run: headless Chromium opens the replay route with a real
//! `EventSource`, a proxy in the test cuts its first connection after a few events, and the
//! browser reconnects by itself with `Last-Event-ID`, receiving every event of the run exactly
//! once, up to `complete`.
//!
//! The model is a stub (OpenAI-compatible) that streams a word every 100 ms once the browser
//! has connected, so the cut falls in the middle of a live run. The page, the proxy and the
//! replay route share one origin (the proxy's), so no CORS is involved. `--dump-dom` returns
//! once the page's load event has fired: an image on the page (`/hold`) is only answered once
//! the page reported its records (`/release`), so the DOM is dumped with them in it.
//!
//! Chromium (Debian's `chromium`, or `BRIDGE_CHROMIUM`) missing: a loud skip, or a failure
//! under `BRIDGE_REQUIRE_BROWSER=1` (set by `scripts/test` once it installed it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, response::Response, routing::post};
use futures::StreamExt;
use serde_json::{Value, json};
use testkit::browser::{chromium, unavailable};
use testkit::{TempDir, TestApp, TestWarehouse};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// The words the stub streams once the browser is there, 100 ms apart.
const WORDS: usize = 40;
/// The events the proxy lets through on the browser's first connection before cutting it.
const CUT_AFTER: usize = 5;

fn routes() -> utoipa_axum::router::OpenApiRouter<services::AppState> {
    teams::router()
        .merge(connections::router())
        .merge(catalog::router())
        .merge(chat::router())
}

#[allow(clippy::print_stderr)]
fn note(s: &str) {
    eprintln!("browser test: {s}");
}

// --- the model ---------------------------------------------------------------------------

/// Serves `/v1/chat/completions`: "Hello " at once, then (once `gate` opens, or after 20 s)
/// [`WORDS`] words 100 ms apart, a `stop` chunk and `[DONE]`.
async fn stub(gate: watch::Receiver<bool>) -> String {
    let answer = move || {
        let gate = gate.clone();
        async move {
            let chunk = |delta: Value, finish: Value| {
                Ok::<_, std::io::Error>(format!(
                    "data: {}\n\n",
                    json!({"id": "c", "object": "chat.completion.chunk", "model": "stub",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                ))
            };
            let body = futures::stream::unfold((0usize, gate), move |(i, mut gate)| async move {
                let item = match i {
                    0 => chunk(
                        json!({"role": "assistant", "content": "Hello "}),
                        Value::Null,
                    ),
                    n if n <= WORDS => {
                        if n == 1 {
                            let opened = tokio::time::timeout(
                                Duration::from_secs(20),
                                gate.wait_for(|o| *o),
                            )
                            .await;
                            drop(opened);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        chunk(json!({"content": format!("w{n} ")}), Value::Null)
                    }
                    n if n == WORDS + 1 => chunk(json!({}), json!("stop")),
                    n if n == WORDS + 2 => Ok("data: [DONE]\n\n".to_owned()),
                    _ => return None,
                };
                Some((item, (i + 1, gate)))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(body))
                .unwrap()
        }
    };
    let app = Router::new().route("/v1/chat/completions", post(answer));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

// --- server-sent events, as the test reads them --------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Ev {
    id: String,
    event: String,
    /// As sent: data lines joined with `\n` (what `MessageEvent.data` holds).
    data: String,
}

/// One event block (without its blank line); `None` for a comment or a `retry:` alone.
fn parse_block(block: &str) -> Option<Ev> {
    let (mut id, mut event, mut data) = (String::new(), "message".to_owned(), Vec::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.to_owned(),
            "event" => event = value.to_owned(),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    (!data.is_empty()).then(|| Ev {
        id,
        event,
        data: data.join("\n"),
    })
}

/// Splits an SSE byte stream into events as they come.
struct SseReader {
    bytes: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

impl SseReader {
    fn new(r: reqwest::Response) -> Self {
        Self {
            bytes: r.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Option<Ev> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(e) = parse_block(&block) {
                    return Some(e);
                }
            }
            match self.bytes.next().await {
                Some(Ok(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    async fn rest(mut self) -> Vec<Ev> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

// --- the proxy: the page, and the browser's connections to the app -------------------------

/// One browser request for the app, as the proxy forwarded it.
#[derive(Debug, Clone)]
struct Forwarded {
    /// Since the proxy started.
    at: Duration,
    path: String,
    last_event_id: Option<String>,
    status: Option<u16>,
    /// For the connection the proxy cut: the id of the last event it let through.
    cut_after_id: Option<String>,
    cut_at: Option<Duration>,
}

struct Shared {
    app: SocketAddr,
    page: String,
    started: Instant,
    log: Mutex<Vec<Forwarded>>,
    /// Opens when the browser first asks for the run's events (the model then streams).
    browser_connected: watch::Sender<bool>,
    /// Opens when the page reported its records (its held image is then answered).
    released: watch::Sender<bool>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The proxy on a free port: the page and its helpers itself, `/v1/…` forwarded to `app`.
async fn proxy(
    app: &str,
    page: String,
    browser_connected: watch::Sender<bool>,
) -> (SocketAddr, Arc<Shared>) {
    let app: SocketAddr = app.trim_start_matches("http://").parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared {
        app,
        page,
        started: Instant::now(),
        log: Mutex::new(Vec::new()),
        browser_connected,
        released: watch::channel(false).0,
    });
    let s = shared.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(client, &s).await {
                    note(&format!("proxy connection: {e}"));
                }
            });
        }
    });
    (addr, shared)
}

async fn respond(
    mut client: TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body).await?;
    client.shutdown().await
}

/// One connection from the browser (one request: every answer says `Connection: close`).
async fn connection(mut client: TcpStream, s: &Shared) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            break end;
        }
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("request head too long"));
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    match path.as_str() {
        "/test-page" => {
            return respond(
                client,
                "200 OK",
                "text/html; charset=utf-8",
                s.page.as_bytes(),
            )
            .await;
        }
        "/release" => {
            s.released.send_replace(true);
            return respond(client, "204 No Content", "text/plain", b"").await;
        }
        "/hold" => {
            let mut released = s.released.subscribe();
            let waited = tokio::time::timeout(Duration::from_secs(60), released.wait_for(|r| *r))
                .await
                .is_ok();
            if !waited {
                note("the page did not report within 60 s; letting it load");
            }
            return respond(client, "204 No Content", "image/gif", b"").await;
        }
        p if !p.starts_with("/v1/") => {
            return respond(client, "404 Not Found", "text/plain", b"").await;
        }
        _ => {}
    }
    let last_event_id = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("last-event-id"))
        .map(|(_, v)| v.clone());
    let index = {
        let mut log = s.log.lock().unwrap();
        log.push(Forwarded {
            at: s.started.elapsed(),
            path,
            last_event_id,
            status: None,
            cut_after_id: None,
            cut_at: None,
        });
        log.len() - 1
    };
    let cut = index == 0;
    if cut {
        s.browser_connected.send_replace(true);
    }
    let mut forwarded = format!("{request_line}\r\n");
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("connection") {
            forwarded.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(s.app).await?;
    upstream.write_all(forwarded.as_bytes()).await?;
    upstream.write_all(&head[end + 4..]).await?;

    // The response: its head read for the status; on the cut connection, its body scanned
    // for event blocks (a blank line ends each), cut right after the CUT_AFTER-th.
    let mut seen = Vec::new();
    let (mut body_start, mut scan, mut blocks, mut last_id) = (None, 0, 0, None);
    loop {
        let n = upstream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let old = seen.len();
        if body_start.is_none() || cut {
            seen.extend_from_slice(&buf[..n]);
        }
        if body_start.is_none()
            && let Some(p) = find(&seen, b"\r\n\r\n")
        {
            body_start = Some(p + 4);
            scan = p + 4;
            let status = String::from_utf8_lossy(&seen[..p])
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok());
            s.log.lock().unwrap()[index].status = status;
        }
        if !cut {
            client.write_all(&buf[..n]).await?;
            continue;
        }
        let mut cut_at = None;
        if body_start.is_some() {
            while let Some(p) = find(&seen[scan..], b"\n\n") {
                let end = scan + p + 2;
                if let Some(id) = block_id(&seen[scan..end]) {
                    last_id = Some(id);
                }
                scan = end;
                blocks += 1;
                if blocks == CUT_AFTER {
                    // With the CRLF that closes its chunk when it came with it.
                    cut_at = Some(if seen[end..].starts_with(b"\r\n") {
                        end + 2
                    } else {
                        end
                    });
                    break;
                }
            }
        }
        let Some(end) = cut_at else {
            client.write_all(&buf[..n]).await?;
            continue;
        };
        client.write_all(&seen[old..end]).await?;
        client.flush().await?;
        // Cut: the browser sees its connection end in the middle of the response.
        client.shutdown().await?;
        let mut log = s.log.lock().unwrap();
        log[index].cut_after_id = last_id;
        log[index].cut_at = Some(s.started.elapsed());
        return Ok(());
    }
    client.shutdown().await
}

/// The `id:` of an event block as it crossed the wire (chunk sizes may sit among its lines).
fn block_id(block: &[u8]) -> Option<String> {
    String::from_utf8_lossy(block)
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().to_owned())
}

// --- the page ------------------------------------------------------------------------------

const EVENT_TYPES: [&str; 7] = [
    "run",
    "token",
    "tool_call",
    "tool_result",
    "cost_update",
    "complete",
    "error",
];

/// The page: an EventSource on the run's replay route, every event type listened to; at the
/// terminal event it closes it, writes what it got into `<pre id="out">` and asks `/release`
/// (which answers the image `/hold`, so that the page's load ends and the DOM is dumped).
fn page(session: &str, run: &str, token: &str) -> String {
    let cfg = json!({
        "session": session,
        "run": run,
        "token": token,
        "types": EVENT_TYPES,
        "timeout_ms": 40_000,
    });
    r#"<!doctype html>
<html><head><meta charset="utf-8"><title>replay</title></head><body>
<pre id="out"></pre>
<script>
const cfg = CFG;
const url = "/v1/chat/sessions/" + cfg.session + "/runs/" + cfg.run + "/events?token=" + encodeURIComponent(cfg.token);
const records = [];
const errors = [];
let opens = 0;
let finished = false;
const lastId = () => (records.length ? records[records.length - 1].id : null);
const es = new EventSource(url);
es.onopen = () => { opens += 1; };
es.onerror = () => {
  errors.push({ after: lastId(), ready_state: es.readyState, at_ms: Math.round(performance.now()) });
};
function finish(why) {
  if (finished) return;
  finished = true;
  es.close();
  document.getElementById("out").textContent = JSON.stringify({ why, records, errors, opens });
  fetch("/release").catch(() => {});
}
for (const type of cfg.types) {
  es.addEventListener(type, (e) => {
    if (!(e instanceof MessageEvent)) return; // the connection's own `error`, not the run's
    records.push({ id: e.lastEventId, type: e.type, data: e.data });
    if (type === "complete" || type === "error") finish("terminal");
  });
}
setTimeout(() => finish("timeout"), cfg.timeout_ms);
</script>
<img src="/hold" alt="">
</body></html>
"#
    .replace("CFG", &cfg.to_string())
}

/// The JSON the page wrote into `<pre id="out">`, from the dumped DOM.
fn page_report(dom: &str) -> Option<Value> {
    let start = dom.find(r#"<pre id="out">"#)? + r#"<pre id="out">"#.len();
    let end = start + dom[start..].find("</pre>")?;
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    serde_json::from_str(&text).ok()
}

// --- the test ------------------------------------------------------------------------------

#[tokio::test]
async fn a_browser_cut_off_mid_run_reconnects_with_last_event_id_and_gets_every_event_once() {
    let began = Instant::now();
    let version = match std::process::Command::new(chromium())
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => {
            return unavailable(&format!(
                "`{} --version` failed: {}",
                chromium(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return unavailable(&format!("`{}`: {e}", chromium())),
    };
    note(&version);

    let (browser_connected, gate) = watch::channel(false);
    let upstream = stub(gate).await;
    let app = TestApp::spawn_with(
        routes(),
        &[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &upstream),
            ("OPENAI_MODEL", "stub-model"),
        ],
    )
    .await;
    let wh = TestWarehouse::demo().await;
    let ws = app
        .workspace("postgres", json!({ "url": wh.reader_url }))
        .await;
    let base = app.serve().await;
    let http = reqwest::Client::new();
    let s = app
        .post("/v1/chat/sessions")
        .bearer(&ws.token)
        .json(&json!({"team_id": ws.team, "connection_id": ws.connection}))
        .send()
        .await;
    s.assert_status(201);
    let session = s.json()["id"].as_str().unwrap().to_owned();

    // The run: its first event names it; the rest of the POST stream is read to its end in
    // the background (closing it would stop the run).
    let r = http
        .post(format!("{base}/v1/chat/sessions/{session}/stream"))
        .bearer_auth(&ws.token)
        .json(&json!({ "message": "Talk to me" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut live = SseReader::new(r);
    let first = live.next().await.expect("the `run` event");
    assert_eq!(first.event, "run", "{first:?}");
    let run: Value = serde_json::from_str(&first.data).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let token = run["replay_token"].as_str().unwrap().to_owned();
    let run_started = Instant::now();
    let live = tokio::spawn(async move {
        let rest = live.rest().await;
        (rest, run_started.elapsed())
    });

    let (addr, proxy) = proxy(&base, page(&session, &run_id, &token), browser_connected).await;
    let profile = TempDir::new("bridge-chromium");
    let browser_began = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("--dump-dom")
            .arg(format!("http://{addr}/test-page"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("Chromium finished within 90 s")
    .expect("Chromium ran");
    let browser_took = browser_began.elapsed();
    let dom = String::from_utf8_lossy(&out.stdout);
    let report = page_report(&dom).unwrap_or_else(|| {
        panic!(
            "no report in the page ({}); its DOM:\n{dom}\nChromium's stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let (post_rest, run_took) = live.await.unwrap();
    let forwarded = proxy.log.lock().unwrap().clone();
    note(&format!("forwarded: {forwarded:?}"));
    note(&format!(
        "page: why={} opens={} errors={}",
        report["why"], report["opens"], report["errors"]
    ));

    // What the browser got.
    assert_eq!(report["why"], "terminal", "{report}");
    let got: Vec<Ev> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Ev {
            id: r["id"].as_str().unwrap().to_owned(),
            event: r["type"].as_str().unwrap().to_owned(),
            data: r["data"].as_str().unwrap().to_owned(),
        })
        .collect();
    let ids: Vec<String> = got.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<String> = (1..=got.len()).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected, "ids 1..=n, no gap, no duplicate");
    let terminals: Vec<&Ev> = got
        .iter()
        .filter(|e| e.event == "complete" || e.event == "error")
        .collect();
    assert_eq!(terminals.len(), 1, "exactly one terminal event: {got:?}");
    assert_eq!(got.last().unwrap().event, "complete", "{got:?}");
    let text: String = got
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| {
            let d: Value = serde_json::from_str(&e.data).unwrap();
            d["text"].as_str().unwrap().to_owned()
        })
        .collect();
    let words: String = (1..=WORDS).map(|n| format!(" w{n}")).collect();
    assert_eq!(text, format!("Hello{words} "), "the whole answer, once");

    // The cut, and the reconnection the browser made by itself.
    assert!(
        forwarded.len() >= 2,
        "the browser reconnected: {forwarded:?}"
    );
    assert!(
        forwarded.iter().all(|f| f.path.contains(&run_id)),
        "{forwarded:?}"
    );
    let cut = &forwarded[0];
    assert_eq!(
        cut.last_event_id, None,
        "the first connection starts afresh"
    );
    let cut_id = cut
        .cut_after_id
        .clone()
        .expect("the first connection was cut");
    assert_eq!(cut_id, CUT_AFTER.to_string());
    let again = &forwarded[1];
    assert_eq!(
        again.last_event_id.as_deref(),
        Some(cut_id.as_str()),
        "the reconnection carries Last-Event-ID: the last event before the cut"
    );
    assert_eq!(again.status, Some(200));
    let errors = report["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "the page saw its connection fail");
    assert_eq!(
        errors[0]["after"],
        json!(cut_id),
        "the page had every event up to the cut"
    );
    assert!(report["opens"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        (cut_id.parse::<usize>().unwrap()) < got.len(),
        "cut in the middle of the run"
    );

    // The same events, as the server kept them, and as the POST stream relayed them.
    let r = http
        .get(format!(
            "{base}/v1/chat/sessions/{session}/runs/{run_id}/events?after=0"
        ))
        .bearer_auth(&ws.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kept = SseReader::new(r).rest().await;
    assert_eq!(
        got, kept,
        "the browser's events are the run's, exactly once"
    );
    let mut relayed = vec![first];
    relayed.extend(post_rest);
    assert_eq!(relayed, kept, "the POST stream relayed the same");

    let cut_at = cut.cut_at.unwrap();
    note(&format!(
        "{} events; {} browser connections; cut after id {cut_id} at {:.2} s; reconnected \
         with Last-Event-ID {:?} at {:.2} s ({:.2} s later); run took {:.2} s; Chromium {:.2} s; \
         test {:.2} s",
        got.len(),
        forwarded.len(),
        cut_at.as_secs_f64(),
        again.last_event_id,
        again.at.as_secs_f64(),
        (again.at - cut_at).as_secs_f64(),
        run_took.as_secs_f64(),
        browser_took.as_secs_f64(),
        began.elapsed().as_secs_f64(),
    ));
}
