//! The browser end-to-end test (`tests/browser/e2e.mjs`: headless Chromium
//! driven by playwright-core) run as part of `cargo test`, against the
//! binary cargo just built.
//!
//! It needs Debian's `chromium` and `npm ci` in `tests/browser`. Where they
//! are missing it says so and passes, unless `CI` is set: `.ci/run` installs
//! both, so on CI a missing browser is a failure, not a skip.

use std::path::Path;
use std::process::Command;

#[test]
fn demo_page_and_seed_client_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = dir.join("node_modules/playwright-core").is_dir()
        && Path::new("/usr/bin/chromium").exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and run `npm ci` in tests/browser"
        );
        eprintln!("browser test not run: install chromium and run `npm ci` in tests/browser (see its README)");
        return;
    }
    let status = Command::new("node")
        .arg("e2e.mjs")
        .current_dir(&dir)
        .env("SOCKETBOX_BIN", env!("CARGO_BIN_EXE_socketbox"))
        .status()
        .expect("run node");
    assert!(
        status.success(),
        "the browser end-to-end test failed: see its output above"
    );
}
