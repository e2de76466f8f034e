//! What the browser tests share: which Chromium to run, and how to say it cannot be had.

/// `BRIDGE_CHROMIUM`, or `chromium` on the PATH.
pub fn chromium() -> String {
    std::env::var("BRIDGE_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Chromium cannot be had: a panic under `BRIDGE_REQUIRE_BROWSER=1`, else a loud skip
/// (as [`crate::emulators::unavailable`] does for the emulators).
#[allow(clippy::print_stderr, clippy::panic)]
pub fn unavailable(why: &str) {
    if std::env::var("BRIDGE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("BRIDGE_REQUIRE_BROWSER=1 but Chromium is not available: {why}")
    }
    eprintln!(
        "\n*** SKIPPED: Chromium is not available ({why}); this test did not run. \
         Run scripts/test, or apt-get install chromium. ***\n"
    );
}
