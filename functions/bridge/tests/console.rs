//! The developer console as a person uses it, in headless Chromium against `bridge serve`
//! itself: sign in with a dev token, create a team, connect the demo warehouse in one click
//! (validated and scanned, with progress), browse the catalog, chat, generate a dashboard
//! with the `builtin` provider and see its grid drawn with data, find a YAML problem at its
//! line, save a new version with If-Match, then reload in the middle of a run and see the run
//! picked up again through EventSource. Screenshots go to `target/console-screenshots/`.
//!
//! Chromium is driven over the DevTools protocol (a WebSocket; the few lines of client are
//! below, so no crate is added). Chromium (Debian's `chromium`, or `BRIDGE_CHROMIUM`)
//! missing: a loud skip, or a failure under `BRIDGE_REQUIRE_BROWSER=1`.
//!
//! Also here, without a browser: the console is off in production unless `CONSOLE_ENABLED`
//! turns it on, its dev-token route refuses outside development, and nothing it calls
//! answers without a token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{Value, json};
use testkit::browser::{chromium, unavailable};
use testkit::{TempDir, TestDb};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

#[allow(clippy::print_stderr)]
fn note(s: &str) {
    eprintln!("console test: {s}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// --- bridge serve --------------------------------------------------------------------------

struct Bridge {
    base: String,
    child: Child,
    _dir: TempDir,
    _db: TestDb,
}

/// The database the console test's demo warehouse is loaded into (dropped at its end).
const DEMO_DATABASE: &str = "bridge_console_test_demo";

/// `bridge serve` on a fresh database with `vars` (a clean environment otherwise: no LLM key,
/// so the `builtin` provider answers).
async fn serve(vars: &[(&str, &str)]) -> Bridge {
    let db = TestDb::empty().await;
    let dir = TempDir::new("bridge-console");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bridge"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BRIDGE_DATA_DIR", &dir.0)
        .env("DATABASE_URL", &db.url)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let child = cmd
        .args(["serve", "--port", &port.to_string()])
        .args(["--demo-database", DEMO_DATABASE])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.join("serve.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut b = Bridge {
        base,
        child,
        _dir: dir,
        _db: db,
    };
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{}/ready", b.base)).await
            && r.status() == 200
        {
            return b;
        }
        if let Ok(Some(status)) = b.child.try_wait() {
            let log = std::fs::read_to_string(b._dir.0.join("serve.log")).unwrap_or_default();
            panic!("bridge serve exited ({status}): {log}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "bridge serve never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- the DevTools protocol, over a minimal WebSocket client ---------------------------------

struct Cdp {
    ws: TcpStream,
    next: u64,
}

impl Cdp {
    async fn connect(ws_url: &str) -> Self {
        let rest = ws_url.strip_prefix("ws://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut ws = TcpStream::connect(host).await.unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode(rand_bytes());
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            ws.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Self { ws, next: 0 }
    }

    async fn send_frame(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = rand_bytes();
        frame.extend_from_slice(&mask[..4]);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&frame).await.unwrap();
    }

    /// One whole message (continuation frames joined; pings and pongs skipped).
    async fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.ws.read_exact(&mut h).await.unwrap();
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.ws.read_exact(&mut b).await.unwrap();
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.ws.read_exact(&mut b).await.unwrap();
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.ws.read_exact(&mut payload).await.unwrap();
            match opcode {
                0x8 => panic!("the DevTools connection closed"),
                0x9 | 0xA => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.send_frame(&json!({"id": id, "method": method, "params": params}).to_string())
            .await;
        loop {
            let m: Value = serde_json::from_str(&self.read_message().await).unwrap();
            if m["id"] == json!(id) {
                assert!(m["error"].is_null(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    /// `expression`'s value in the page (promises awaited).
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            r["exceptionDetails"].is_null(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page.
    async fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(expression).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if started.elapsed() > timeout {
                let log = self.eval("document.body.innerText.slice(0, 4000)").await;
                self.screenshot(&format!("failed-{}", what.replace(' ', "-")))
                    .await;
                panic!("timed out waiting for {what} ({expression}); the page:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&mut self, name: &str) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let path = screenshots_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        note(&format!("screenshot {}", path.display()));
    }
}

fn rand_bytes() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

/// Headless Chromium with the DevTools protocol on a free port; answers the process and a
/// client on its first page.
async fn browser(profile: &TempDir) -> Option<(Child, Cdp)> {
    let mut child = match Command::new(chromium())
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
            "--window-size=1400,1000",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            unavailable(&format!("`{}`: {e}", chromium()));
            return None;
        }
    };
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ws = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(ws) = ws else {
        unavailable("Chromium did not open its DevTools port");
        return None;
    };
    // Keep draining Chromium's stderr so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = ws
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let targets: Value = reqwest::get(format!("http://{http}/json/list"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page target");
    let mut cdp = Cdp::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).await;
    cdp.call("Page.enable", json!({})).await;
    cdp.call("Runtime.enable", json!({})).await;
    Some((child, cdp))
}

async fn open(cdp: &mut Cdp, url: &str) {
    cdp.call("Page.navigate", json!({ "url": url })).await;
    cdp.wait_for(
        "the console to start",
        "document.readyState === 'complete' && document.body && document.body.dataset.ready === '1'",
        Duration::from_secs(30),
    )
    .await;
}

// --- the test ------------------------------------------------------------------------------

const GRID_DRAWN: &str = "(() => { const t = [...document.querySelectorAll('#grid .tile')]; \
    return t.length > 0 && t.every(e => e.dataset.state) ? t.length : 0; })()";

/// Every tile of the grid drew without an error.
const GRID_OK: &str =
    "[...document.querySelectorAll('#grid .tile')].every(e => e.dataset.state === 'ok')";

#[tokio::test]
async fn a_person_goes_from_sign_in_to_a_generated_dashboard_and_a_resumed_run_in_the_console() {
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
    let bridge = serve(&[("BRIDGE_ENV", "development")]).await;
    let profile = TempDir::new("bridge-console-chromium");
    let Some((_chromium, mut cdp)) = browser(&profile).await else {
        return;
    };
    let long = Duration::from_secs(120);

    // Open the console and sign in with a dev token.
    let opened = Instant::now();
    open(&mut cdp, &format!("{}/console", bridge.base)).await;
    cdp.eval(
        "document.getElementById('dev-email').value = 'ada@example.com'; \
         document.getElementById('dev-form').requestSubmit(); true",
    )
    .await;
    cdp.wait_for(
        "sign in",
        "!document.getElementById('app').hidden && document.getElementById('who').textContent",
        long,
    )
    .await;
    let who = cdp.eval("document.getElementById('who').textContent").await;
    assert_eq!(who, "ada@example.com");

    // A team, then the demo warehouse in one click: connected, validated, scanned.
    cdp.eval(
        "document.getElementById('team-name').value = 'Console team'; \
         document.getElementById('team-form').requestSubmit(); true",
    )
    .await;
    cdp.wait_for(
        "the team",
        "document.getElementById('team-pick').options.length",
        long,
    )
    .await;
    cdp.eval("document.getElementById('demo-connect').click(); true")
        .await;
    let scan = cdp
        .wait_for("the scan", "document.body.dataset.scan", long)
        .await;
    assert_eq!(scan, "succeeded");
    let progress = cdp
        .eval("[document.getElementById('scan-progress').value, document.getElementById('scan-progress').max]")
        .await;
    assert_eq!(
        progress[0], progress[1],
        "the progress bar is full: {progress}"
    );
    let setup = cdp
        .eval("document.getElementById('setup-out').textContent")
        .await;
    assert!(setup.as_str().unwrap().contains("succeeded"), "{setup}");
    cdp.screenshot("1-connected-and-scanned").await;

    // The catalog: datasets, tables, columns.
    cdp.eval(
        "document.querySelector('[data-tab=catalog]').click(); \
         [...document.querySelectorAll('#datasets button')].find(b => b.textContent === 'analytics').click(); true",
    )
    .await;
    cdp.wait_for(
        "the tables",
        "[...document.querySelectorAll('#tables button')].find(b => b.textContent.startsWith('orders'))",
        long,
    )
    .await;
    cdp.eval(
        "[...document.querySelectorAll('#tables button')].find(b => b.textContent.startsWith('orders')).click(); true",
    )
    .await;
    let columns = cdp
        .wait_for(
            "the columns",
            "[...document.querySelectorAll('#columns td:first-child')].map(td => td.textContent).join(',')",
            long,
        )
        .await;
    assert!(columns.as_str().unwrap().contains("order_id"), "{columns}");
    cdp.screenshot("2-catalog").await;

    // Chat: tokens, tool calls and their results stream in.
    let chat_began = Instant::now();
    cdp.eval(
        "document.querySelector('[data-tab=chat]').click(); \
         document.getElementById('chat-msg').value = 'What columns does analytics.orders have?'; \
         document.getElementById('chat-form').requestSubmit(); true",
    )
    .await;
    cdp.wait_for(
        "the chat run",
        "window.bridgeConsole.events.some(e => e.kind === 'chat' && e.event === 'complete')",
        long,
    )
    .await;
    let chat = cdp
        .eval("window.bridgeConsole.events.filter(e => e.kind === 'chat').map(e => e.event)")
        .await;
    for kind in ["run", "tool_call", "tool_result", "token", "complete"] {
        assert!(
            chat.as_array().unwrap().contains(&json!(kind)),
            "{kind}: {chat}"
        );
    }
    let answer = cdp
        .eval("document.querySelector('#chat-log .answer').textContent")
        .await;
    assert!(answer.as_str().unwrap().contains("order_id"), "{answer}");
    let chat_cost = cdp
        .wait_for(
            "the chat session's cost",
            "document.getElementById('chat-cost').textContent.includes('builtin') && document.getElementById('chat-cost').textContent",
            long,
        )
        .await;
    assert!(
        chat_cost.as_str().unwrap().contains("tokens"),
        "{chat_cost}"
    );
    cdp.screenshot("3-chat").await;
    let chat_took = chat_began.elapsed();

    // Generate: the dashboard appears on `dashboard_created`, drawn on its grid with data.
    let generate_began = Instant::now();
    cdp.eval(
        "document.querySelector('[data-tab=generate]').click(); \
         document.getElementById('gen-prompt').value = 'A dashboard of completed revenue by region'; \
         document.getElementById('gen-form').requestSubmit(); true",
    )
    .await;
    let slug = cdp
        .wait_for("dashboard_created", "document.body.dataset.created", long)
        .await;
    let tiles = cdp.wait_for("the grid", GRID_DRAWN, long).await;
    let to_dashboard = opened.elapsed();
    let grid = cdp
        .eval(
            "[...document.querySelectorAll('#grid .tile')].map(t => ({id: t.dataset.tile, type: t.dataset.type, \
              state: t.dataset.state, rows: t.dataset.rows ? +t.dataset.rows : null, \
              drawn: !!t.querySelector('.kpi, canvas, svg, table, .md'), \
              text: t.innerText.slice(0, 80)}))",
        )
        .await;
    note(&format!("dashboard {slug}: {tiles} tiles: {grid}"));
    for t in grid.as_array().unwrap() {
        assert_eq!(t["state"], "ok", "every tile drew without error: {t}");
        assert_eq!(t["drawn"], true, "{t}");
        if t["type"] != "text" {
            assert!(t["rows"].as_u64().unwrap() > 0, "tiles have data: {t}");
        }
    }
    assert!(
        grid.as_array().unwrap().iter().any(|t| t["type"] == "kpi"),
        "{grid}"
    );
    let cost = cdp
        .eval("document.getElementById('gen-cost').textContent")
        .await;
    assert!(cost.as_str().unwrap().contains("tokens"), "{cost}");
    cdp.screenshot("4-generated-dashboard").await;
    // The figures (bench/console.sh takes their median over runs): from opening the console
    // to the generated dashboard drawn, less the chat step this test adds on the way; and
    // from the click on Generate to the grid drawn.
    note(&format!(
        "FIGURE open-to-rendered-dashboard: {:.2} s; generate-to-rendered: {:.2} s",
        (to_dashboard - chat_took).as_secs_f64(),
        (to_dashboard - (generate_began - opened)).as_secs_f64(),
    ));

    // The YAML: a problem at its line, then a new version saved with If-Match.
    let original = cdp.eval("document.getElementById('yaml').value").await;
    let original = original.as_str().unwrap().to_owned();
    cdp.eval(
        "const ta = document.getElementById('yaml'); \
         ta.value = ta.value.replace(/\"?query\"?: ?\"?(\\w+)\"?/, '\"query\": \"no_such_query\"'); \
         document.getElementById('yaml-check').click(); true",
    )
    .await;
    let problem = cdp
        .wait_for(
            "a validation problem",
            "document.querySelector('#problems .problem') && document.querySelector('#problems .problem').textContent",
            long,
        )
        .await;
    let bad_line = original
        .lines()
        .position(|l| l.contains("query: ") || l.contains("\"query\":"))
        .unwrap()
        + 1;
    assert!(
        problem
            .as_str()
            .unwrap()
            .starts_with(&format!("line {bad_line}")),
        "the problem names line {bad_line}: {problem}"
    );
    cdp.screenshot("5-yaml-problem").await;
    cdp.eval(&format!(
        "document.getElementById('yaml').value = {}; document.getElementById('yaml-save').click(); true",
        json!(original.replacen("title: ", "title: Edited ", 1))
    ))
    .await;
    cdp.wait_for(
        "the save",
        "document.querySelectorAll('#versions li').length === 2 && document.getElementById('dash-title').textContent.includes('(v2)')",
        long,
    )
    .await;

    // A dashboard from YAML (the sample, its line trend drawn as an area): the tiles the
    // generated one has not (text, area, pie) drawn with data, and a parameter that refetches.
    let connection = cdp
        .eval("sessionStorage.getItem('bridge.connection')")
        .await;
    let sample = include_str!("../../../samplefiles/dashboards/revenue-overview.yaml")
        .replace(
            "00000000-0000-4000-8000-000000000001",
            connection.as_str().unwrap(),
        )
        .replace(
            "type: line, title: Revenue per day",
            "type: area, title: Revenue per day",
        );
    cdp.eval(&format!(
        "document.getElementById('new-yaml').value = {}; document.getElementById('new-create').click(); true",
        json!(sample)
    ))
    .await;
    cdp.wait_for(
        "the sample dashboard",
        "document.body.dataset.rendered === 'revenue-overview'",
        long,
    )
    .await;
    cdp.wait_for("the sample's grid", GRID_DRAWN, long).await;
    let kinds = cdp
        .eval("[...document.querySelectorAll('#grid .tile')].filter(t => t.dataset.state === 'ok' && t.querySelector('.kpi, canvas, svg path, table td, .md p')).map(t => t.dataset.type).sort().join(',')")
        .await;
    assert_eq!(
        kinds, "area,bar,kpi,kpi,pie,table,text",
        "every tile drawn with data"
    );
    let emea = cdp
        .eval("document.querySelector('[data-tile=revenue] .kpi').textContent")
        .await;
    cdp.eval(
        "document.body.dataset.rendered = ''; const s = document.getElementById('param-region'); \
         s.value = 'APAC'; s.dispatchEvent(new Event('change')); true",
    )
    .await;
    cdp.wait_for(
        "the refetch",
        "document.body.dataset.rendered === 'revenue-overview'",
        long,
    )
    .await;
    let apac = cdp
        .eval("document.querySelector('[data-tile=revenue] .kpi').textContent")
        .await;
    assert_ne!(emea, apac, "the region parameter refetched the data");
    cdp.screenshot("6-sample-dashboard-apac").await;

    // A reload in the middle of a run: the run is picked up again from sessionStorage
    // through the replay route and followed to its end.
    cdp.eval(
        "document.querySelector('[data-tab=generate]').click(); \
         document.getElementById('gen-prompt').value = 'revenue per month too'; \
         document.getElementById('gen-form').requestSubmit(); \
         new Promise(done => { const t = setInterval(() => { \
           if (sessionStorage.getItem('bridge.run')) { clearInterval(t); \
             window.__before = JSON.parse(sessionStorage.getItem('bridge.run')); \
             sessionStorage.setItem('bridge.test.before', JSON.stringify({ run: window.__before.run, \
               events: window.bridgeConsole.events.filter(e => e.kind === 'generate').length })); \
             location.reload(); done(true); } }, 1); })",
    )
    .await;
    cdp.wait_for(
        "the console after the reload",
        "document.readyState === 'complete' && document.body.dataset.ready === '1'",
        long,
    )
    .await;
    let resumed = cdp
        .wait_for("the resumed run", "document.body.dataset.resumed", long)
        .await;
    let before: Value = serde_json::from_str(
        cdp.eval("sessionStorage.getItem('bridge.test.before')")
            .await
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(resumed, before["run"], "the same run: {before}");
    let end = cdp
        .wait_for(
            "the resumed run's end",
            "['complete', 'error'].includes(document.body.dataset.run) && document.body.dataset.run",
            long,
        )
        .await;
    let log = cdp
        .eval("document.getElementById('gen-log').innerText")
        .await;
    assert_eq!(end, "complete", "the run's log: {log}");
    let replayed = cdp
        .eval("window.bridgeConsole.events.map(e => e.event)")
        .await;
    note(&format!(
        "before the reload the page had {} events of the run; after it: {replayed}",
        before["events"]
    ));
    let replayed = replayed.as_array().unwrap();
    assert_eq!(
        replayed.first(),
        Some(&json!("run")),
        "replayed from its start"
    );
    assert!(
        replayed.contains(&json!("dashboard_created")),
        "{replayed:?}"
    );
    assert_eq!(
        replayed.iter().filter(|e| *e == "complete").count(),
        1,
        "{replayed:?}"
    );
    cdp.wait_for("the new version drawn", GRID_DRAWN, long)
        .await;
    let ok = cdp.eval(GRID_OK).await;
    let tiles = cdp
        .eval("[...document.querySelectorAll('#grid .tile')].map(t => t.dataset.tile + ':' + t.dataset.state + ':' + t.innerText.slice(0, 60))")
        .await;
    assert_eq!(
        ok, true,
        "every tile of the new version has its data: {tiles}"
    );
    let title = cdp
        .eval("document.getElementById('dash-title').textContent")
        .await;
    assert!(title.as_str().unwrap().contains("(v3)"), "{title}");
    cdp.screenshot("7-resumed-after-reload").await;

    // The demo database goes, so that nothing of this test stays on the server.
    drop(cdp);
    drop(bridge);
    let admin = tokio_postgres::connect(&testkit::server_url().await, tokio_postgres::NoTls)
        .await
        .map(|(client, conn)| {
            tokio::spawn(conn);
            client
        });
    if let Ok(admin) = admin {
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)"
            ))
            .await;
    }
}

#[tokio::test]
async fn without_a_token_nothing_the_console_calls_answers() {
    let bridge = serve(&[("BRIDGE_ENV", "development")]).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/console", bridge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the page itself is public");
    for (method, path) in [
        ("POST", "/console-dev/demo-warehouse"),
        ("GET", "/v1/teams"),
        ("POST", "/v1/teams"),
        ("POST", "/v1/dashboards/generate"),
        ("POST", "/v1/dashboards/validate"),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", bridge.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    let r = http
        .post(format!("{}/console-dev/demo-warehouse", bridge.base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_dev_token_route_refuses_outside_development() {
    let bridge = serve(&[("BRIDGE_ENV", "test")]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/console-dev/token", bridge.base))
        .json(&json!({"email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "development_only", "{p}");
    let r = http
        .get(format!("{}/console/app.js", bridge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the console itself is on outside production"
    );
}

/// `bridge serve` in production (OIDC auth and a KMS named; neither is reached at start).
async fn production(extra: &[(&str, &str)]) -> Bridge {
    let mut vars = vec![
        ("BRIDGE_ENV", "production"),
        ("AUTH_MODE", "oidc"),
        ("AUTH_ISSUER", "https://issuer.example.com"),
        ("AUTH_AUDIENCE", "bridge"),
        ("KMS_KEY_URI", "awskms://alias/bridge"),
        ("AWS_REGION", "eu-west-1"),
        ("CREDENTIALS_BUCKET", "s3://bridge-test/credentials"),
        ("DASHBOARDS_BUCKET", "s3://bridge-test/dashboards"),
        ("SESSIONS_BUCKET", "s3://bridge-test/sessions"),
        ("CACHE_BUCKET", "s3://bridge-test/cache"),
    ];
    vars.extend_from_slice(extra);
    serve(&vars).await
}

#[tokio::test]
async fn the_console_is_off_in_production_unless_console_enabled_turns_it_on() {
    let off = production(&[]).await;
    for path in ["/console", "/console/app.js"] {
        let r = reqwest::get(format!("{}{path}", off.base)).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let on = production(&[("CONSOLE_ENABLED", "true")]).await;
    let r = reqwest::get(format!("{}/console", on.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"));
    let r = reqwest::Client::new()
        .post(format!("{}/console-dev/token", on.base))
        .json(&json!({"email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no dev tokens in production");
}
