//! The Lambda path as AWS runs it: cargo-lambda's runtime emulator
//! (`cargo lambda watch --only-lambda-apis`), one of our function binaries polling it
//! through `lambda_runtime` exactly as on Lambda (`AWS_LAMBDA_RUNTIME_API`), and
//! `cargo lambda invoke --data-file` sending the events in `events/`.
//!
//! cargo-lambda comes from PyPI (`scripts/emulators.txt`, installed into `.venv-emu` by
//! `scripts/test`); `BRIDGE_TEST_CARGO_LAMBDA` names another binary. When it is missing, the
//! test is skipped loudly, or fails under `BRIDGE_REQUIRE_EMULATORS=1`, as for the
//! emulators.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::process::{Child, ChildStdin, Command};

use super::{TempDir, emulators};

/// A runtime emulator and a function binary serving it; both stop on drop.
pub struct LambdaRig {
    program: PathBuf,
    port: u16,
    watch: Child,
    /// cargo-lambda stops its emulator when its stdin closes: held open until drop.
    _stdin: Option<ChildStdin>,
    function: Child,
    dir: TempDir,
    invocations: usize,
}

/// cargo-lambda's emulator on a free port, and `binary` (a path to one of our function
/// binaries, e.g. `env!("CARGO_BIN_EXE_teams")`) polling it with `env` as its environment.
/// `None` (after saying why) when cargo-lambda is not installed.
pub async fn start(binary: &str, env: &HashMap<String, String>) -> Option<LambdaRig> {
    let program = std::env::var_os("BRIDGE_TEST_CARGO_LAMBDA")
        .map(PathBuf::from)
        .unwrap_or_else(|| emulators::venv_bin("cargo-lambda"));
    if !program.exists() {
        let why = format!(
            "{} is missing; scripts/test installs it, or BRIDGE_TEST_CARGO_LAMBDA names one",
            program.display()
        );
        emulators::unavailable("cargo-lambda", &why);
        return None;
    }
    let dir = TempDir::new("bridge-cargo-lambda");
    let port = emulators::free_port().unwrap();
    let mut watch = Command::new(&program)
        .args(["lambda", "watch", "--only-lambda-apis", "--quiet"])
        .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        // It reads the workspace's metadata at start.
        .current_dir(emulators::repo_root())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(dir.0.join("watch.log")).unwrap())
        .stderr(std::fs::File::create(dir.0.join("watch.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let stdin = watch.stdin.take();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = watch.try_wait() {
            let log = std::fs::read_to_string(dir.0.join("watch.err")).unwrap_or_default();
            panic!("cargo lambda watch exited ({status}): {log}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cargo lambda watch did not listen on {port} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let function = Command::new(binary)
        .env_clear()
        .envs(env)
        .env("LOG_FORMAT", "json")
        // What Lambda sets, as cargo-lambda tells a function started on its own; its
        // default function is `_`.
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .stdout(std::fs::File::create(dir.0.join("function.log")).unwrap())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    Some(LambdaRig {
        program,
        port,
        watch,
        _stdin: stdin,
        function,
        dir,
        invocations: 0,
    })
}

impl LambdaRig {
    /// `cargo lambda invoke --data-file` with `payload`; the function's response.
    pub async fn invoke(&mut self, payload: &str) -> Value {
        if let Ok(Some(status)) = self.function.try_wait() {
            panic!("the function exited ({status}): {}", self.function_log());
        }
        self.invocations += 1;
        let file = self.dir.0.join(format!("event-{}.json", self.invocations));
        std::fs::write(&file, payload).unwrap();
        let out = Command::new(&self.program)
            .args(["lambda", "invoke", "_", "--output-format", "json"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(&file)
            .current_dir(&self.dir.0)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "cargo lambda invoke failed: {}\nfunction log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.function_log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "cargo lambda invoke printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Posts `payload` to the emulator's invoke endpoint (the one `cargo lambda invoke`
    /// posts to) and hands back the HTTP response as it arrives, for a function in response
    /// streaming mode (`run_with_streaming_response`): the emulator then answers with the
    /// status and headers of the function's metadata prelude and streams the body, as a
    /// Function URL does, whereas `cargo lambda invoke` prints only the body and fails on an
    /// error status.
    pub async fn invoke_streaming(&mut self, payload: &str) -> reqwest::Response {
        if let Ok(Some(status)) = self.function.try_wait() {
            panic!("the function exited ({status}): {}", self.function_log());
        }
        self.invocations += 1;
        reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
                self.port
            ))
            .header("content-type", "application/json")
            .body(payload.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "invoking through cargo lambda: {e}\nfunction log:\n{}",
                    self.function_log()
                )
            })
    }

    /// The emulator's Function URL of the function (no trailing slash): plain HTTP requests
    /// to `<url>/<path>` reach it as Function URL events, and a streaming function's
    /// response streams back.
    pub fn function_url(&self) -> String {
        format!("http://127.0.0.1:{}/lambda-url/_", self.port)
    }

    /// What the function has logged so far.
    pub fn function_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("function.log")).unwrap_or_default()
    }
}

impl Drop for LambdaRig {
    fn drop(&mut self) {
        let _ = self.function.start_kill();
        let _ = self.watch.start_kill();
    }
}
