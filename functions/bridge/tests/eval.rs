//! `bridge eval samplefiles/evals/` as CI runs it: the golden questions with the builtin
//! planner, the recorded run of a real model replayed offline, and (when the local model is
//! up) one question live. Scores are asserted for the builtin planner only; a real model's
//! are reported, and asserted to be what its recording scored.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use testkit::{TempDir, TestDb, TestWarehouse};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `bridge eval samplefiles/evals/ --json …` on a database and warehouse of its own.
async fn eval(args: &[&str], vars: &[(&str, &str)]) -> (Value, String) {
    let db = TestDb::empty().await;
    let wh = TestWarehouse::demo().await;
    let dir = TempDir::new("bridge-eval");
    let report = dir.0.join("report.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bridge"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BRIDGE_DATA_DIR", &dir.0)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .current_dir(root())
        .arg("eval")
        .arg("samplefiles/evals/")
        .arg("--warehouse-url")
        .arg(&wh.reader_url)
        .arg("--json")
        .arg(&report)
        .args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (report, stdout)
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

#[tokio::test]
async fn the_builtin_planner_answers_the_basic_golden_questions() {
    let (report, stdout) = eval(&["--min-match", "0.5"], &[("LLM_PROVIDER", "builtin")]).await;
    let all = &report["summary"];
    let basic = &report["tiers"]["basic"];
    assert!(count(&all["questions"]) >= 30, "{all}");
    // Every question gets a valid, saved dashboard whose every query runs, each query
    // dry-run in the run before the save.
    assert_eq!(all["saved"], all["questions"], "{stdout}");
    assert_eq!(all["queries_ran"], all["questions"], "{stdout}");
    assert_eq!(all["dry_run_before_save"], all["saved"], "{stdout}");
    // The basic tier is what a planner of one table, one measure, one dimension and one time
    // column can answer: all but "Track completed orders per day" (the count of `orders`,
    // not the `orders` column of `revenue_daily`).
    assert!(
        count(&basic["execution_match"]) + 1 >= count(&basic["questions"]),
        "{stdout}"
    );
    // The catalog tools go through the tool cache: one team asking again and again.
    assert!(all["tool_cache_hit_rate"].as_f64().unwrap() > 0.6, "{all}");
    for o in report["outcomes"].as_array().unwrap() {
        assert_eq!(o["ended"], "complete", "{o}");
        assert!(o["ms_to_dashboard"].as_f64().is_some(), "{o}");
        assert!(count(&o["steps"]) <= 20, "{o}");
    }
}

/// The recorded responses of the real local model, served back in order: the run is scored
/// again offline and must score what it scored when it was recorded.
#[tokio::test]
async fn a_recorded_real_model_run_scores_again_offline() {
    let recording = root().join("samplefiles/evals/recorded/qwen2.5-coder-0.5b");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(recording.join("meta.json")).unwrap())
            .unwrap();
    let (report, stdout) = eval(
        &["--replay", recording.to_str().unwrap()],
        &[("LLM_PROVIDER", "builtin")],
    )
    .await;
    assert_eq!(report["provider"], meta["provider"]);
    assert_eq!(report["model"], meta["model"]);
    let (now, then) = (&report["summary"], &meta["summary"]);
    for key in [
        "questions",
        "saved",
        "queries_ran",
        "execution_match",
        "dry_run_before_save",
    ] {
        assert_eq!(now[key], then[key], "{key}: {stdout}");
    }
    for o in report["outcomes"].as_array().unwrap() {
        // Every run ends with its one terminal event, whatever the model did.
        assert_ne!(o["ended"], "stream_ended", "{o}");
        assert!(count(&o["steps"]) >= 1, "{o}");
    }
}

/// The real local model, live, on one question (when `scripts/test` could start it): the loop
/// runs within its limits and ends with a terminal event. Its score is printed, not asserted.
#[tokio::test]
async fn the_local_model_runs_a_golden_question_live() {
    let (Ok(url), Ok(model)) = (
        std::env::var("BRIDGE_TEST_LLM_URL"),
        std::env::var("BRIDGE_TEST_LLM_MODEL"),
    ) else {
        assert!(
            std::env::var_os("BRIDGE_REQUIRE_LOCAL_LLM").is_none(),
            "BRIDGE_REQUIRE_LOCAL_LLM is set but BRIDGE_TEST_LLM_URL is not"
        );
        eprintln!("skipped: no local model (BRIDGE_TEST_LLM_URL)");
        return;
    };
    let (report, _) = eval(
        &["--only", "total-revenue"],
        &[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &url),
            ("OPENAI_MODEL", &model),
            ("CHAT_MAX_STEPS", "3"),
            ("LLM_MAX_TOKENS", "256"),
            // The model serves one request at a time and other tests use it too.
            ("LLM_FIRST_BYTE_TIMEOUT_MS", "180000"),
            ("LLM_IDLE_TIMEOUT_MS", "120000"),
            ("CHAT_MAX_RUN_SECS", "240"),
        ],
    )
    .await;
    let o = &report["outcomes"][0];
    // One terminal event, of a kind the harness knows: whatever the model did.
    let ended = o["ended"].as_str().unwrap();
    assert!(
        [
            "complete",
            "no_dashboard",
            "step_limit",
            "timeout",
            "budget_exceeded"
        ]
        .contains(&ended),
        "{o}"
    );
    assert!(count(&o["steps"]) <= 3, "{o}");
}
